//! The original pg_lake's extension names. Its users create `pg_lake_table`,
//! `pg_lake_copy`, `pg_lake_engine`, `pg_lake_iceberg`, `pg_map` or `pg_extension_base`
//! (with or without CASCADE, in any order), and its dumps list them all, in dependency
//! order and without CASCADE. Each is a stub extension (`extension/compat/`) that requires
//! `pg_lake` and owns no objects; [`before_create_extension`] creates `pg_lake` first when
//! it is missing, so every order works, a restore of a dump included.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::{Error, OrReport};
use crate::files::quote_ident;
use crate::pg::util::{list_ptrs, string};

/// Extension names of the original that stand for parts of `pg_lake`.
pub const NAMES: &[&str] = &[
    "pg_extension_base",
    "pg_map",
    "pg_lake_engine",
    "pg_lake_iceberg",
    "pg_lake_table",
    "pg_lake_copy",
];

/// Before `CREATE EXTENSION <one of NAMES>`: creates `pg_lake` (in the schema the statement
/// names, if any) unless it exists.
///
/// # Safety
/// `stmt` must be a valid CreateExtensionStmt.
pub unsafe fn before_create_extension(stmt: *mut pg_sys::CreateExtensionStmt) {
    // SAFETY: guaranteed by the caller; catalog lookups on the backend thread.
    unsafe {
        let Some(name) = string((*stmt).extname) else {
            return;
        };
        if !NAMES.contains(&name.as_str())
            || pg_sys::get_extension_oid(c"pg_lake".as_ptr(), true) != pg_sys::InvalidOid
        {
            return;
        }
        let schema = list_ptrs::<pg_sys::DefElem>((*stmt).options)
            .into_iter()
            .find(|d| string((**d).defname).as_deref() == Some("schema"))
            .and_then(|d| string(pg_sys::defGetString(d)));
        let sql = match schema {
            Some(s) => format!("CREATE EXTENSION pg_lake WITH SCHEMA {}", quote_ident(&s)),
            None => "CREATE EXTENSION pg_lake".to_string(),
        };
        Spi::run(&sql)
            .map_err(|e| Error::Internal(format!("creating pg_lake for {name}: {e}")))
            .or_report();
    }
}
