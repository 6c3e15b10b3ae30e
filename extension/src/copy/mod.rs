//! `COPY ... TO` and `COPY ... FROM` lake URLs (s3://, gs://, and local Parquet/JSON or
//! compressed files), run by DuckDB in pgduck_server.
//!
//! TO: Postgres runs the query; its rows, rendered as text, stream to pgduck_server as
//! CSV (`COPY ... FROM STDIN`) into a temporary table, and DuckDB writes the file from there.
//! FROM: DuckDB reads the file and streams it back as COPY text, which Postgres' own
//! COPY FROM machinery loads, so constraints, triggers and errors behave as for any COPY,
//! and a bad row aborts the whole statement with nothing loaded.

pub mod create_table;
mod from;
mod to;

use pgrx::pg_sys;

use crate::error::OrReport;
use crate::files::access::{check, Access};
use crate::files::{Format, LakeFiles, OptionContext};
use crate::pg::util::{list_ptrs, string};

use from::copy_from;
use to::copy_to;

/// Handles `stmt` if it targets a lake URL; false leaves it to Postgres.
///
/// # Safety
/// `stmt` must be a valid CopyStmt and `query_string` the statement's source text.
pub unsafe fn handle(
    stmt: *mut pg_sys::CopyStmt,
    query_string: *const std::ffi::c_char,
    qc: *mut pg_sys::QueryCompletion,
) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if (*stmt).is_program {
            return false;
        }
        let Some(url) = string((*stmt).filename) else {
            return stream(stmt, query_string, qc);
        };
        let options = copy_options((*stmt).options);
        if !is_lake_copy(&url, &options) {
            return false;
        }
        let context = if (*stmt).is_from {
            OptionContext::CopyFrom
        } else {
            OptionContext::CopyTo
        };
        let files = LakeFiles::from_options(Some(&url), &options, context).or_report();
        let rows = if (*stmt).is_from {
            check(&files.url, Access::Read).or_report();
            copy_from(stmt, &files, query_string)
        } else {
            check(&files.url, Access::Write).or_report();
            copy_to(stmt, &files, query_string)
        };
        if !qc.is_null() {
            (*qc).commandTag = pg_sys::CommandTag::CMDTAG_COPY;
            (*qc).nprocessed = rows;
        }
        true
    }
}

/// `COPY ... TO STDOUT` / `COPY ... FROM STDIN WITH (format parquet | json)`: formats
/// Postgres' own COPY lacks go through pgduck_server; everything else is Postgres'.
///
/// # Safety
/// As [`handle`].
unsafe fn stream(
    stmt: *mut pg_sys::CopyStmt,
    query_string: *const std::ffi::c_char,
    qc: *mut pg_sys::QueryCompletion,
) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let options = copy_options((*stmt).options);
        let lake_format = options.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("format")
                && matches!(v.to_ascii_lowercase().as_str(), "parquet" | "json")
        });
        if !lake_format {
            return false;
        }
        if (*stmt).is_from {
            // As for Postgres' own COPY FROM STDIN, only the table's privileges apply.
            let rows = from::copy_from_stdin(stmt, &options, query_string);
            if !qc.is_null() {
                (*qc).commandTag = pg_sys::CommandTag::CMDTAG_COPY;
                (*qc).nprocessed = rows;
            }
            return true;
        }
        // The data goes to the client, not to a file: no file privilege is involved, as for
        // Postgres' own COPY TO STDOUT (the query's privileges apply as usual).
        let files =
            LakeFiles::from_options(Some(STDOUT), &options, OptionContext::CopyTo).or_report();
        let rows = to::copy_to_stdout(stmt, &files, query_string);
        if !qc.is_null() {
            (*qc).commandTag = pg_sys::CommandTag::CMDTAG_COPY;
            (*qc).nprocessed = rows;
        }
        true
    }
}

/// Stands for the client's end of COPY TO STDOUT where a file URL would be.
const STDOUT: &str = "/dev/stdout";

/// Object-storage URLs always; local paths when Postgres' COPY could not handle them
/// (Parquet, JSON, compression).
fn is_lake_copy(url: &str, options: &[(String, String)]) -> bool {
    if url.contains("://") {
        return true;
    }
    let option = |name: &str| {
        options
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    // Options Postgres' own COPY does not have.
    if option("compression").is_some() || option("null_padding").is_some() {
        return true;
    }
    if let Some(format) = option("format") {
        return matches!(format.as_str(), "parquet" | "json");
    }
    LakeFiles::from_options(Some(url), &[], OptionContext::CopyFrom)
        .is_ok_and(|f| f.format != Format::Csv || f.compression.is_some())
}

/// COPY's WITH options as (name, value); `HEADER` alone means true, `FORCE_QUOTE (a, b)`
/// becomes "a,b" and `FORCE_QUOTE *` "*".
///
/// # Safety
/// `list` must be NIL or a valid List of DefElem.
unsafe fn copy_options(list: *mut pg_sys::List) -> Vec<(String, String)> {
    // SAFETY: guaranteed by the caller; each arg is inspected by node tag.
    unsafe {
        list_ptrs::<pg_sys::DefElem>(list)
            .into_iter()
            .map(|d| {
                let name = string((*d).defname).unwrap_or_default();
                let arg = (*d).arg;
                let value = if arg.is_null() {
                    "true".to_string()
                } else {
                    match (*arg).type_ {
                        pg_sys::NodeTag::T_A_Star => "*".to_string(),
                        pg_sys::NodeTag::T_List => list_ptrs::<pg_sys::String>(arg.cast())
                            .into_iter()
                            .filter_map(|s| string((*s).sval))
                            .collect::<Vec<_>>()
                            .join(","),
                        _ => string(pg_sys::defGetString(d)).unwrap_or_default(),
                    }
                };
                (name, value)
            })
            .collect()
    }
}
