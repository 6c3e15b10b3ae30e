//! The write path: a query's rows leave Postgres through a row sink ([`csv_sink`]: a
//! DestReceiver streaming rows into `COPY ... FROM STDIN` on pgduck_server), and DuckDB
//! writes the files. Iceberg data files (Parquet with field ids and statistics) are
//! produced here too.

pub mod csv_sink;
