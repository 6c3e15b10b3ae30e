//! `CREATE FOREIGN TABLE t () SERVER pg_lake OPTIONS (path ...)`: an empty column list
//! is filled from DuckDB's DESCRIBE of the files, with the mapping `lake_file.preview`
//! shows. DuckDB STRUCTs become composite types named `<table>_<column>`.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::{Error, OrReport, Result};
use crate::files::{quote_ident, LakeFiles, OptionContext};
use crate::pg::util::{def_elems, list_ptrs, pstrdup, string};
use crate::types::{check_nesting, pg_type_for_duckdb, unsupported_duckdb, PgType};

/// True for a pg_lake foreign table declared without columns.
///
/// # Safety
/// `stmt` must be a valid CreateForeignTableStmt.
pub unsafe fn wants_inference(stmt: *mut pg_sys::CreateForeignTableStmt) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe {
        (*stmt).base.tableElts.is_null()
            && (*stmt).base.partbound.is_null()
            && (*stmt).base.inhRelations.is_null()
            && is_file_server((*stmt).servername)
    }
}

/// For a file foreign table declared with columns: `filename 'true'` needs a `_filename`
/// column to put the file name in.
///
/// # Safety
/// `stmt` must be a valid CreateForeignTableStmt.
pub unsafe fn check_declared(stmt: *mut pg_sys::CreateForeignTableStmt) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if (*stmt).base.tableElts.is_null() || !is_file_server((*stmt).servername) {
            return;
        }
        let options = def_elems((*stmt).options);
        let filename = options.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("filename")
                && crate::files::parse_bool("filename", v).unwrap_or(false)
        });
        if !filename {
            return;
        }
        let has_column = list_ptrs::<pg_sys::Node>((*stmt).base.tableElts)
            .into_iter()
            .filter(|n| (**n).type_ == pg_sys::NodeTag::T_ColumnDef)
            .any(|n| {
                string((*(n as *mut pg_sys::ColumnDef)).colname).as_deref() == Some("_filename")
            });
        if !has_column {
            Error::MissingFilenameColumn.report();
        }
    }
}

/// True for SERVER pg_lake and any other server of the file FDW (`pg_lake_table`, or
/// `pg_lake` as earlier builds named it).
///
/// # Safety
/// `name` must be NULL or a valid C string.
unsafe fn is_file_server(name: *const std::ffi::c_char) -> bool {
    // SAFETY: guaranteed by the caller; catalog lookups on the backend thread.
    unsafe {
        if name.is_null() {
            return false;
        }
        let server = pg_sys::GetForeignServerByName(name, true);
        if server.is_null() {
            return false;
        }
        let fdw = pg_sys::GetForeignDataWrapper((*server).fdwid);
        matches!(
            string((*fdw).fdwname).as_deref(),
            Some("pg_lake_table" | "pg_lake")
        )
    }
}

/// Adds a ColumnDef per file column to `stmt`; returns the composite types it created.
///
/// # Safety
/// `stmt` must be a valid, writable CreateForeignTableStmt for which `wants_inference` holds.
pub unsafe fn fill_columns(stmt: *mut pg_sys::CreateForeignTableStmt) -> Vec<String> {
    // SAFETY: guaranteed by the caller; new nodes are palloc'd in the statement's context.
    unsafe {
        // Postgres' own checks come first, as CREATE FOREIGN TABLE would make them: CREATE
        // on the schema, USAGE on the server. Only then are the files looked at.
        let relation = (*stmt).base.relation;
        pg_sys::RangeVarGetAndCheckCreationNamespace(
            relation,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            std::ptr::null_mut(),
        );
        check_server_usage((*stmt).servername);
        let options = def_elems((*stmt).options);
        let files =
            LakeFiles::from_options(None, &options, OptionContext::ForeignTable).or_report();
        let (elts, created) = column_defs(&files, relation);
        (*stmt).base.tableElts = elts;
        created
    }
}

/// A ColumnDef per column of `files` (as DuckDB's DESCRIBE sees them) for a new table
/// `relation`, and the composite types created for its structs. Column names fold to lower
/// case, as in the original (DuckDB matches them case-insensitively when reading).
///
/// # Safety
/// `relation` must be a valid RangeVar; the caller has checked the schema privilege.
pub unsafe fn column_defs(
    files: &LakeFiles,
    relation: *mut pg_sys::RangeVar,
) -> (*mut pg_sys::List, Vec<String>) {
    // SAFETY: guaranteed by the caller; new nodes are palloc'd in the current context.
    unsafe {
        let table = string((*relation).relname).unwrap_or_default();
        let schema = string((*relation).schemaname);
        let mut columns = crate::fdw::describe(files).or_report();
        if files.filename {
            // DESCRIBE already lists `_filename`; it is the column the option adds.
            columns.retain(|(name, _)| name != "_filename");
            columns.insert(0, ("_filename".into(), "VARCHAR".into()));
        }
        let mut elts: *mut pg_sys::List = std::ptr::null_mut();
        let mut created = Vec::new();
        for (name, duckdb_type) in columns {
            check_nesting(&name, &files.url, &duckdb_type).or_report();
            let pg = pg_type_for_duckdb(&duckdb_type)
                .ok_or_else(|| unsupported_duckdb(&name, &files.url, &duckdb_type))
                .or_report();
            let name = name.to_lowercase();
            let type_sql = type_sql(
                &pg,
                schema.as_deref(),
                &format!("{table}_{name}"),
                &mut created,
            )
            .or_report();
            let def =
                pg_sys::makeColumnDef(pstrdup(&name), pg_sys::InvalidOid, -1, pg_sys::InvalidOid);
            (*def).typeName = type_name(&type_sql);
            elts = pg_sys::lappend(elts, def.cast());
        }
        (elts, created)
    }
}

/// Raises Postgres' own error unless the current user has USAGE on the foreign server.
///
/// # Safety
/// `name` must be a valid C string.
unsafe fn check_server_usage(name: *const std::ffi::c_char) {
    // SAFETY: catalog lookups on the backend thread; errors are raised via ereport.
    unsafe {
        let server = pg_sys::GetForeignServerByName(name, false);
        let oid = (*server).serverid;
        #[cfg(feature = "pg15")]
        let result = pg_sys::pg_foreign_server_aclcheck(
            oid,
            pg_sys::GetUserId(),
            pg_sys::ACL_USAGE as pg_sys::AclMode,
        );
        #[cfg(any(feature = "pg16", feature = "pg17"))]
        let result = pg_sys::object_aclcheck(
            pg_sys::ForeignServerRelationId,
            oid,
            pg_sys::GetUserId(),
            pg_sys::ACL_USAGE as pg_sys::AclMode,
        );
        if result != pg_sys::AclResult::ACLCHECK_OK {
            pg_sys::aclcheck_error(
                result,
                pg_sys::ObjectType::OBJECT_FOREIGN_SERVER,
                (*server).servername,
            );
        }
    }
}

/// Makes the composite types inferred for a new table depend on it, so that dropping the
/// table drops them too (as a serial column's sequence goes with its table).
///
/// # Safety
/// `relation` must name the table that was just created.
pub unsafe fn tie_types_to_table(relation: *mut pg_sys::RangeVar, types: &[String]) {
    // SAFETY: catalog lookups and dependency records on the backend thread, inside the
    // transaction that created the table and the types.
    unsafe {
        let relid = pg_sys::RangeVarGetRelidExtended(
            relation,
            pg_sys::NoLock as i32,
            0,
            None,
            std::ptr::null_mut(),
        );
        let table = pg_sys::ObjectAddress {
            classId: pg_sys::RelationRelationId,
            objectId: relid,
            objectSubId: 0,
        };
        for qualified in types {
            let mut typmod = -1;
            let mut typid = pg_sys::InvalidOid;
            #[cfg(feature = "pg15")]
            pg_sys::parseTypeString(pstrdup(qualified), &mut typid, &mut typmod, false);
            #[cfg(any(feature = "pg16", feature = "pg17"))]
            pg_sys::parseTypeString(
                pstrdup(qualified),
                &mut typid,
                &mut typmod,
                std::ptr::null_mut(),
            );
            let ty = pg_sys::ObjectAddress {
                classId: pg_sys::TypeRelationId,
                objectId: typid,
                objectSubId: 0,
            };
            pg_sys::recordDependencyOn(&ty, &table, pg_sys::DependencyType::DEPENDENCY_AUTO);
        }
        pg_sys::CommandCounterIncrement();
    }
}

/// SQL spelling of `t`, creating composite types for structs as needed.
fn type_sql(
    t: &PgType,
    schema: Option<&str>,
    name: &str,
    created: &mut Vec<String>,
) -> Result<String> {
    Ok(match t {
        PgType::Named(n) => n.clone(),
        PgType::Array(e) => format!("{}[]", type_sql(e, schema, name, created)?),
        PgType::Composite(fields) => {
            let type_name = identifier(name);
            let qualified = match schema {
                Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&type_name)),
                None => quote_ident(&type_name),
            };
            let fields = fields
                .iter()
                .map(|(f, ft)| {
                    Ok(format!(
                        "{} {}",
                        quote_ident(f),
                        type_sql(ft, schema, &format!("{name}_{f}"), created)?
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            Spi::run(&format!(
                "CREATE TYPE {qualified} AS ({})",
                fields.join(", ")
            ))
            .unwrap_or_else(|e| pgrx::error!("could not create composite type {qualified}: {e}"));
            created.push(qualified.clone());
            qualified
        }
    })
}

/// `name` as a Postgres identifier: names longer than NAMEDATALEN - 1 bytes would be cut
/// (and two deep fields' types collide), so those keep a prefix and a hash of the whole.
fn identifier(name: &str) -> String {
    const MAX: usize = pg_sys::NAMEDATALEN as usize - 1;
    if name.len() <= MAX {
        return name.to_string();
    }
    // FNV-1a: stable across builds and processes.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut cut = MAX - 17;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash:016x}", &name[..cut])
}

fn type_name(sql: &str) -> *mut pg_sys::TypeName {
    let s = pstrdup(sql);
    // SAFETY: parses a type name we produced; errors are raised via ereport.
    unsafe {
        #[cfg(feature = "pg15")]
        let t = pg_sys::typeStringToTypeName(s);
        #[cfg(any(feature = "pg16", feature = "pg17"))]
        let t = pg_sys::typeStringToTypeName(s, std::ptr::null_mut());
        t
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn long_type_names_stay_distinct() {
        let a = super::identifier(&format!("{}_first", "x".repeat(70)));
        let b = super::identifier(&format!("{}_second", "x".repeat(70)));
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
        assert_eq!(super::identifier("short"), "short");
        let multibyte = super::identifier(&"é".repeat(40));
        assert!(multibyte.len() <= 63);
    }
}
