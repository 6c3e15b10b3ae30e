//! The Iceberg catalog schema shared by the pg_lake extension and the REST catalog.
//!
//! Both write the same tables (the JDBC / SQL-catalog layout, in schema
//! [`SCHEMA`]): the extension through SPI inside the user's transaction, the
//! REST catalog through tokio-postgres. Each applies [`MIGRATIONS`] on first use
//! with the same steps, so a fresh database needs no manual set-up:
//!
//! 1. `BEGIN`, then `SELECT pg_advisory_xact_lock(`[`MIGRATION_LOCK_KEY`]`)` so
//!    concurrent appliers queue instead of racing;
//! 2. run [`BOOTSTRAP_SQL`] (creates the schema and [`VERSION_TABLE`]);
//! 3. read the applied versions ([`APPLIED_VERSIONS_SQL`]) and, for each of
//!    [`pending`], run its SQL and [`RECORD_VERSION_SQL`] with its version;
//! 4. `COMMIT`.
//!
//! Migrations are append-only: a released one never changes; a new schema
//! version is a new entry with the next number.

/// Schema holding every catalog table.
pub const SCHEMA: &str = "lake_catalog";

/// Table recording which migrations have been applied.
pub const VERSION_TABLE: &str = "lake_catalog.schema_version";

/// Key of the transaction-scoped advisory lock every applier holds while migrating
/// (the bytes of "pg_lake" followed by 1).
pub const MIGRATION_LOCK_KEY: i64 = 0x7067_5f6c_616b_6501;

/// Tables (name in [`SCHEMA`]).
pub const TABLES_TABLE: &str = "lake_catalog.iceberg_tables";
pub const NAMESPACE_PROPERTIES_TABLE: &str = "lake_catalog.iceberg_namespace_properties";
pub const IDEMPOTENCY_TABLE: &str = "lake_catalog.rest_idempotency_keys";

/// `iceberg_type` of a view row; tables have `'TABLE'` (or NULL, written by older JDBC catalogs).
pub const ICEBERG_TYPE_TABLE: &str = "TABLE";
pub const ICEBERG_TYPE_VIEW: &str = "VIEW";

/// Property marking that a namespace exists even when it has no other property.
pub const NAMESPACE_EXISTS_PROPERTY: &str = "exists";

/// Separator between namespace levels in `table_namespace` / `namespace`.
pub const NAMESPACE_SEPARATOR: char = '.';

/// Creates the schema and the version table; safe to run any number of times.
pub const BOOTSTRAP_SQL: &str = "CREATE SCHEMA IF NOT EXISTS lake_catalog;
CREATE TABLE IF NOT EXISTS lake_catalog.schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);";

/// Returns the applied versions, one row each (`version integer`).
pub const APPLIED_VERSIONS_SQL: &str = "SELECT version FROM lake_catalog.schema_version";

/// Records one applied migration; `$1` is its version.
pub const RECORD_VERSION_SQL: &str =
    "INSERT INTO lake_catalog.schema_version (version) VALUES ($1)";

// Statements both writers use, so they agree on what a row means. Parameters:
// $1 catalog_name, $2 table_namespace (see [`encode_namespace`]), $3 table_name,
// $4 iceberg_type ([`ICEBERG_TYPE_TABLE`] or [`ICEBERG_TYPE_VIEW`]).

/// The current metadata location of a table or view (no row: it does not exist).
pub const METADATA_LOCATION_SQL: &str = "SELECT metadata_location FROM lake_catalog.iceberg_tables
 WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3
   AND coalesce(iceberg_type, 'TABLE') = $4";

/// Registers a new table or view at metadata location $5; no row inserted means
/// a table or view of that name exists already.
pub const INSERT_ENTITY_SQL: &str = "INSERT INTO lake_catalog.iceberg_tables
 (catalog_name, table_namespace, table_name, iceberg_type, metadata_location)
 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

/// The commit: compare-and-swap of the metadata location from $6 (the one the
/// committer read) to $5. One row updated: committed. No row: another writer
/// committed first (or the entity is gone) and this commit must not apply.
pub const SWAP_METADATA_LOCATION_SQL: &str = "UPDATE lake_catalog.iceberg_tables
 SET metadata_location = $5, previous_metadata_location = $6
 WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3
   AND coalesce(iceberg_type, 'TABLE') = $4 AND metadata_location = $6";

/// [`METADATA_LOCATION_SQL`] locking the row until the transaction ends: the
/// extension's commit holds it from reading the location to swapping it, so a
/// concurrent commit (from Postgres, or a REST compare-and-swap) waits, then
/// sees the new location.
pub const LOCK_METADATA_LOCATION_SQL: &str =
    "SELECT metadata_location FROM lake_catalog.iceberg_tables
 WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3
   AND coalesce(iceberg_type, 'TABLE') = $4 FOR UPDATE";

/// Removes a table or view's row (DROP); answers the metadata location it had.
pub const DELETE_ENTITY_SQL: &str = "DELETE FROM lake_catalog.iceberg_tables
 WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3
   AND coalesce(iceberg_type, 'TABLE') = $4 RETURNING metadata_location";

/// Renames a table or view (and may move it to namespace $5) under name $6.
pub const RENAME_ENTITY_SQL: &str = "UPDATE lake_catalog.iceberg_tables
 SET table_namespace = $5, table_name = $6
 WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3
   AND coalesce(iceberg_type, 'TABLE') = $4";

/// One step of the schema's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration, in the order they apply.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "iceberg_tables, iceberg_namespace_properties, rest_idempotency_keys",
        sql: include_str!("../sql/catalog_v1.sql"),
    },
    Migration {
        version: 2,
        description: "index rest_idempotency_keys by created_at, for expiry",
        // The REST catalog reserves a key (status_code 0) before running the
        // request and deletes keys older than their lifetime by created_at.
        sql: "CREATE INDEX IF NOT EXISTS rest_idempotency_keys_created_at
    ON lake_catalog.rest_idempotency_keys (created_at);",
    },
    Migration {
        version: 3,
        description: "rest_idempotency_keys.request_sha256: the request a key was first used for",
        // A key reused with a different request body is refused instead of
        // replaying another request's outcome. NULL (rows from before): not checked.
        sql: "ALTER TABLE lake_catalog.rest_idempotency_keys
    ADD COLUMN IF NOT EXISTS request_sha256 text;",
    },
];

/// The migrations not yet in `applied`, in order.
pub fn pending(applied: &[i32]) -> impl Iterator<Item = &'static Migration> + '_ {
    MIGRATIONS
        .iter()
        .filter(move |m| !applied.contains(&m.version))
}

/// The newest schema version this build knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The `table_namespace` / `namespace` column value of a multi-level namespace.
/// Returns `None` when a level is empty or contains the separator, which could
/// not be told apart from two levels once stored.
pub fn encode_namespace<S: AsRef<str>>(levels: &[S]) -> Option<String> {
    if levels.is_empty()
        || levels
            .iter()
            .any(|l| l.as_ref().is_empty() || l.as_ref().contains(NAMESPACE_SEPARATOR))
    {
        return None;
    }
    Some(
        levels
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// The levels of a stored namespace.
pub fn decode_namespace(stored: &str) -> Vec<String> {
    stored
        .split(NAMESPACE_SEPARATOR)
        .map(str::to_string)
        .collect()
}

/// `LIKE` pattern matching the direct and indirect children of a stored namespace.
pub fn descendants_pattern(stored_parent: &str) -> String {
    let escaped = stored_parent
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("{escaped}.%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.description);
        }
        assert_eq!(latest_version(), MIGRATIONS.len() as i32);
    }

    #[test]
    fn pending_skips_applied_versions_and_keeps_order() {
        assert_eq!(pending(&[]).count(), MIGRATIONS.len());
        assert_eq!(
            pending(&[1]).map(|m| m.version).next(),
            MIGRATIONS.get(1).map(|m| m.version)
        );
        let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(pending(&all).count(), 0);
    }

    #[test]
    fn migrations_are_idempotent_sql() {
        for m in MIGRATIONS {
            for line in m.sql.lines().filter(|l| l.starts_with("CREATE")) {
                assert!(line.contains("IF NOT EXISTS"), "not idempotent: {line}");
            }
        }
    }

    #[test]
    fn the_jdbc_layout_columns_are_present() {
        let v1 = MIGRATIONS[0].sql;
        for column in [
            "catalog_name",
            "table_namespace",
            "table_name",
            "metadata_location",
            "previous_metadata_location",
            "iceberg_type",
            "namespace",
            "property_key",
            "property_value",
        ] {
            assert!(v1.contains(column), "{column}");
        }
    }

    #[test]
    fn lock_key_spells_pg_lake() {
        assert_eq!(&MIGRATION_LOCK_KEY.to_be_bytes()[..7], b"pg_lake");
    }

    #[test]
    fn namespaces_round_trip_and_reject_ambiguous_levels() {
        let stored = encode_namespace(&["a", "b"]).unwrap();
        assert_eq!(stored, "a.b");
        assert_eq!(decode_namespace(&stored), vec!["a", "b"]);
        assert_eq!(encode_namespace(&["a.b"]), None);
        assert_eq!(encode_namespace(&[""]), None);
        assert_eq!(encode_namespace::<&str>(&[]), None);
    }

    #[test]
    fn descendant_pattern_escapes_like_wildcards() {
        assert_eq!(descendants_pattern("a_b"), "a\\_b.%");
    }
}
