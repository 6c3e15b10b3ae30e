//! The Postgres ⇄ Iceberg schema mapping (not written yet): a Postgres table's
//! columns to an Iceberg schema with field ids (bool, int2/int4 → int, int8 →
//! long, float4/float8, numeric(p ≤ 38, s) → decimal, date, time, timestamp,
//! timestamptz, text/varchar → string, uuid, bytea → binary, arrays → list,
//! composites → struct, json/jsonb → string), and back, for `CREATE TABLE …
//! USING iceberg`, `ALTER TABLE` and tables other engines created. Type
//! descriptions come in as plain values, so no pgrx is needed here.
