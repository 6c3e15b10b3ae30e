//! Iceberg tables in Postgres.
//!
//! Today: [`catalog`], the catalog tables shared with the REST catalog (`iceberg_tables`).
//! The rooms the Iceberg-tables work fills, each a module of its own when it lands:
//! DDL (`CREATE TABLE ... USING iceberg`, ALTER, DROP), the pending changes of the current
//! transaction per table, the PRE_COMMIT commit that turns them into one snapshot per
//! table through the shared Iceberg core, and maintenance (VACUUM, the deletion queue).

pub mod catalog;
