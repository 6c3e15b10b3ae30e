//! `CREATE TABLE t () WITH (definition_from = 'url' | load_from = 'url', format ...)`, the
//! original's pg_lake_copy feature for heap tables: the columns come from the file (as
//! schema inference for foreign tables gives them) and, with `load_from`, so do the rows
//! (a COPY FROM the URL right after the table is created, in the same transaction).

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::{Error, OrReport};
use crate::fdw::infer;
use crate::files::{quote_literal, LakeFiles, OptionContext};
use crate::pg::util::{list_ptrs, qualified_name, string};

/// Options of ours in a CREATE TABLE's WITH list (the URL and COPY FROM's file options);
/// the rest are the table's own.
fn is_ours(option: &str) -> bool {
    matches!(option, "load_from" | "definition_from") || OptionContext::CopyFrom.accepts(option)
}

/// What is left to do once Postgres has created the table.
pub struct Pending {
    relation: *mut pg_sys::RangeVar,
    types: Vec<String>,
    load: Option<(String, Vec<(String, String)>)>,
}

/// True when `stmt` has `load_from` or `definition_from` among its WITH options.
///
/// # Safety
/// `stmt` must be a valid CreateStmt.
pub unsafe fn wants(stmt: *mut pg_sys::CreateStmt) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe {
        list_ptrs::<pg_sys::DefElem>((*stmt).options)
            .into_iter()
            .any(|d| {
                matches!(
                    string((*d).defname).as_deref(),
                    Some("load_from" | "definition_from")
                )
            })
    }
}

/// Takes our options out of `stmt` and fills its columns from the file; `None` when the
/// statement has neither `load_from` nor `definition_from`.
///
/// # Safety
/// `stmt` must be a valid, writable CreateStmt.
pub unsafe fn before(stmt: *mut pg_sys::CreateStmt) -> Option<Pending> {
    // SAFETY: guaranteed by the caller; lists are palloc'd in the statement's context.
    unsafe {
        if !wants(stmt) {
            return None;
        }
        let defs = list_ptrs::<pg_sys::DefElem>((*stmt).options);
        let name_of = |d: *mut pg_sys::DefElem| string((*d).defname).unwrap_or_default();
        let mut kept: *mut pg_sys::List = std::ptr::null_mut();
        let (mut url, mut load, mut file_options) = (None, false, Vec::new());
        for d in defs {
            let name = name_of(d).to_ascii_lowercase();
            if !is_ours(&name) {
                kept = pg_sys::lappend(kept, d.cast());
                continue;
            }
            let value = string(pg_sys::defGetString(d)).unwrap_or_default();
            match name.as_str() {
                "load_from" | "definition_from" => {
                    if url.is_some() {
                        Error::InvalidOptionValue {
                            option: name,
                            value,
                            expected: "one of load_from or definition_from, not both".into(),
                        }
                        .report();
                    }
                    load = name == "load_from";
                    url = Some(value);
                }
                _ => file_options.push((name, value)),
            }
        }
        (*stmt).options = kept;
        let url = url.expect("checked above");
        let files =
            LakeFiles::from_options(Some(&url), &file_options, OptionContext::CopyFrom).or_report();
        let relation = (*stmt).relation;
        let mut types = Vec::new();
        if (*stmt).tableElts.is_null() {
            pg_sys::RangeVarGetAndCheckCreationNamespace(
                relation,
                pg_sys::NoLock as pg_sys::LOCKMODE,
                std::ptr::null_mut(),
            );
            let (elts, created) = infer::column_defs(&files, relation);
            (*stmt).tableElts = elts;
            types = created;
        } else if !load {
            Error::FeatureNotSupported(
                "definition_from takes the columns from the file: give an empty column list".into(),
            )
            .report();
        }
        Some(Pending {
            relation,
            types,
            load: load.then_some((url, file_options)),
        })
    }
}

/// After the table exists: ties the inferred composite types to it and loads the file.
///
/// # Safety
/// `pending` must come from [`before`] for the statement that was just executed.
pub unsafe fn after(pending: Pending) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if !pending.types.is_empty() {
            infer::tie_types_to_table(pending.relation, &pending.types);
        }
        let Some((url, options)) = pending.load else {
            return;
        };
        let relid = pg_sys::RangeVarGetRelidExtended(
            pending.relation,
            pg_sys::NoLock as i32,
            0,
            None,
            std::ptr::null_mut(),
        );
        let with = if options.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = options
                .iter()
                .map(|(n, v)| format!("{n} {}", quote_literal(v)))
                .collect();
            format!(" WITH ({})", list.join(", "))
        };
        let sql = format!(
            "COPY {} FROM {}{with}",
            qualified_name(relid),
            quote_literal(&url)
        );
        Spi::run(&sql)
            .map_err(|e| Error::Internal(format!("loading {url}: {e}")))
            .or_report();
    }
}
