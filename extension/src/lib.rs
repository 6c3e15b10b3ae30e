//! pg_lake: query, import and export data-lake files (Parquet, CSV, JSON) and Iceberg
//! tables from Postgres, with DuckDB in pgduck_server doing the scanning.
//!
//! The folders follow the path data takes (see README.md's map):
//! - [`hooks`]: thin Postgres hooks that only dispatch (utility; planner and transaction
//!   hooks join them).
//! - read path: [`plan`] (what can be shipped to DuckDB, deparsed) → [`fdw`] (foreign-table
//!   planning and execution, schema inference) → [`pgduck`] (the client to pgduck_server
//!   and the COPY text it streams back).
//! - write path: [`copy`] (COPY to and from lake URLs) → [`write`] (row sinks that stream a
//!   query's rows to pgduck_server, which writes the files).
//! - [`files`]: lake file locations, their options, and who may read or write them.
//! - [`iceberg_table`]: Iceberg tables: the shared catalog now; DDL, pending changes per
//!   transaction, commit and maintenance as they land.
//! - [`sql`]: SQL-callable functions (`lake_file.*`); [`compat`]: the original's extension names.
//! - [`pg`], [`types`], [`guc`], [`error`]: pg_sys helpers, the DuckDB ⇄ Postgres type
//!   mapping, settings and the one error type.

use pgrx::prelude::*;

mod compat;
mod copy;
mod error;
mod fdw;
mod files;
mod guc;
mod hooks;
mod iceberg_table;
mod pg;
mod pgduck;
mod plan;
mod sql;
mod types;
mod write;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // pgrx appends a captured Rust backtrace to every ERROR's DETAIL when RUST_BACKTRACE is
    // set in the server's environment: users would see internals in their error messages.
    // Backtraces stay available to panics (RUST_BACKTRACE), not to reported errors.
    // SAFETY: _PG_init runs on the one thread of the postmaster (or a backend) before any
    // other code of ours; nothing reads the environment concurrently.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    guc::register();
    hooks::install();
    // SAFETY: reads a flag the postmaster sets while loading shared_preload_libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        iceberg_table::vacuum::register_launcher();
    }
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

-- The original's names: FDW pg_lake_table behind SERVER pg_lake, SERVER pg_lake_iceberg,
-- schemas lake_engine and lake_table. FDW pg_lake is the name earlier builds used.
CREATE FOREIGN DATA WRAPPER pg_lake_table
    HANDLER pg_lake_fdw_handler
    VALIDATOR pg_lake_fdw_validator;
CREATE FOREIGN DATA WRAPPER pg_lake
    HANDLER pg_lake_fdw_handler
    VALIDATOR pg_lake_fdw_validator;
CREATE SERVER pg_lake FOREIGN DATA WRAPPER pg_lake_table;
GRANT USAGE ON FOREIGN SERVER pg_lake TO lake_read;
CREATE FOREIGN DATA WRAPPER pg_lake_iceberg
    HANDLER pg_lake_fdw_handler
    VALIDATOR pg_lake_iceberg_fdw_validator;
CREATE SERVER pg_lake_iceberg FOREIGN DATA WRAPPER pg_lake_iceberg;
GRANT USAGE ON FOREIGN SERVER pg_lake_iceberg TO lake_read;
CREATE SCHEMA lake_engine;
CREATE SCHEMA lake_table;
-- Files no snapshot of the table's current metadata references any more (replaced by
-- UPDATE/DELETE/TRUNCATE, or of a dropped table), kept for older snapshots and removed
-- by VACUUM after a retention, as the original's lake_engine.deletion_queue.
CREATE TABLE lake_engine.deletion_queue (
    path text PRIMARY KEY,
    table_name text NOT NULL,
    orphaned_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON lake_engine.deletion_queue FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('lake_engine.deletion_queue', '');
GRANT USAGE ON SCHEMA lake_engine, lake_table TO lake_read;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA lake_file FROM PUBLIC;
-- Object storage for lake_read, local files for pg_read_server_files; each function
-- checks which of the two the URL it is given needs.
GRANT USAGE ON SCHEMA lake_file TO lake_read, pg_read_server_files;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lake_file TO lake_read, pg_read_server_files;

GRANT USAGE ON SCHEMA lake_iceberg TO lake_read;
GRANT EXECUTE ON FUNCTION lake_iceberg.catalog_tables() TO lake_read;
-- By metadata file: object storage for lake_read, local files for pg_read_server_files
-- (each function checks which the URL needs).
REVOKE ALL ON FUNCTION lake_iceberg.metadata(text), lake_iceberg.files(text),
    lake_iceberg.snapshots(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lake_iceberg.metadata(text), lake_iceberg.files(text),
    lake_iceberg.snapshots(text) TO lake_read, pg_read_server_files;
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
