//! DDL of Iceberg tables.
//!
//! - `CREATE TABLE t (...) USING iceberg` (or `pg_lake_iceberg`, or any plain CREATE
//!   TABLE while `default_table_access_method` is one of them) becomes, before Postgres
//!   runs it, `CREATE FOREIGN TABLE t (...) SERVER pg_lake_iceberg OPTIONS (<the WITH
//!   options>)`, as in the original. Unbounded numeric (or precision above 38) becomes
//!   double precision (`pg_lake_iceberg.unsupported_numeric_as_double`, on).
//! - Once a foreign table on `pg_lake_iceberg` exists, [`register`] writes its first
//!   metadata file (the Postgres columns as an Iceberg schema with field ids) at its
//!   location and inserts its catalog row, in the same transaction: PyIceberg sees the
//!   table through the REST catalog the moment CREATE commits.
//! - DROP TABLE of Iceberg tables becomes DROP FOREIGN TABLE and removes their rows;
//!   RENAME and SET SCHEMA move their rows; ALTER TABLE takes OWNER TO, SET/DROP
//!   DEFAULT and SET/DROP NOT NULL, and refuses the rest by name.
//!
//! The `iceberg` table access method exists so that `USING iceberg` and
//! `default_table_access_method = 'iceberg'` are accepted; no relation ever uses it
//! (creating one is refused), since every CREATE naming it is rewritten first.

use std::collections::HashMap;

use pg_lake_iceberg::commit::{new_table, NewTable};
use pg_lake_iceberg::metadata_file::{file_bytes, next_table_metadata_location, to_json};
use pg_lake_iceberg::postgres_types::{table_schema, PgColumn, PgType};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::catalog::{self, TableIdent};
use super::{core_error, is_iceberg_table, storage, xact, SERVER};
use crate::error::{Error, OrReport, Result};
use crate::files::access::{check, local_path, Access};
use crate::files::{location_of, Location};
use crate::pg::util::{def_elems, list_ptrs, pstrdup, string};
use crate::types::PgShape;

/// Options an Iceberg table accepts (in CREATE TABLE ... WITH, or as FDW options).
pub const OPTIONS: &str = "location, catalog_namespace, catalog_table_name, autovacuum_enabled, max_snapshot_age, out_of_range_values";

/// Options that CREATE keeps as they are and ALTER FOREIGN TABLE ... OPTIONS changes
/// (the validator checks their values): `autovacuum_enabled` (boolean) and
/// `max_snapshot_age` (seconds), read by VACUUM; `out_of_range_values` (`error` |
/// `clamp`), read by writes.
pub const TABLE_OPTIONS: [&str; 3] = ["autovacuum_enabled", "max_snapshot_age", "out_of_range_values"];

fn is_iceberg_am(name: &str) -> bool {
    matches!(name, "iceberg" | "pg_lake_iceberg")
}

/// What a CREATE TABLE is, for us.
pub enum Create {
    /// Not ours.
    Other,
    /// An Iceberg table.
    Iceberg,
    /// A temporary or unlogged table while the default access method is iceberg: it
    /// stays a heap table.
    Heap,
}

/// # Safety
/// `stmt` must be a valid CreateStmt.
pub unsafe fn classify(stmt: *mut pg_sys::CreateStmt) -> Create {
    // SAFETY: guaranteed by the caller; the GUC is a backend-global string.
    unsafe {
        if let Some(am) = string((*stmt).accessMethod) {
            return if is_iceberg_am(&am) {
                Create::Iceberg
            } else {
                Create::Other
            };
        }
        let default = string(pg_sys::default_table_access_method).unwrap_or_default();
        if !is_iceberg_am(&default) || !(*stmt).partbound.is_null() {
            return Create::Other;
        }
        if (*(*stmt).relation).relpersistence
            != pg_sys::RELPERSISTENCE_PERMANENT as std::ffi::c_char
        {
            return Create::Heap;
        }
        Create::Iceberg
    }
}

/// Makes a temporary or unlogged table a heap table (see [`Create::Heap`]).
///
/// # Safety
/// `stmt` must be a valid, writable CreateStmt.
pub unsafe fn use_heap(stmt: *mut pg_sys::CreateStmt) {
    // SAFETY: guaranteed by the caller.
    unsafe { (*stmt).accessMethod = pstrdup("heap") };
}

/// The CREATE FOREIGN TABLE an Iceberg CREATE TABLE becomes.
///
/// # Safety
/// `stmt` must be a valid, writable CreateStmt that [`classify`] called Iceberg.
pub unsafe fn to_foreign_table(
    stmt: *mut pg_sys::CreateStmt,
) -> *mut pg_sys::CreateForeignTableStmt {
    // SAFETY: guaranteed by the caller; nodes are palloc'd in the statement's context.
    unsafe {
        let refuse = |what: &str| -> ! {
            Error::FeatureNotSupported(format!("Iceberg tables cannot be {what}")).report()
        };
        if (*(*stmt).relation).relpersistence
            != pg_sys::RELPERSISTENCE_PERMANENT as std::ffi::c_char
        {
            refuse("temporary or unlogged");
        }
        if !(*stmt).partspec.is_null() {
            refuse("partitioned tables (PARTITION BY); use the partition_by option once it lands");
        }
        if !(*stmt).partbound.is_null() {
            refuse("partitions of another table");
        }
        if !(*stmt).inhRelations.is_null() {
            refuse("created with INHERITS");
        }
        if !(*stmt).ofTypename.is_null() {
            refuse("typed tables (OF type)");
        }
        if !(*stmt).tablespacename.is_null() {
            refuse("placed in a tablespace (they live at their location)");
        }
        let options = def_elems((*stmt).options);
        for (name, _) in &options {
            let vacuum = TABLE_OPTIONS.iter().any(|v| name.eq_ignore_ascii_case(v));
            if !name.eq_ignore_ascii_case("location") && !vacuum {
                // catalog_namespace / catalog_table_name attach an existing table: that is
                // CREATE FOREIGN TABLE ... SERVER pg_lake_iceberg (or IMPORT FOREIGN SCHEMA).
                Error::UnknownOption {
                    option: name.to_ascii_lowercase(),
                    valid: OPTIONS,
                }
                .report();
            }
        }
        numeric_as_double(stmt);
        let node = pg_sys::palloc0(std::mem::size_of::<pg_sys::CreateForeignTableStmt>())
            as *mut pg_sys::CreateForeignTableStmt;
        (*node).base = *stmt;
        (*node).base.type_ = pg_sys::NodeTag::T_CreateForeignTableStmt;
        (*node).base.accessMethod = std::ptr::null_mut();
        (*node).base.options = std::ptr::null_mut();
        (*node).servername = pstrdup(SERVER);
        (*node).options = (*stmt).options;
        node
    }
}

/// Declares unbounded numeric columns (and precision above 38) double precision.
///
/// # Safety
/// `stmt` must be a valid, writable CreateStmt.
unsafe fn numeric_as_double(stmt: *mut pg_sys::CreateStmt) {
    if !crate::guc::UNSUPPORTED_NUMERIC_AS_DOUBLE.get() {
        return;
    }
    // SAFETY: guaranteed by the caller; type lookups on the backend thread.
    unsafe {
        for node in list_ptrs::<pg_sys::Node>((*stmt).tableElts) {
            if (*node).type_ != pg_sys::NodeTag::T_ColumnDef {
                continue;
            }
            let def = node as *mut pg_sys::ColumnDef;
            let type_name = (*def).typeName;
            if type_name.is_null() {
                continue;
            }
            let (mut typid, mut typmod) = (pg_sys::InvalidOid, -1);
            pg_sys::typenameTypeIdAndMod(std::ptr::null_mut(), type_name, &mut typid, &mut typmod);
            let element = pg_sys::get_element_type(typid);
            let base = if element != pg_sys::InvalidOid {
                element
            } else {
                typid
            };
            let unsupported =
                base == pg_sys::NUMERICOID && (typmod < 4 || (((typmod - 4) >> 16) & 0xffff) > 38);
            if unsupported {
                let names = pg_sys::lappend(
                    pg_sys::lappend(
                        std::ptr::null_mut(),
                        pg_sys::makeString(pstrdup("pg_catalog")).cast(),
                    ),
                    pg_sys::makeString(pstrdup("float8")).cast(),
                );
                (*type_name).names = names;
                (*type_name).typmods = std::ptr::null_mut();
                (*type_name).typemod = -1;
                (*type_name).typeOid = pg_sys::InvalidOid;
            }
        }
    }
}

/// After Postgres created a foreign table on `pg_lake_iceberg`: registers it.
///
/// # Safety
/// `stmt` must be the CreateForeignTableStmt that just ran.
pub unsafe fn after_create(stmt: *mut pg_sys::CreateForeignTableStmt) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if string((*stmt).servername).as_deref() != Some(SERVER) {
            return;
        }
        let relid = pg_sys::RangeVarGetRelidExtended(
            (*stmt).base.relation,
            pg_sys::NoLock as i32,
            0,
            None,
            std::ptr::null_mut(),
        );
        register(relid, &def_elems((*stmt).options)).or_report();
    }
}

/// The Iceberg type of a Postgres column.
fn pg_type(shape: &PgShape, typid: Option<pg_sys::Oid>) -> PgType {
    match shape {
        PgShape::Bool => PgType::Bool,
        PgShape::Int2 => PgType::Int2,
        PgShape::Int4 => PgType::Int4,
        PgShape::Int8 => PgType::Int8,
        PgShape::Float4 => PgType::Float4,
        PgShape::Float8 => PgType::Float8,
        PgShape::Numeric(Some((p, s))) => PgType::Numeric {
            precision: *p as u32,
            scale: *s as u32,
        },
        PgShape::Numeric(None) => PgType::Unsupported("numeric without a precision".into()),
        PgShape::Text | PgShape::Json => PgType::Text,
        PgShape::Bytea if typid.is_some() => PgType::Bytea,
        PgShape::Bytea => PgType::Unsupported("bytea inside an array or composite".into()),
        PgShape::Date => PgType::Date,
        PgShape::Time => PgType::Time,
        PgShape::Timestamp => PgType::Timestamp,
        PgShape::TimestampTz => PgType::TimestampTz,
        PgShape::Uuid => PgType::Uuid,
        // As in the original: a struct of the interval's three fields, which Postgres
        // keeps apart (a month is not 30 days, nor a day 24 hours).
        PgShape::Interval if typid.is_some() => PgType::Struct(
            [("months", PgType::Int4), ("days", PgType::Int4), ("microseconds", PgType::Int8)]
                .into_iter()
                .map(|(name, ty)| PgColumn {
                    name: name.into(),
                    ty,
                    not_null: false,
                })
                .collect(),
        ),
        PgShape::Interval => PgType::Unsupported("interval inside an array or composite".into()),
        PgShape::Array(e) => PgType::List(Box::new(pg_type(e, None))),
        PgShape::Composite(fields) => PgType::Struct(
            fields
                .iter()
                .map(|(n, t)| PgColumn {
                    name: n.clone(),
                    ty: pg_type(t, None),
                    not_null: false,
                })
                .collect(),
        ),
        PgShape::Other => match typid {
            // SAFETY: syscache lookups on the backend thread.
            Some(typid) => unsafe {
                let base = pg_sys::getBaseType(typid);
                if pg_sys::get_typtype(base) == pg_sys::TYPTYPE_ENUM as std::ffi::c_char {
                    PgType::Text
                } else {
                    PgType::Unsupported(string(pg_sys::format_type_be(typid)).unwrap_or_default())
                }
            },
            None => PgType::Unsupported(
                "a type without an Iceberg counterpart inside an array or composite".into(),
            ),
        },
    }
}

/// The table's columns as the Iceberg core sees them.
fn columns(relid: pg_sys::Oid) -> Vec<PgColumn> {
    crate::pg::util::live_attributes(relid)
        .iter()
        .map(|a| PgColumn {
            name: pgrx::name_data_to_str(&a.attname).to_string(),
            ty: pg_type(&PgShape::of(a.atttypid, a.atttypmod), Some(a.atttypid)),
            not_null: a.attnotnull,
        })
        .collect()
}

/// `<prefix>/<database>/<schema>/<table>/<oid>`, as the original.
fn default_location(ident: &TableIdent, relid: pg_sys::Oid) -> Result<String> {
    let prefix = crate::guc::DEFAULT_LOCATION_PREFIX
        .get()
        .map(|p| p.to_string_lossy().trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "Iceberg table {ident} has no location: set pg_lake_iceberg.default_location_prefix, or create it WITH (location = 'url')"
            ))
        })?;
    Ok(format!(
        "{prefix}/{}/{}/{}/{}",
        ident.catalog,
        ident.namespace,
        ident.name,
        u32::from(relid)
    ))
}

/// Fails unless the current user may write at `location`; a local location is created
/// (as the server's OS user, whose rights then apply).
fn check_writable(location: &str) -> Result<()> {
    if location_of(location)? == Location::ObjectStore {
        return check(location, Access::Write);
    }
    let path = local_path(location);
    if !path.is_absolute() {
        return Err(Error::InvalidOptionValue {
            option: "location".into(),
            value: location.to_string(),
            expected: "an absolute path or an s3:// or gs:// URL".into(),
        });
    }
    let existing = path
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(std::path::Path::new("/"));
    check(
        &existing.join(".pg_lake").display().to_string(),
        Access::Write,
    )?;
    std::fs::create_dir_all(&path).map_err(|e| Error::LocalFile {
        path: path.display().to_string(),
        action: "writing",
        reason: e.to_string(),
        not_found: false,
    })
}

/// Writes the first metadata file of Iceberg table `relid` and registers it; a table
/// naming a catalog table (`catalog_namespace`, `catalog_table_name`) attaches to it.
pub fn register(relid: pg_sys::Oid, options: &[(String, String)]) -> Result<()> {
    if catalog::is_attached(relid) {
        if options
            .iter()
            .any(|(o, _)| o.eq_ignore_ascii_case("location"))
        {
            return Err(Error::InvalidArgument(
                "option \"location\" cannot be given with catalog_namespace or catalog_table_name: an attached table has its own".into(),
            ));
        }
        return super::attach::attach(relid);
    }
    let ident = TableIdent::of(relid);
    let name = ident.to_string();
    let mut location = None;
    for (option, value) in options {
        match option.to_ascii_lowercase().as_str() {
            "location" => location = Some(value.trim_end_matches('/').to_string()),
            other if TABLE_OPTIONS.contains(&other) => {}
            other => {
                return Err(Error::UnknownOption {
                    option: other.to_string(),
                    valid: OPTIONS,
                })
            }
        }
    }
    let location = match location {
        Some(l) => l,
        None => default_location(&ident, relid)?,
    };
    check_writable(&location)?;
    let schema = table_schema(&columns(relid)).map_err(core_error(&name))?;
    let metadata = new_table(NewTable {
        schema,
        partition_spec: None,
        sort_order: None,
        location,
        properties: HashMap::new(),
    })
    .map_err(core_error(&name))?;
    let file = next_table_metadata_location(&metadata, None).map_err(core_error(&name))?;
    let json = to_json(&metadata).map_err(core_error(&name))?;
    let bytes = file_bytes(&file, &json).map_err(core_error(&name))?;
    xact::will_write(&file);
    storage::write(&file, &bytes)?;
    if !catalog::register(&ident, &file)? {
        return Err(Error::InvalidArgument(format!(
            "the Iceberg catalog already has a table {name} in catalog \"{}\"; attach it with IMPORT FOREIGN SCHEMA {} LIMIT TO ({}) FROM SERVER pg_lake_iceberg INTO <schema>",
            ident.catalog,
            crate::files::quote_ident(&ident.namespace),
            crate::files::quote_ident(&ident.name)
        )));
    }
    Ok(())
}

/// The relation a statement names, if it exists.
///
/// # Safety
/// `rv` must be a valid RangeVar.
unsafe fn relid_of(rv: *mut pg_sys::RangeVar) -> Option<pg_sys::Oid> {
    // SAFETY: guaranteed by the caller.
    let relid = unsafe {
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as i32,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    (relid != pg_sys::InvalidOid).then_some(relid)
}

/// Before a DROP TABLE / DROP FOREIGN TABLE: the Iceberg tables it drops. A DROP TABLE
/// of Iceberg tables only is made a DROP FOREIGN TABLE (they are foreign tables).
///
/// # Safety
/// `stmt` must be a valid, writable DropStmt.
pub unsafe fn before_drop(stmt: *mut pg_sys::DropStmt) -> Vec<TableIdent> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let kind = (*stmt).removeType;
        if kind != pg_sys::ObjectType::OBJECT_TABLE
            && kind != pg_sys::ObjectType::OBJECT_FOREIGN_TABLE
        {
            return Vec::new();
        }
        let mut iceberg = Vec::new();
        let mut attached = 0;
        let mut others = 0;
        for names in list_ptrs::<pg_sys::List>((*stmt).objects) {
            let rv = pg_sys::makeRangeVarFromNameList(names);
            match relid_of(rv) {
                Some(relid) if is_iceberg_table(relid) && catalog::is_attached(relid) => {
                    attached += 1
                }
                Some(relid) if is_iceberg_table(relid) => iceberg.push(TableIdent::of(relid)),
                Some(_) => others += 1,
                None => {}
            }
        }
        if kind == pg_sys::ObjectType::OBJECT_TABLE && (!iceberg.is_empty() || attached > 0) {
            if others > 0 {
                Error::FeatureNotSupported(
                    "DROP TABLE cannot drop Iceberg tables and other tables in one statement"
                        .into(),
                )
                .report();
            }
            (*stmt).removeType = pg_sys::ObjectType::OBJECT_FOREIGN_TABLE;
        }
        iceberg
    }
}

/// After the DROP: the dropped tables leave the catalog, and every file of their
/// metadata (data files, manifests, manifest lists, metadata files) goes to the
/// deletion queue: a reader may still hold one of their snapshots, so VACUUM removes
/// them only after the retention.
pub fn after_drop(dropped: &[TableIdent]) {
    for ident in dropped {
        let Some(location) = catalog::unregister(ident).or_report() else {
            continue;
        };
        let files = table_files(ident, &location).or_report();
        catalog::queue_for_deletion(ident, &files).or_report();
    }
}

/// Every file the metadata at `location` names, itself included.
fn table_files(ident: &TableIdent, location: &str) -> Result<Vec<String>> {
    let snapshot = super::tables::load(ident, location)?;
    let metadata = &snapshot.metadata;
    let mut files: Vec<String> = snapshot
        .files
        .iter()
        .map(|f| f.path().to_string())
        .collect();
    files.extend(snapshot.manifests.iter().map(|m| m.manifest_path.clone()));
    files.extend(metadata.snapshots().map(|s| s.manifest_list().to_string()));
    files.extend(
        metadata
            .metadata_log()
            .iter()
            .map(|m| m.metadata_file.clone()),
    );
    files.push(location.to_string());
    files.sort();
    files.dedup();
    Ok(files)
}

/// A rename (or schema move) of an Iceberg table to apply to its catalog row.
pub struct Move {
    from: TableIdent,
    namespace: Option<String>,
    name: Option<String>,
    /// RENAME COLUMN: a schema change instead of a move.
    column: Option<ColumnChange>,
}

/// # Safety
/// `stmt` must be a valid RenameStmt.
pub unsafe fn before_rename(stmt: *mut pg_sys::RenameStmt) -> Option<Move> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if (*stmt).relation.is_null() {
            return None;
        }
        let relid = relid_of((*stmt).relation)?;
        if !is_iceberg_table(relid) {
            return None;
        }
        let attached = catalog::is_attached(relid);
        match (*stmt).renameType {
            pg_sys::ObjectType::OBJECT_TABLE | pg_sys::ObjectType::OBJECT_FOREIGN_TABLE
                if attached =>
            {
                None
            }
            pg_sys::ObjectType::OBJECT_TABLE | pg_sys::ObjectType::OBJECT_FOREIGN_TABLE => {
                Some(Move {
                    from: TableIdent::of(relid),
                    namespace: None,
                    name: string((*stmt).newname),
                    column: None,
                })
            }
            pg_sys::ObjectType::OBJECT_COLUMN => Some(Move {
                from: TableIdent::of(relid),
                namespace: None,
                name: None,
                column: Some(ColumnChange::Rename(
                    relid,
                    string((*stmt).subname).unwrap_or_default(),
                    string((*stmt).newname).unwrap_or_default(),
                )),
            }),
            _ => None,
        }
    }
}

/// # Safety
/// `stmt` must be a valid AlterObjectSchemaStmt.
pub unsafe fn before_set_schema(stmt: *mut pg_sys::AlterObjectSchemaStmt) -> Option<Move> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if (*stmt).relation.is_null() {
            return None;
        }
        let relid = relid_of((*stmt).relation)?;
        (is_iceberg_table(relid) && !catalog::is_attached(relid)).then(|| Move {
            from: TableIdent::of(relid),
            namespace: string((*stmt).newschema),
            name: None,
            column: None,
        })
    }
}

pub fn after_move(m: Move) {
    if let Some(change) = m.column {
        return after_alter(vec![change]);
    }
    let namespace = m.namespace.unwrap_or_else(|| m.from.namespace.clone());
    let name = m.name.unwrap_or_else(|| m.from.name.clone());
    catalog::rename(&m.from, &namespace, &name).or_report();
}

/// A column change of an ALTER TABLE to commit to the Iceberg schema once Postgres has
/// made it.
pub enum ColumnChange {
    Add(pg_sys::Oid, String),
    Drop(pg_sys::Oid, String),
    Retype(pg_sys::Oid, String),
    Rename(pg_sys::Oid, String, String),
}

#[allow(non_upper_case_globals)]
/// Refuses ALTER TABLE commands that would change an Iceberg table behind its
/// metadata's back; answers the column changes to commit after Postgres made them.
///
/// # Safety
/// `stmt` must be a valid AlterTableStmt.
pub unsafe fn check_alter(stmt: *mut pg_sys::AlterTableStmt) -> Vec<ColumnChange> {
    let mut changes = Vec::new();
    // SAFETY: guaranteed by the caller.
    unsafe {
        let Some(relid) = relid_of((*stmt).relation) else {
            return changes;
        };
        if !is_iceberg_table(relid) {
            return changes;
        }
        use pg_sys::AlterTableType::*;
        for cmd in list_ptrs::<pg_sys::AlterTableCmd>((*stmt).cmds) {
            let name = || string((*cmd).name).unwrap_or_default();
            let what = match (*cmd).subtype {
                AT_ChangeOwner | AT_ColumnDefault | AT_SetNotNull | AT_DropNotNull => continue,
                AT_AddColumn => {
                    // A DEFAULT is checked (constant, scalar) and evaluated once Postgres
                    // has made the column: see `initial_default`.
                    let def = (*cmd).def as *mut pg_sys::ColumnDef;
                    changes.push(ColumnChange::Add(
                        relid,
                        string((*def).colname).unwrap_or_default(),
                    ));
                    continue;
                }
                AT_DropColumn => {
                    changes.push(ColumnChange::Drop(relid, name()));
                    continue;
                }
                AT_AlterColumnType => {
                    changes.push(ColumnChange::Retype(relid, name()));
                    continue;
                }
                // The table options change freely (the validator checks values);
                // location and the catalog names are the table's identity.
                AT_GenericOptions
                    if list_ptrs::<pg_sys::DefElem>((*cmd).def.cast()).into_iter().all(|d| {
                        let n = string((*d).defname).unwrap_or_default();
                        TABLE_OPTIONS.iter().any(|v| n.eq_ignore_ascii_case(v))
                    }) =>
                {
                    continue
                }
                AT_GenericOptions => "OPTIONS other than autovacuum_enabled, max_snapshot_age and out_of_range_values",
                AT_AddConstraint => "ADD CONSTRAINT",
                _ => "this ALTER TABLE command",
            };
            Error::FeatureNotSupported(format!(
                "{what} is not supported on Iceberg tables; supported: ADD/DROP/RENAME COLUMN, ALTER COLUMN TYPE (Iceberg promotions), SET/DROP DEFAULT, SET/DROP NOT NULL, OWNER TO, RENAME, SET SCHEMA"
            ))
            .report();
        }
    }
    changes
}

/// After Postgres made the ALTER: the Iceberg schema follows.
pub fn after_alter(changes: Vec<ColumnChange>) {
    use pg_lake_iceberg::postgres_types::SchemaChange;
    for change in changes {
        let (relid, schema_change) = match change {
            ColumnChange::Add(relid, name) => {
                match columns(relid).into_iter().find(|c| c.name == name) {
                    Some(c) => {
                        let initial_default = initial_default(relid, &c).or_report();
                        (
                            relid,
                            SchemaChange::Add {
                                column: c,
                                initial_default,
                            },
                        )
                    }
                    None => continue,
                }
            }
            ColumnChange::Drop(relid, name) => (relid, SchemaChange::Drop(name)),
            ColumnChange::Retype(relid, name) => {
                match columns(relid).into_iter().find(|c| c.name == name) {
                    Some(c) => (
                        relid,
                        SchemaChange::Promote {
                            column: name,
                            to: c.ty,
                        },
                    ),
                    None => continue,
                }
            }
            ColumnChange::Rename(relid, from, to) => (relid, SchemaChange::Rename { from, to }),
        };
        super::alter::commit_schema(relid, &schema_change).or_report();
    }
}

/// The value rows written before ADD COLUMN ... DEFAULT read for the new column
/// (Iceberg's `initial-default`, in its JSON single-value form), as Postgres gives
/// existing rows a non-volatile default evaluated once at the ALTER. `None` without a
/// default (or with DEFAULT NULL). A volatile default (nextval, random(), a serial
/// column) would need a value per row and is refused, as are defaults of columns that
/// are not of a scalar type.
fn initial_default(relid: pg_sys::Oid, column: &PgColumn) -> Result<Option<serde_json::Value>> {
    let found = Spi::connect(|client| {
        let rows = client.select(
            "SELECT d.adbin::text, pg_get_expr(d.adbin, d.adrelid), format_type(a.atttypid, a.atttypmod) \
               FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
              WHERE a.attrelid = $1 AND a.attname = $2",
            Some(1),
            &[relid.into(), column.name.as_str().into()],
        )?;
        let mut found = None;
        for row in rows {
            if let (Some(node), Some(expr), Some(ty)) =
                (row.get::<String>(1)?, row.get::<String>(2)?, row.get::<String>(3)?)
            {
                found = Some((node, expr, ty));
            }
        }
        Ok::<_, pgrx::spi::Error>(found)
    })
    .map_err(|e| Error::Internal(format!("reading the default of column \"{}\": {e}", column.name)))?;
    let Some((node, expr, type_name)) = found else {
        return Ok(None);
    };
    let refuse = |why: &str| {
        Error::FeatureNotSupported(format!(
            "ADD COLUMN \"{}\" with DEFAULT {expr} is not supported on Iceberg tables: {why}; add the column without it, then ALTER COLUMN ... SET DEFAULT for new rows",
            column.name
        ))
    };
    let node = std::ffi::CString::new(node).map_err(|e| Error::Internal(e.to_string()))?;
    // SAFETY: adbin is a node tree Postgres wrote; parsed into the current memory context.
    let volatile = unsafe { pg_sys::contain_volatile_functions(pg_sys::stringToNode(node.as_ptr()).cast()) };
    if volatile {
        return Err(refuse("a volatile default would need a value per existing row"));
    }
    let x = format!("(({expr})::{type_name})");
    // Iceberg's JSON single-value serialization, independent of DateStyle and TimeZone;
    // NULL where Iceberg's ranges cannot hold the value.
    let json = match &column.ty {
        PgType::Bool | PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Float4 | PgType::Float8 => {
            format!("to_jsonb({x})")
        }
        PgType::Numeric { .. } => format!("to_jsonb(CASE WHEN {x} NOT IN ('NaN', 'Infinity', '-Infinity') THEN {x}::text END)"),
        PgType::Date => format!(
            "to_jsonb(CASE WHEN {x} BETWEEN '0001-01-01' AND '9999-12-31' THEN to_char({x}, 'YYYY-MM-DD') END)"
        ),
        PgType::Time => format!("to_jsonb(to_char('2000-01-01'::date + {x}, 'HH24:MI:SS.US'))"),
        PgType::Timestamp => format!(
            "to_jsonb(CASE WHEN {x} BETWEEN '0001-01-01' AND '9999-12-31 23:59:59.999999' THEN to_char({x}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US') END)"
        ),
        PgType::TimestampTz => format!(
            "to_jsonb(CASE WHEN {x} AT TIME ZONE 'UTC' BETWEEN '0001-01-01' AND '9999-12-31 23:59:59.999999' THEN to_char({x} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || '+00:00' END)"
        ),
        PgType::Text | PgType::Uuid => format!("to_jsonb(format('%s', {x}))"),
        PgType::Bytea => format!("to_jsonb(encode({x}, 'hex'))"),
        PgType::List(_) | PgType::Struct(_) | PgType::Unsupported(_) => {
            return Err(refuse(&format!(
                "defaults are stored for columns of scalar types, and \"{}\" is {type_name}",
                column.name
            )))
        }
    };
    let (is_null, value) = Spi::get_two::<bool, pgrx::JsonB>(&format!("SELECT {x} IS NULL, {json}"))
        .map_err(|e| Error::Internal(format!("evaluating the default of column \"{}\": {e}", column.name)))?;
    match (is_null, value.map(|v| v.0)) {
        (Some(true), _) => Ok(None),
        (_, Some(v)) if !v.is_null() => Ok(Some(v)),
        _ => Err(refuse("its value is outside what Iceberg can store (NaN, infinity, or a date or timestamp beyond 0001..9999)")),
    }
}

/// Table access method `iceberg`: accepted by name, never used by a relation.
static mut ROUTINE: Option<pg_sys::TableAmRoutine> = None;

fn refuse_storage(rel: pg_sys::Relation) -> ! {
    // SAFETY: Postgres passes the relation being created.
    let name = unsafe { string((*(*rel).rd_rel).relname.data.as_ptr()) }.unwrap_or_default();
    Error::FeatureNotSupported(format!(
        "\"{name}\" cannot be created with access method iceberg this way: use CREATE TABLE ... USING iceberg"
    ))
    .report()
}

#[cfg(feature = "pg15")]
#[pg_guard]
unsafe extern "C-unwind" fn set_new_storage(
    rel: pg_sys::Relation,
    _node: *const pg_sys::RelFileNode,
    _persistence: std::ffi::c_char,
    _xid: *mut pg_sys::TransactionId,
    _multi: *mut pg_sys::MultiXactId,
) {
    refuse_storage(rel)
}

#[cfg(not(feature = "pg15"))]
#[pg_guard]
unsafe extern "C-unwind" fn set_new_storage(
    rel: pg_sys::Relation,
    _node: *const pg_sys::RelFileLocator,
    _persistence: std::ffi::c_char,
    _xid: *mut pg_sys::TransactionId,
    _multi: *mut pg_sys::MultiXactId,
) {
    refuse_storage(rel)
}

#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_pg_lake_iceberg_am_handler() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// The handler of table access methods `iceberg` and `pg_lake_iceberg`: heap's
/// routine, except that no relation can be created with it.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_lake_iceberg_am_handler(
    _fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the routine is built once on the backend thread and never freed.
    unsafe {
        let routine = &mut *std::ptr::addr_of_mut!(ROUTINE);
        if routine.is_none() {
            let mut copy = *pg_sys::GetHeapamTableAmRoutine();
            #[cfg(feature = "pg15")]
            {
                copy.relation_set_new_filenode = Some(set_new_storage);
            }
            #[cfg(not(feature = "pg15"))]
            {
                copy.relation_set_new_filelocator = Some(set_new_storage);
            }
            *routine = Some(copy);
        }
        pg_sys::Datum::from(routine.as_ref().expect("built above") as *const pg_sys::TableAmRoutine)
    }
}

extension_sql!(
    r#"
CREATE FUNCTION pg_lake_iceberg_am_handler(internal) RETURNS table_am_handler
    LANGUAGE c AS 'MODULE_PATHNAME', 'pg_lake_iceberg_am_handler';
CREATE ACCESS METHOD iceberg TYPE TABLE HANDLER pg_lake_iceberg_am_handler;
CREATE ACCESS METHOD pg_lake_iceberg TYPE TABLE HANDLER pg_lake_iceberg_am_handler;
"#,
    name = "iceberg_access_method"
);
