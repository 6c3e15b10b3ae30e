//! `COPY ... TO` and `COPY ... FROM` lake URLs (s3://, gs://, and local Parquet/JSON or
//! compressed files), run by DuckDB in pgduck_server.
//!
//! TO: Postgres runs the query; its rows, rendered as text, stream to pgduck_server as
//! CSV (`COPY ... FROM STDIN`) into a temporary table, and DuckDB writes the file from there.
//! FROM: DuckDB reads the file and streams it back as COPY text, which Postgres' own
//! COPY FROM machinery loads, so constraints, triggers and errors behave as for any COPY,
//! and a bad row aborts the whole statement with nothing loaded.

use std::cell::RefCell;

use bytes::{Buf, Bytes};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::{Error, OrReport, Result};
use crate::files::access::local_path;
use crate::files::access::{check, Access};
use crate::files::{quote_ident, quote_literal, Format, LakeFiles, Location, OptionContext};
use crate::pg::util::{
    list_ptrs, pstrdup, qualified_name, string, with_transmission_modes, Transmission,
};
use crate::pgduck::{Connection, RowStream};
use crate::types::{PgShape, Transfer};
use crate::write::csv_sink;

/// The DuckDB table COPY TO stages rows in (one per connection, replaced each time).
const STAGING: &str = "pg_lake_copy_staging";

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
            return false;
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
            if !(*stmt).whereClause.is_null() {
                Error::FeatureNotSupported("COPY FROM a lake URL does not support WHERE".into())
                    .report();
            }
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

/// One output column of the query COPY TO runs.
struct OutputColumn {
    name: String,
    transfer: Transfer,
}

/// # Safety
/// `stmt` must be a valid COPY TO statement.
unsafe fn copy_to(
    stmt: *mut pg_sys::CopyStmt,
    files: &LakeFiles,
    query_string: *const std::ffi::c_char,
) -> u64 {
    // SAFETY: guaranteed by the caller; parse analysis runs on the backend thread.
    let (query_sql, columns) = unsafe { source_query(stmt, query_string) };
    let names: Vec<String> = (1..=columns.len()).map(|i| format!("c{i}")).collect();
    let pg_exprs: Vec<String> = columns
        .iter()
        .zip(&names)
        .map(|(c, n)| c.transfer.pg_expr(&format!("q.{n}")))
        .collect();
    let pg_sql = format!(
        "SELECT {} FROM ({query_sql}) AS q({})",
        pg_exprs.join(", "),
        names.join(", ")
    );

    let mut conn = Connection::acquire().or_report();
    let staging_cols: Vec<String> = names.iter().map(|n| format!("{n} VARCHAR")).collect();
    conn.execute(&format!(
        "CREATE OR REPLACE TEMP TABLE {STAGING} ({})",
        staging_cols.join(", ")
    ))
    .or_report();
    let sink = conn
        .copy_in(&format!(
            "COPY {STAGING} FROM STDIN ({})",
            csv_sink::DUCKDB_OPTIONS
        ))
        .or_report();
    let scaled = columns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let scale = c.transfer.rounds_to_scale?;
            Some(csv_sink::Scaled::new(i, c.name.clone(), scale))
        })
        .collect();
    let (mut conn, rows) = with_transmission_modes(Transmission::Execute, || {
        csv_sink::run(&pg_sql, sink, scaled)
    })
    .or_report();

    let duck_exprs: Vec<String> = columns
        .iter()
        .zip(&names)
        .map(|(c, n)| format!("{} AS {}", c.transfer.duckdb_expr(n), quote_ident(&c.name)))
        .collect();
    // A local file is written under a temporary name and renamed when complete, so a
    // failed COPY never leaves a partial file that breaks every glob over its directory.
    let target = match files.location {
        Location::Local => Some(LocalTarget::new(&files.url)),
        Location::ObjectStore => None,
    };
    let copy = format!(
        "COPY (SELECT {} FROM {STAGING}) TO {} ({}); DROP TABLE {STAGING}",
        duck_exprs.join(", "),
        quote_literal(target.as_ref().map_or(files.url.as_str(), |t| t.temp_str())),
        files.copy_to_options()
    );
    conn.execute(&copy).or_report();
    if let Some(target) = target {
        target.commit().or_report();
    }
    rows
}

/// A local COPY TO target: DuckDB writes `.<name>.pg_lake-<pid>.tmp` beside it, which
/// replaces the target once complete and is removed if anything fails first.
struct LocalTarget {
    path: std::path::PathBuf,
    temp: String,
    done: bool,
}

impl LocalTarget {
    fn new(url: &str) -> LocalTarget {
        let path = local_path(url);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = path
            .with_file_name(format!(".{name}.pg_lake-{}.tmp", std::process::id()))
            .display()
            .to_string();
        LocalTarget {
            path,
            temp,
            done: false,
        }
    }

    fn temp_str(&self) -> &str {
        &self.temp
    }

    fn commit(mut self) -> Result<()> {
        self.done = true;
        std::fs::rename(&self.temp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&self.temp);
            Error::LocalFile {
                path: self.path.display().to_string(),
                action: "writing",
                reason: e.to_string(),
                not_found: false,
            }
        })
    }
}

impl Drop for LocalTarget {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// The SQL text of what COPY TO reads, and its output columns.
///
/// # Safety
/// `stmt` must be a valid COPY TO statement.
unsafe fn source_query(
    stmt: *mut pg_sys::CopyStmt,
    query_string: *const std::ffi::c_char,
) -> (String, Vec<OutputColumn>) {
    // SAFETY: guaranteed by the caller; parse trees are palloc'd in the current context.
    unsafe {
        let raw: *mut pg_sys::RawStmt = if (*stmt).relation.is_null() {
            let raw =
                pg_sys::palloc0(std::mem::size_of::<pg_sys::RawStmt>()) as *mut pg_sys::RawStmt;
            (*raw).type_ = pg_sys::NodeTag::T_RawStmt;
            (*raw).stmt = (*stmt).query;
            raw
        } else {
            let relid = pg_sys::RangeVarGetRelidExtended(
                (*stmt).relation,
                pg_sys::AccessShareLock as i32,
                0,
                None,
                std::ptr::null_mut(),
            );
            let cols = list_ptrs::<pg_sys::String>((*stmt).attlist)
                .into_iter()
                .filter_map(|s| string((*s).sval))
                .map(|c| quote_ident(&c))
                .collect::<Vec<_>>();
            let cols = if cols.is_empty() {
                "*".to_string()
            } else {
                cols.join(", ")
            };
            let sql = format!("SELECT {cols} FROM {}", qualified_name(relid));
            let parsed = pg_sys::raw_parser(pstrdup(&sql), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
            pg_sys::list_nth(parsed, 0).cast()
        };
        let query = pg_sys::parse_analyze_fixedparams(
            raw,
            query_string,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        );
        if (*query).commandType != pg_sys::CmdType::CMD_SELECT || !(*query).utilityStmt.is_null() {
            Error::FeatureNotSupported("COPY to a lake URL needs a SELECT query".into()).report();
        }
        let columns = list_ptrs::<pg_sys::TargetEntry>((*query).targetList)
            .into_iter()
            .filter(|t| !(**t).resjunk)
            .map(|t| {
                let name = string((*t).resname).unwrap_or_else(|| "?column?".into());
                let expr = (*t).expr.cast();
                let shape = pg_shape(pg_sys::exprType(expr), pg_sys::exprTypmod(expr));
                OutputColumn {
                    name,
                    transfer: shape.transfer().or_report(),
                }
            })
            .collect();
        let sql = string(pg_sys::pg_get_querydef(query, false)).unwrap_or_default();
        (sql, columns)
    }
}

/// Resolves a Postgres type far enough to describe it to DuckDB.
fn pg_shape(typid: pg_sys::Oid, typmod: i32) -> PgShape {
    // SAFETY: syscache and typcache lookups on the backend thread; the tuple descriptor
    // is released before returning.
    unsafe {
        let mut typmod = typmod;
        let base = pg_sys::getBaseTypeAndTypmod(typid, &mut typmod);
        let elem = pg_sys::get_element_type(base);
        if elem != pg_sys::InvalidOid {
            return PgShape::Array(Box::new(pg_shape(elem, typmod)));
        }
        if pg_sys::get_typtype(base) == pg_sys::TYPTYPE_COMPOSITE as std::ffi::c_char {
            let desc = pg_sys::lookup_rowtype_tupdesc(base, typmod);
            let fields = (0..(*desc).natts as usize)
                .map(|i| *(*desc).attrs.as_ptr().add(i))
                .filter(|a| !a.attisdropped)
                .map(|a| {
                    (
                        pgrx::name_data_to_str(&a.attname).to_string(),
                        pg_shape(a.atttypid, a.atttypmod),
                    )
                })
                .collect();
            pg_sys::DecrTupleDescRefCount(desc);
            return PgShape::Composite(fields);
        }
        match base {
            pg_sys::BOOLOID => PgShape::Bool,
            pg_sys::INT2OID => PgShape::Int2,
            pg_sys::INT4OID => PgShape::Int4,
            pg_sys::INT8OID => PgShape::Int8,
            pg_sys::FLOAT4OID => PgShape::Float4,
            pg_sys::FLOAT8OID => PgShape::Float8,
            pg_sys::NUMERICOID if typmod >= 4 => {
                let t = typmod - 4;
                PgShape::Numeric(Some(((t >> 16) & 0xffff, t & 0x7ff)))
            }
            pg_sys::NUMERICOID => PgShape::Numeric(None),
            pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID | pg_sys::NAMEOID => {
                PgShape::Text
            }
            pg_sys::BYTEAOID => PgShape::Bytea,
            pg_sys::DATEOID => PgShape::Date,
            pg_sys::TIMEOID => PgShape::Time,
            pg_sys::TIMESTAMPOID => PgShape::Timestamp,
            pg_sys::TIMESTAMPTZOID => PgShape::TimestampTz,
            pg_sys::INTERVALOID => PgShape::Interval,
            pg_sys::UUIDOID => PgShape::Uuid,
            pg_sys::JSONOID | pg_sys::JSONBOID => PgShape::Json,
            _ => PgShape::Other,
        }
    }
}

thread_local! {
    /// The stream COPY FROM's data source callback reads; set only during `copy_from`.
    static SOURCE: RefCell<Option<(RowStream, Bytes)>> = const { RefCell::new(None) };
}

/// Clears [`SOURCE`] when COPY FROM ends, also when it fails: an unfinished stream is
/// then dropped with its connection.
struct SourceGuard;

impl Drop for SourceGuard {
    fn drop(&mut self) {
        SOURCE.with(|s| s.borrow_mut().take());
    }
}

/// Postgres' COPY FROM pulls its input through this callback.
#[pg_guard]
unsafe extern "C-unwind" fn read_source(
    outbuf: *mut std::ffi::c_void,
    minread: i32,
    maxread: i32,
) -> i32 {
    SOURCE.with(|source| {
        let mut source = source.borrow_mut();
        let (rows, pending) = source
            .as_mut()
            .expect("COPY FROM source is set while COPY runs");
        let mut written = 0usize;
        let (min, max) = (minread.max(1) as usize, maxread as usize);
        while written < min {
            if pending.is_empty() {
                *pending = rows.next_chunk().or_report();
                if pending.is_empty() {
                    break;
                }
            }
            let n = pending.len().min(max - written);
            // SAFETY: Postgres gives a buffer of `maxread` bytes; we write at most that.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    pending.as_ptr(),
                    (outbuf as *mut u8).add(written),
                    n,
                );
            }
            pending.advance(n);
            written += n;
        }
        written as i32
    })
}

/// # Safety
/// `stmt` must be a valid COPY FROM statement.
unsafe fn copy_from(
    stmt: *mut pg_sys::CopyStmt,
    files: &LakeFiles,
    query_string: *const std::ffi::c_char,
) -> u64 {
    // SAFETY: guaranteed by the caller; the relation stays locked until commit.
    unsafe {
        let rel = pg_sys::table_openrv((*stmt).relation, pg_sys::RowExclusiveLock as i32);
        let relid = (*rel).rd_id;
        let acl = pg_sys::pg_class_aclcheck(
            relid,
            pg_sys::GetUserId(),
            pg_sys::ACL_INSERT as pg_sys::AclMode,
        );
        if acl != pg_sys::AclResult::ACLCHECK_OK {
            pg_sys::aclcheck_error(
                acl,
                pg_sys::ObjectType::OBJECT_TABLE,
                pg_sys::get_rel_name(relid),
            );
        }
        if pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, false)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            Error::FeatureNotSupported("COPY FROM is not supported with row-level security".into())
                .report();
        }
        let table = string(pg_sys::get_rel_name(relid)).unwrap_or_default();
        let targets = target_columns(rel, (*stmt).attlist);
        let select = matching_columns(files, &table, &targets).or_report();

        let sql = format!("SELECT {select} FROM {}", files.read_sql(Some(&targets)));
        let rows = Connection::acquire()
            .and_then(|c| c.transmit(&sql))
            .or_report();
        SOURCE.with(|s| *s.borrow_mut() = Some((rows, Bytes::new())));
        let _clear = SourceGuard;

        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        (*pstate).p_sourcetext = query_string;
        pg_sys::addRangeTableEntryForRelation(
            pstate,
            rel,
            pg_sys::RowExclusiveLock as i32,
            std::ptr::null_mut(),
            false,
            false,
        );
        let mut attnames: *mut pg_sys::List = std::ptr::null_mut();
        for t in &targets {
            attnames = pg_sys::lappend(attnames, pg_sys::makeString(pstrdup(t)).cast());
        }
        let encoding = pg_sys::makeDefElem(
            pstrdup("encoding"),
            pg_sys::makeString(pstrdup("UTF8")).cast(),
            -1,
        );
        let options = pg_sys::lappend(std::ptr::null_mut(), encoding.cast());
        let cstate = pg_sys::BeginCopyFrom(
            pstate,
            rel,
            std::ptr::null_mut(),
            std::ptr::null(),
            false,
            Some(read_source),
            attnames,
            options,
        );
        let loaded = pg_sys::CopyFrom(cstate);
        pg_sys::EndCopyFrom(cstate);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        loaded
    }
}

/// The columns COPY FROM fills: the statement's column list or every live column.
///
/// # Safety
/// `rel` must be an open relation and `attlist` NIL or a List of String.
unsafe fn target_columns(rel: pg_sys::Relation, attlist: *mut pg_sys::List) -> Vec<String> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let listed: Vec<String> = list_ptrs::<pg_sys::String>(attlist)
            .into_iter()
            .filter_map(|s| string((*s).sval))
            .collect();
        if !listed.is_empty() {
            return listed;
        }
        let desc = (*rel).rd_att;
        (0..(*desc).natts as usize)
            .map(|i| *(*desc).attrs.as_ptr().add(i))
            .filter(|a| !a.attisdropped && a.attgenerated == 0)
            .map(|a| pgrx::name_data_to_str(&a.attname).to_string())
            .collect()
    }
}

/// Checks that the files have the table's columns and returns the DuckDB select list.
/// Files with a header (Parquet, JSON, CSV with header) match by name; a CSV without
/// header by position.
fn matching_columns(files: &LakeFiles, table: &str, targets: &[String]) -> Result<String> {
    let by_position = files.format == Format::Csv && files.csv.header == Some(false);
    let described = crate::fdw::describe(files)?;
    let file_cols: Vec<&str> = described.iter().map(|(n, _)| n.as_str()).collect();
    if by_position {
        if file_cols.len() != targets.len() {
            return Err(Error::ColumnMismatch(format!(
                "\"{}\" has {} columns, but table \"{table}\" expects {}",
                files.url,
                file_cols.len(),
                targets.len()
            )));
        }
    } else if let Some(missing) = targets.iter().find(|t| !file_cols.contains(&t.as_str())) {
        return Err(Error::ColumnMismatch(format!(
            "column \"{missing}\" of table \"{table}\" is not in \"{}\" (its columns: {})",
            files.url,
            file_cols.join(", ")
        )));
    } else if let Some(extra) = file_cols.iter().find(|c| !targets.iter().any(|t| t == *c)) {
        return Err(Error::ColumnMismatch(format!(
            "column \"{extra}\" of \"{}\" has no matching column in table \"{table}\"",
            files.url
        )));
    }
    Ok(targets
        .iter()
        .map(|t| quote_ident(t))
        .collect::<Vec<_>>()
        .join(", "))
}
