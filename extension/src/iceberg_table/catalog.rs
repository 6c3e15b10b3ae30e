//! The Iceberg catalog tables Postgres shares with the REST catalog.
//!
//! The schema is defined once, in `pg_lake_common::catalog`: versioned migrations, the
//! version table and the advisory-lock key. The REST catalog applies them at start-up;
//! the extension applies them on first use, inside the user's transaction, with the same
//! steps. Whichever comes first creates the tables, the other finds them current.
//!
//! The tables are deliberately not members of the extension: `DROP EXTENSION pg_lake`
//! must not drop the tables other engines' Iceberg tables are registered in, and
//! `pg_dump` must dump their rows. That is why nothing here runs during `CREATE
//! EXTENSION` (objects created then would become extension members).

use pg_lake_common::catalog as shared;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::{Error, Result};

/// The newest catalog schema version applied in this database (`None`: no catalog yet).
fn applied_version() -> Result<Option<i32>> {
    let exists = Spi::get_one::<bool>(&format!(
        "SELECT to_regclass('{}') IS NOT NULL",
        shared::VERSION_TABLE
    ))
    .map_err(spi("looking for the catalog schema"))?
    .unwrap_or(false);
    if !exists {
        return Ok(None);
    }
    Spi::get_one::<i32>(&format!(
        "SELECT max(version) FROM {}",
        shared::VERSION_TABLE
    ))
    .map_err(spi("reading the catalog schema version"))
}

/// Makes sure the catalog tables exist at the newest version this build knows.
///
/// Costs two catalog lookups when they do. Otherwise it takes the shared migration
/// lock for the rest of the transaction and applies what is missing, so concurrent
/// first uses (here or in the REST catalog) queue instead of racing. A rollback of the
/// user's transaction rolls the migration back with it.
pub fn ensure_schema() -> Result<()> {
    if applied_version()?.is_some_and(|v| v >= shared::latest_version()) {
        return Ok(());
    }
    // SAFETY: plain reads of backend-global flags on the backend thread.
    let (creating_extension, read_only) = unsafe {
        (
            pg_sys::creating_extension,
            pg_sys::XactReadOnly || pg_sys::RecoveryInProgress(),
        )
    };
    if creating_extension {
        return Err(Error::Internal(format!(
            "the {} schema is not created inside CREATE EXTENSION (its tables must not be extension members)",
            shared::SCHEMA
        )));
    }
    if read_only {
        return Err(Error::CatalogReadOnly {
            schema: shared::SCHEMA,
        });
    }
    Spi::run(&format!(
        "SELECT pg_advisory_xact_lock({})",
        shared::MIGRATION_LOCK_KEY
    ))
    .map_err(spi("taking the catalog migration lock"))?;
    // Another session may have migrated while this one waited for the lock.
    if applied_version()?.is_some_and(|v| v >= shared::latest_version()) {
        return Ok(());
    }
    Spi::run(shared::BOOTSTRAP_SQL).map_err(spi("creating the catalog schema"))?;
    let applied: Vec<i32> = Spi::connect(|client| {
        client
            .select(shared::APPLIED_VERSIONS_SQL, None, &[])?
            .map(|row| row.get::<i32>(1))
            .filter_map(|v| v.transpose())
            .collect::<std::result::Result<Vec<i32>, _>>()
    })
    .map_err(spi("reading the applied catalog migrations"))?;
    for migration in shared::pending(&applied) {
        Spi::run(migration.sql).map_err(|e| {
            Error::Internal(format!(
                "applying catalog migration {} ({}): {e}",
                migration.version, migration.description
            ))
        })?;
        Spi::run_with_args(shared::RECORD_VERSION_SQL, &[migration.version.into()])
            .map_err(spi("recording a catalog migration"))?;
    }
    Ok(())
}

/// An Iceberg table's name in the shared catalog: (database, schema, table).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableIdent {
    pub catalog: String,
    pub namespace: String,
    pub name: String,
}

impl TableIdent {
    /// The catalog name of the Postgres table `relid`: catalog_name is the database,
    /// the namespace its schema, as in the original; a table attached to one another
    /// engine made names it in its options (`catalog_namespace`, `catalog_table_name`).
    pub fn of(relid: pg_sys::Oid) -> TableIdent {
        let mut ident = TableIdent::of_relation(relid);
        let (namespace, name) = attached_name(relid);
        if let Some(namespace) = namespace {
            ident.namespace = namespace;
        }
        if let Some(name) = name {
            ident.name = name;
        }
        ident
    }

    /// The name a table of `relid`'s schema and name would have.
    pub fn of_relation(relid: pg_sys::Oid) -> TableIdent {
        // SAFETY: syscache lookups on the backend thread.
        unsafe {
            TableIdent {
                catalog: current_catalog(),
                namespace: crate::pg::util::string(pg_sys::get_namespace_name(
                    pg_sys::get_rel_namespace(relid),
                ))
                .unwrap_or_default(),
                name: crate::pg::util::string(pg_sys::get_rel_name(relid)).unwrap_or_default(),
            }
        }
    }

    fn args(&self) -> Vec<pgrx::datum::DatumWithOid<'_>> {
        vec![
            self.catalog.as_str().into(),
            self.namespace.as_str().into(),
            self.name.as_str().into(),
            shared::ICEBERG_TYPE_TABLE.into(),
        ]
    }
}

/// This database's catalog name: the database's name, as in the original.
pub fn current_catalog() -> String {
    // SAFETY: a syscache lookup on the backend thread.
    unsafe { crate::pg::util::string(pg_sys::get_database_name(pg_sys::MyDatabaseId)) }
        .unwrap_or_default()
}

/// Option naming the catalog namespace of a table attached from the catalog.
pub const NAMESPACE_OPTION: &str = "catalog_namespace";
/// Option naming the catalog table name of a table attached from the catalog.
pub const NAME_OPTION: &str = "catalog_table_name";

/// The `catalog_namespace` and `catalog_table_name` options of foreign table `relid`.
pub fn attached_name(relid: pg_sys::Oid) -> (Option<String>, Option<String>) {
    // SAFETY: a catalog lookup on the backend thread; the options are copied.
    let options = unsafe { crate::pg::util::def_elems((*pg_sys::GetForeignTable(relid)).options) };
    let get = |name: &str| {
        options
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    (get(NAMESPACE_OPTION), get(NAME_OPTION))
}

/// Whether `relid` was attached to a table that already was in the catalog (its DROP
/// then only detaches it, and RENAME leaves the catalog name alone).
pub fn is_attached(relid: pg_sys::Oid) -> bool {
    let (namespace, name) = attached_name(relid);
    namespace.is_some() || name.is_some()
}

/// The catalog's tables in `namespace` of this database: (name, metadata location).
pub fn tables_in(namespace: &str) -> Result<Vec<(String, String)>> {
    let catalog = current_catalog();
    as_catalog_owner(|| {
        ensure_schema()?;
        Spi::connect(|client| {
            let mut out = Vec::new();
            let rows = client.select(
                "SELECT table_name, metadata_location FROM lake_catalog.iceberg_tables \
                  WHERE catalog_name = $1 AND table_namespace = $2 \
                    AND coalesce(iceberg_type, 'TABLE') = 'TABLE' ORDER BY table_name",
                None,
                &[catalog.as_str().into(), namespace.into()],
            )?;
            for row in rows {
                if let (Some(name), Some(location)) = (row.get::<String>(1)?, row.get::<String>(2)?)
                {
                    out.push((name, location));
                }
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
        .map_err(spi("listing the catalog's tables"))
    })
}

impl std::fmt::Display for TableIdent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Postgres' quoting: only names that need it are quoted (public.orders).
        let quote = |s: &str| {
            let c = std::ffi::CString::new(s.replace('\0', "")).unwrap_or_default();
            // SAFETY: quote_identifier reads the NUL-terminated name and returns it or a
            // palloc'd quoted copy.
            unsafe { crate::pg::util::string(pg_sys::quote_identifier(c.as_ptr())) }
                .unwrap_or_default()
        };
        write!(f, "{}.{}", quote(&self.namespace), quote(&self.name))
    }
}

/// Runs `f` as the bootstrap superuser. The catalog rows decide what every engine
/// reads: a user who may write one Iceberg table must not be able to repoint another,
/// so users get no privileges on the catalog tables and pg_lake's own statements on
/// them run as the owner. An error inside `f` unwinds to (sub)transaction abort, which
/// restores the user.
pub fn as_catalog_owner<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    // SAFETY: user-id switching on the backend thread, restored below or by abort.
    unsafe {
        let mut user = pg_sys::InvalidOid;
        let mut context = 0;
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        let out = f();
        pg_sys::SetUserIdAndSecContext(user, context);
        out
    }
}

/// The table's current metadata location, its row locked until the transaction ends
/// (the commit path): an error when the table is no longer registered.
pub fn locked_metadata_location(ident: &TableIdent) -> Result<String> {
    metadata_location(ident, true)?.ok_or_else(|| Error::IcebergMetadata {
        table: ident.to_string(),
        reason: "the table is no longer registered in the Iceberg catalog".into(),
    })
}

/// The table's current metadata location as this transaction's snapshot sees it;
/// `lock` also locks its row until the transaction ends (the commit path).
pub fn metadata_location(ident: &TableIdent, lock: bool) -> Result<Option<String>> {
    let sql = if lock {
        shared::LOCK_METADATA_LOCATION_SQL
    } else {
        shared::METADATA_LOCATION_SQL
    };
    as_catalog_owner(|| {
        Spi::connect_mut(|client| {
            // FOR UPDATE needs a read-write SPI call.
            let rows = if lock {
                client.update(sql, Some(1), &ident.args())?
            } else {
                client.select(sql, Some(1), &ident.args())?
            };
            let mut location = None;
            for row in rows {
                location = row.get::<String>(1)?;
            }
            Ok::<_, pgrx::spi::Error>(location)
        })
        .map_err(spi("reading an Iceberg table's metadata location"))
    })
}

/// Registers a new table at `location`; false when the catalog has one of that name.
pub fn register(ident: &TableIdent, location: &str) -> Result<bool> {
    as_catalog_owner(|| {
        ensure_schema()?;
        let mut args = ident.args();
        args.push(location.into());
        Spi::connect_mut(|client| {
            client
                .update(shared::INSERT_ENTITY_SQL, None, &args)
                .map(|t| t.len() == 1)
        })
        .map_err(spi("registering an Iceberg table in the catalog"))
    })
}

/// The commit: swaps the row from `expected` to `location`; false when the row no
/// longer holds `expected`.
pub fn swap(ident: &TableIdent, location: &str, expected: &str) -> Result<bool> {
    let mut args = ident.args();
    args.push(location.into());
    args.push(expected.into());
    as_catalog_owner(|| {
        Spi::connect_mut(|client| {
            client
                .update(shared::SWAP_METADATA_LOCATION_SQL, None, &args)
                .map(|t| t.len() == 1)
        })
        .map_err(spi("committing an Iceberg table's new metadata"))
    })
}

/// Removes the table's row; answers the metadata location it had.
pub fn unregister(ident: &TableIdent) -> Result<Option<String>> {
    as_catalog_owner(|| {
        Spi::connect_mut(|client| {
            let mut location = None;
            for row in client.update(shared::DELETE_ENTITY_SQL, None, &ident.args())? {
                location = row.get::<String>(1)?;
            }
            Ok::<_, pgrx::spi::Error>(location)
        })
        .map_err(spi("removing an Iceberg table from the catalog"))
    })
}

/// Queues files of `table` that the current metadata no longer references.
pub fn queue_for_deletion(table: &TableIdent, paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let name = table.to_string();
    as_catalog_owner(|| {
        Spi::connect_mut(|client| {
            client
                .update(
                    "INSERT INTO lake_engine.deletion_queue (path, table_name) \
                     SELECT unnest($1::text[]), $2 ON CONFLICT (path) DO NOTHING",
                    None,
                    &[paths.to_vec().into(), name.as_str().into()],
                )
                .map(|_| ())
        })
        .map_err(spi("queueing files for deletion"))
    })
}

/// Renames (or moves) the table's row.
pub fn rename(ident: &TableIdent, namespace: &str, name: &str) -> Result<()> {
    let mut args = ident.args();
    args.push(namespace.into());
    args.push(name.into());
    as_catalog_owner(|| {
        Spi::connect_mut(|client| {
            client
                .update(shared::RENAME_ENTITY_SQL, None, &args)
                .map(|_| ())
        })
        .map_err(spi("renaming an Iceberg table in the catalog"))
    })
}

fn spi(what: &'static str) -> impl Fn(pgrx::spi::Error) -> Error {
    move |e| Error::Internal(format!("{what}: {e}"))
}

#[pg_schema]
mod lake_iceberg {
    use pg_lake_common::catalog as shared;
    use pgrx::prelude::*;

    use crate::error::OrReport;

    /// Iceberg tables registered in the shared catalog (by the REST catalog's clients, and
    /// by Postgres), in the JDBC / SQL-catalog layout. Backs the `iceberg_tables` view.
    #[allow(clippy::type_complexity)]
    #[pg_extern(volatile, parallel_unsafe, security_definer)]
    #[search_path(pg_catalog, pg_temp)]
    fn catalog_tables() -> TableIterator<
        'static,
        (
            name!(catalog_name, String),
            name!(table_namespace, String),
            name!(table_name, String),
            name!(metadata_location, Option<String>),
            name!(previous_metadata_location, Option<String>),
        ),
    > {
        super::ensure_schema().or_report();
        let sql = format!(
            "SELECT catalog_name, table_namespace, table_name, metadata_location, \
                    previous_metadata_location \
               FROM {} WHERE coalesce(iceberg_type, '{}') = '{}' \
              ORDER BY catalog_name, table_namespace, table_name",
            shared::TABLES_TABLE,
            shared::ICEBERG_TYPE_TABLE,
            shared::ICEBERG_TYPE_TABLE
        );
        let rows = Spi::connect(|client| {
            client
                .select(&sql, None, &[])?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<String>(3)?.unwrap_or_default(),
                        row.get::<String>(4)?,
                        row.get::<String>(5)?,
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .map_err(super::spi("listing the catalog's Iceberg tables"))
        .or_report();
        TableIterator::new(rows)
    }
}

extension_sql!(
    r#"
CREATE VIEW iceberg_tables AS SELECT * FROM lake_iceberg.catalog_tables();
COMMENT ON VIEW iceberg_tables IS
    'Iceberg tables in the shared catalog (lake_catalog.iceberg_tables), JDBC / SQL-catalog layout';
REVOKE ALL ON FUNCTION lake_iceberg.catalog_tables() FROM PUBLIC;
-- lake_read is granted the view in the final block, after the roles exist.
"#,
    name = "iceberg_tables_view",
    requires = [lake_iceberg::catalog_tables]
);
