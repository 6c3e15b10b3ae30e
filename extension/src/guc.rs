//! The extension's settings (GUCs), named as in the original pg_lake.

use std::ffi::CString;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

/// libpq-style connection string of pgduck_server. Superuser-only, to set and to see (it
/// decides which process runs every lake query, with that process' object-storage
/// credentials, and may hold a password). A password is better given through the
/// `PGDUCK_PASSWORD` environment variable of the postmaster than here.
pub static ENGINE_HOST: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"host=/tmp port=5332"));

/// Where Iceberg tables go when CREATE TABLE names no location.
pub static DEFAULT_LOCATION_PREFIX: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);

/// Whether CREATE TABLE ... USING iceberg declares unbounded numeric columns (and
/// precision above 38, which Iceberg's decimal cannot hold) double precision.
pub static UNSUPPORTED_NUMERIC_AS_DOUBLE: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Whether scans of Iceberg tables skip data files whose column bounds rule out the
/// WHERE clause.
pub static ENABLE_DATA_FILE_PRUNING: GucSetting<bool> = GucSetting::<bool>::new(true);

/// The size Iceberg data files are aimed at, in MB: a transaction's files smaller than a
/// quarter of it are merged at commit.
pub static TARGET_FILE_SIZE_MB: GucSetting<i32> = GucSetting::<i32>::new(512);

/// Time travel: Iceberg tables are read as of this snapshot id or timestamp (empty: now).
pub static AS_OF: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Crash tests: the step of an Iceberg commit at which to pause for 30 s (`data`,
/// `manifests`, `metadata`, `swapped`), so a test can kill a process right there.
pub static DEBUG_PAUSE_AT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Whether a SELECT over lake tables only runs as one DuckDB query when DuckDB computes
/// every part of it as Postgres would (crate::plan::pushdown).
pub static ENABLE_FULL_QUERY_PUSHDOWN: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Whether `lake_file.delete` may delete files (off, as in the original).
pub static ENABLE_DELETE_FILE: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Seconds to wait for pgduck_server to accept a connection.
pub static ENGINE_CONNECT_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(10);
/// VACUUM expires Iceberg snapshots older than this many seconds (never the current one).
pub static MAX_SNAPSHOT_AGE: GucSetting<i32> = GucSetting::<i32>::new(1800);
/// The autovacuum launcher runs VACUUM of every Iceberg table each naptime.
pub static AUTOVACUUM: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static AUTOVACUUM_NAPTIME: GucSetting<i32> = GucSetting::<i32>::new(600);
/// VACUUM deletes queued files this many seconds after they left the table's snapshots.
pub static DELETION_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(10 * 24 * 3600);

/// The names Postgres knows these settings by; `pg_lake_common::contract::guc` holds the
/// same names for the processes that write them (a test pins that they agree).
const ENGINE_HOST_NAME: &std::ffi::CStr = c"pg_lake_engine.host";
const DEFAULT_LOCATION_PREFIX_NAME: &std::ffi::CStr = c"pg_lake_iceberg.default_location_prefix";

pub fn register() {
    GucRegistry::define_string_guc(
        ENGINE_HOST_NAME,
        c"Connection string of pgduck_server, the DuckDB query engine.",
        c"A libpq-style string such as 'host=/tmp port=5332'; host may be a unix socket directory.",
        &ENGINE_HOST,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_bool_guc(
        c"pg_lake_table.enable_full_query_pushdown",
        c"Run whole queries over lake tables in DuckDB when the results are the same.",
        c"Off: each lake table is a foreign scan; joins, aggregates and the rest run in Postgres.",
        &ENABLE_FULL_QUERY_PUSHDOWN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_lake_table.enable_delete_file_function",
        c"Allow lake_file.delete() to delete files.",
        c"Off by default, as in the original pg_lake; callers still need lake_write (or pg_write_server_files for local files).",
        &ENABLE_DELETE_FILE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_lake_iceberg.unsupported_numeric_as_double",
        c"Store numeric columns without a precision (or above 38 digits) of new Iceberg tables as double precision.",
        c"Iceberg's decimal holds at most 38 digits. Off: such a column is an error at CREATE TABLE.",
        &UNSUPPORTED_NUMERIC_AS_DOUBLE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_lake_table.enable_data_file_pruning",
        c"Skip Iceberg data files whose column bounds rule out the WHERE clause.",
        c"",
        &ENABLE_DATA_FILE_PRUNING,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_lake_iceberg.as_of",
        c"Read Iceberg tables as of a snapshot id or a timestamp (time travel).",
        c"Empty (the default): the current snapshot. Writes are refused while it is set; SET LOCAL scopes it to a transaction.",
        &AS_OF,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_lake_iceberg.debug_pause_at",
        c"For crash tests only: pause an Iceberg commit at this step (data, manifests, metadata, swapped).",
        c"",
        &DEBUG_PAUSE_AT,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL | GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"pg_lake_table.target_file_size_mb",
        c"Size Iceberg data files are aimed at.",
        c"A transaction's data files smaller than a quarter of it are merged into one at commit.",
        &TARGET_FILE_SIZE_MB,
        1,
        1024 * 1024,
        GucContext::Userset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"pg_lake_iceberg.max_snapshot_age",
        c"VACUUM expires Iceberg snapshots older than this (the current one never).",
        c"",
        &MAX_SNAPSHOT_AGE,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"pg_lake_iceberg.autovacuum",
        c"Runs VACUUM of every Iceberg table in the background (pg_lake in shared_preload_libraries).",
        c"Tables with the option autovacuum_enabled 'false' are skipped.",
        &AUTOVACUUM,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_lake_iceberg.autovacuum_naptime",
        c"Time between two background VACUUM rounds over the databases.",
        c"",
        &AUTOVACUUM_NAPTIME,
        1,
        i32::MAX / 1000,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_lake_iceberg.deletion_retention",
        c"VACUUM deletes files no snapshot references once they have been unreferenced this long.",
        c"Readers of older metadata files (attached by path, time travel in other engines) keep working that long.",
        &DELETION_RETENTION,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_lake_engine.connect_timeout",
        c"Seconds to wait for a connection to pgduck_server.",
        c"",
        &ENGINE_CONNECT_TIMEOUT,
        1,
        3600,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        DEFAULT_LOCATION_PREFIX_NAME,
        c"URL prefix under which Iceberg tables are created when no location is given.",
        c"Tables go to <prefix>/<database>/<schema>/<table>/<oid>.",
        &DEFAULT_LOCATION_PREFIX,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// The current pgduck_server connection string.
pub fn engine_conninfo() -> String {
    ENGINE_HOST
        .get()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "host=/tmp port=5332".into())
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pg_lake_common::contract::guc;
    use pgrx::prelude::*;

    #[pg_test]
    fn names_agree_with_the_contract() {
        assert_eq!(super::ENGINE_HOST_NAME.to_str(), Ok(guc::ENGINE_HOST));
        assert_eq!(
            super::DEFAULT_LOCATION_PREFIX_NAME.to_str(),
            Ok(guc::DEFAULT_LOCATION_PREFIX)
        );
    }
}
