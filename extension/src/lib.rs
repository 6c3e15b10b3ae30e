//! pg_lake: query, import and export data-lake files (Parquet, CSV, JSON) from Postgres,
//! with DuckDB in pgduck_server doing the scanning.
//!
//! - [`fdw`]: `SERVER pg_lake` foreign tables over files.
//! - [`hooks`]: COPY to/from lake URLs and schema inference for foreign tables.
//! - `lake_file`: the `lake_file.list/exists/size/preview` SQL functions.
//! - [`engine`]: the backend's connection to pgduck_server.
//! - [`catalog`]: the Iceberg catalog tables shared with the REST catalog, and the
//!   `iceberg_tables` view over them.

use pgrx::prelude::*;

mod access;
mod catalog;
mod copy_text;
mod engine;
mod error;
mod fdw;
mod guc;
mod hooks;
mod lake_file;
mod pgutil;
mod source;
mod types;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::register();
    hooks::install();
}

extension_sql!(
    r#"
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lake_read') THEN
        CREATE ROLE lake_read NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lake_write') THEN
        CREATE ROLE lake_write NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lake_read_write') THEN
        CREATE ROLE lake_read_write NOLOGIN;
    END IF;
END
$roles$;
GRANT lake_read, lake_write TO lake_read_write;

CREATE FOREIGN DATA WRAPPER pg_lake
    HANDLER pg_lake_fdw_handler
    VALIDATOR pg_lake_fdw_validator;
CREATE SERVER pg_lake FOREIGN DATA WRAPPER pg_lake;
GRANT USAGE ON FOREIGN SERVER pg_lake TO lake_read;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA lake_file FROM PUBLIC;
GRANT USAGE ON SCHEMA lake_file TO lake_read;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lake_file TO lake_read;

GRANT USAGE ON SCHEMA lake_iceberg TO lake_read;
GRANT EXECUTE ON FUNCTION lake_iceberg.catalog_tables() TO lake_read;
GRANT SELECT ON iceberg_tables TO lake_read;
"#,
    name = "pg_lake_objects",
    finalize
);

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_lake'"]
    }
}
