//! COPY FROM a lake URL: DuckDB reads the file and streams it back as COPY text, which
//! Postgres' own COPY FROM machinery loads, so constraints, triggers and errors behave as
//! for any COPY, and a bad row aborts the whole statement with nothing loaded. A Parquet
//! file into an Iceberg table whose columns it matches exactly never leaves DuckDB
//! ([`iceberg_copy`]).

use std::cell::RefCell;

use bytes::{Buf, Bytes};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::{Error, OrReport, Result};
use crate::files::{quote_ident, Format, LakeFiles};
use crate::pg::util::{list_ptrs, pstrdup, string};
use crate::pgduck::{Connection, RowStream};

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

/// Opens the COPY's target for inserting (the lock is held until commit), raising
/// Postgres' permission error unless the user may INSERT into it.
///
/// # Safety
/// `relation` must be a valid RangeVar.
unsafe fn open_for_insert(relation: *mut pg_sys::RangeVar) -> pg_sys::Relation {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let rel = pg_sys::table_openrv(relation, pg_sys::RowExclusiveLock as i32);
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
        rel
    }
}

/// # Safety
/// `stmt` must be a valid COPY FROM statement.
pub(super) unsafe fn copy_from(
    stmt: *mut pg_sys::CopyStmt,
    files: &LakeFiles,
    query_string: *const std::ffi::c_char,
) -> u64 {
    // SAFETY: guaranteed by the caller; the relation stays locked until commit.
    unsafe {
        let rel = open_for_insert((*stmt).relation);
        let relid = (*rel).rd_id;
        if pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, false)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            Error::FeatureNotSupported("COPY FROM is not supported with row-level security".into())
                .report();
        }
        let table = string(pg_sys::get_rel_name(relid)).unwrap_or_default();
        let targets = target_columns(rel, (*stmt).attlist);
        if (*stmt).whereClause.is_null() && !files.freeze {
            if let Some(loaded) = iceberg_copy(relid, files, &targets).or_report() {
                pg_sys::table_close(rel, pg_sys::NoLock as i32);
                return loaded;
            }
        }
        let json = json_columns(rel, &targets);
        let sql = source_query(files, &table, &targets, &json).or_report();
        let rows = Connection::acquire()
            .and_then(|c| c.transmit(&sql))
            .or_report();
        SOURCE.with(|s| *s.borrow_mut() = Some((rows, Bytes::new())));
        let _clear = SourceGuard;

        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        (*pstate).p_sourcetext = query_string;
        let nsitem = pg_sys::addRangeTableEntryForRelation(
            pstate,
            rel,
            pg_sys::RowExclusiveLock as i32,
            std::ptr::null_mut(),
            false,
            false,
        );
        // COPY ... FROM 'url' WHERE ...: the same steps as Postgres' DoCopy; CopyFrom then
        // skips the rows the condition rejects.
        let mut where_clause: *mut pg_sys::Node = std::ptr::null_mut();
        if !(*stmt).whereClause.is_null() {
            pg_sys::addNSItemToQuery(pstate, nsitem, false, true, true);
            let mut w = pg_sys::transformExpr(
                pstate,
                (*stmt).whereClause,
                pg_sys::ParseExprKind::EXPR_KIND_COPY_WHERE,
            );
            w = pg_sys::coerce_to_boolean(pstate, w, c"WHERE".as_ptr());
            pg_sys::assign_expr_collations(pstate, w);
            w = pg_sys::eval_const_expressions(std::ptr::null_mut(), w);
            w = pg_sys::canonicalize_qual(w.cast(), false).cast();
            where_clause = pg_sys::make_ands_implicit(w.cast()).cast();
        }
        let mut attnames: *mut pg_sys::List = std::ptr::null_mut();
        for t in &targets {
            attnames = pg_sys::lappend(attnames, pg_sys::makeString(pstrdup(t)).cast());
        }
        let encoding = pg_sys::makeDefElem(
            pstrdup("encoding"),
            pg_sys::makeString(pstrdup("UTF8")).cast(),
            -1,
        );
        let mut options = pg_sys::lappend(std::ptr::null_mut(), encoding.cast());
        if files.freeze {
            let freeze =
                pg_sys::makeDefElem(pstrdup("freeze"), pg_sys::makeBoolean(true).cast(), -1);
            options = pg_sys::lappend(options, freeze.cast());
        }
        let cstate = pg_sys::BeginCopyFrom(
            pstate,
            rel,
            where_clause,
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

/// `COPY t FROM STDIN WITH (format parquet | json)`: the client's bytes go on to
/// pgduck_server as an upload (a private file there, see
/// [`pg_lake_common::contract::protocol::UPLOAD_TARGET`]), which then loads exactly like
/// `COPY t FROM '<that file>'` with the same options; the file is deleted afterwards
/// (or, after an error, by pgduck_server at the session's next upload or end).
///
/// # Safety
/// `stmt` must be a valid COPY FROM STDIN statement; the client is waiting for its
/// CopyInResponse.
pub(super) unsafe fn copy_from_stdin(
    stmt: *mut pg_sys::CopyStmt,
    options: &[(String, String)],
    query_string: *const std::ffi::c_char,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if pg_sys::whereToSendOutput != pg_sys::CommandDest::DestRemote {
            Error::FeatureNotSupported(
                "COPY FROM STDIN in Parquet or JSON needs a client connection (it cannot run inside a function)".into(),
            )
            .report();
        }
        // The table's privileges and the options are checked before the client sends
        // anything (COPY FROM checks the privileges again, and the lock is the same).
        pg_sys::table_close(open_for_insert((*stmt).relation), pg_sys::NoLock as i32);
        LakeFiles::from_options(Some("/dev/stdin"), options, crate::files::OptionContext::CopyFrom)
            .or_report();
        let path = receive_upload().or_report();
        let files = LakeFiles::from_options(Some(&path), options, crate::files::OptionContext::CopyFrom)
            .or_report();
        let rows = copy_from(stmt, &files, query_string);
        crate::iceberg_table::storage::delete(&path).or_report();
        rows
    }
}

/// The message-size limits of Postgres' own COPY FROM STDIN (libpq/libpq.h).
const PQ_LARGE_MESSAGE_LIMIT: i32 = 0x3fff_ffff - 1;
const PQ_SMALL_MESSAGE_LIMIT: i32 = 10_000;

/// Postgres' frontend message functions (libpq/libpq.h, not in pgrx's bindings).
#[repr(C)]
struct PqCommMethods {
    comm_reset: Option<unsafe extern "C" fn()>,
    flush: Option<unsafe extern "C" fn() -> std::ffi::c_int>,
}

extern "C-unwind" {
    fn pq_startmsgread();
    fn pq_getbyte() -> std::ffi::c_int;
    fn pq_getmessage(s: pg_sys::StringInfo, maxlen: std::ffi::c_int) -> std::ffi::c_int;
    static PqCommMethods: *const PqCommMethods;
}

/// Receives the client's COPY data, as Postgres' COPY FROM STDIN does (CopyInResponse,
/// then CopyData until CopyDone; CopyFail and a lost client are errors), passing each
/// chunk on to pgduck_server as an upload. Answers the upload's path there.
///
/// # Safety
/// Called on the backend thread while the client waits for a CopyInResponse.
unsafe fn receive_upload() -> Result<String> {
    use pg_lake_common::contract::protocol::{UPLOAD_TARGET, UPLOAD_VARIABLE};
    let mut sink = Connection::acquire()?.copy_in(&format!("COPY {UPLOAD_TARGET} FROM STDIN"))?;
    // SAFETY: the message functions run on the backend thread, as Postgres' own COPY.
    unsafe {
        // CopyInResponse: overall format binary, no columns (a file's bytes follow).
        let mut msg = pg_sys::StringInfoData::default();
        pg_sys::pq_beginmessage(&mut msg, b'G' as std::ffi::c_char);
        pg_sys::appendBinaryStringInfo(&mut msg, [1u8, 0, 0].as_ptr().cast(), 3);
        pg_sys::pq_endmessage(&mut msg);
        if let Some(flush) = (*PqCommMethods).flush {
            flush();
        }
        let buf = pg_sys::makeStringInfo();
        loop {
            pg_sys::resetStringInfo(buf);
            pq_startmsgread();
            let kind = pq_getbyte();
            let lost = || {
                Error::ConnectionLost(
                    "unexpected EOF on client connection with an open transaction".into(),
                )
            };
            if kind < 0 {
                return Err(lost());
            }
            let limit = if kind == b'd' as i32 {
                PQ_LARGE_MESSAGE_LIMIT
            } else {
                PQ_SMALL_MESSAGE_LIMIT
            };
            if pq_getmessage(buf, limit) != 0 {
                return Err(lost());
            }
            match kind as u8 {
                b'd' => {
                    let data = std::slice::from_raw_parts((*buf).data as *const u8, (*buf).len as usize);
                    sink.send(Bytes::copy_from_slice(data))?;
                }
                b'c' => break,
                b'f' => {
                    let reason = string(pg_sys::pq_getmsgstring(buf)).unwrap_or_default();
                    return Err(Error::CopyFromStdinFailed(reason));
                }
                // Flush and Sync are ignored during COPY, as Postgres does.
                b'H' | b'S' => {}
                other => {
                    return Err(Error::Protocol(format!(
                        "unexpected message type 0x{other:02X} during COPY from stdin"
                    )))
                }
            }
        }
    }
    let (mut conn, _) = sink.finish()?;
    let rows = conn.query(&format!("SELECT getvariable('{UPLOAD_VARIABLE}')"))?;
    rows.into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
        .ok_or_else(|| Error::Protocol("pgduck_server did not say where the upload went".into()))
}

/// COPY of a Parquet file into an Iceberg table, run inside DuckDB: the file's values go
/// straight into the table's data file, as `INSERT ... SELECT` pushed down does
/// ([`crate::iceberg_table::insert::insert_query`], which checks them as the row path
/// does). Only where the row path would give the same: each file column of exactly its
/// target column's type (no conversion by a Postgres input function to mimic), every
/// other column without a default, and a table with no triggers, CHECK constraints or
/// generated columns. `None`: load the rows through Postgres.
///
/// # Safety
/// `relid` is open and locked by the COPY.
unsafe fn iceberg_copy(relid: pg_sys::Oid, files: &LakeFiles, targets: &[String]) -> Result<Option<u64>> {
    // SAFETY: guaranteed by the caller.
    if files.format != Format::Parquet
        || !crate::iceberg_table::is_iceberg_table(relid)
        || !unsafe { crate::iceberg_table::insert::plain_table(relid) }
    {
        return Ok(None);
    }
    let described = crate::fdw::describe(files)?;
    if described.len() != targets.len() {
        return Ok(None); // the row path says what does not match
    }
    let attributes = crate::pg::util::live_attributes(relid);
    let mut columns = Vec::new();
    let mut sources = Vec::new();
    for a in &attributes {
        let name = pgrx::name_data_to_str(&a.attname);
        let Some(at) = targets.iter().position(|t| t == name) else {
            if a.atthasdef {
                return Ok(None);
            }
            sources.push(None);
            continue;
        };
        let file = if files.match_by_name {
            described.iter().find(|(n, _)| n == name)
        } else {
            described.get(at)
        };
        let Some((file_column, file_type)) = file else {
            return Ok(None);
        };
        let Some(value_type) = crate::plan::ship::value_type(a.atttypid, a.atttypmod) else {
            return Ok(None);
        };
        let file_type = match file_type.as_str() {
            "TIMESTAMP WITH TIME ZONE" => "TIMESTAMPTZ",
            t => t,
        };
        if file_type != value_type {
            return Ok(None);
        }
        let alias = format!("c{}", columns.len() + 1);
        columns.push(format!("{} AS {alias}", quote_ident(file_column)));
        sources.push(Some(alias));
    }
    if columns.is_empty() {
        return Ok(None);
    }
    let sql = format!("SELECT {} FROM {}", columns.join(", "), files.read_sql(None));
    pgrx::debug1!("COPY FROM {} runs inside DuckDB", files.url);
    crate::iceberg_table::insert::insert_query(relid, &sql, &sources).map(Some)
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
        for (i, name) in listed.iter().enumerate() {
            if listed[..i].contains(name) {
                Error::DuplicateColumn(name.clone()).report();
            }
        }
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

/// For each of `targets`, whether it is a json or jsonb column (or a domain over one).
///
/// # Safety
/// `rel` must be an open relation.
unsafe fn json_columns(rel: pg_sys::Relation, targets: &[String]) -> Vec<bool> {
    // SAFETY: guaranteed by the caller; syscache lookups on the backend thread.
    unsafe {
        let desc = (*rel).rd_att;
        let attrs: Vec<pg_sys::FormData_pg_attribute> = (0..(*desc).natts as usize)
            .map(|i| *(*desc).attrs.as_ptr().add(i))
            .collect();
        targets
            .iter()
            .map(|t| {
                attrs
                    .iter()
                    .find(|a| !a.attisdropped && pgrx::name_data_to_str(&a.attname) == t)
                    .is_some_and(|a| crate::types::is_json(a.atttypid))
            })
            .collect()
    }
}

/// The DuckDB query COPY FROM streams: the file's columns in the order of `targets`.
///
/// By default file columns go to the table's columns **by position**, as in the original
/// and in Postgres' own COPY (`COPY t (id, description)` loads a file whose columns are
/// `(id, desc)`); `match_by 'name'` (or CSV `header match`) matches them by name. CSV
/// values are read as text and parsed by Postgres' input functions.
fn source_query(
    files: &LakeFiles,
    table: &str,
    targets: &[String],
    json: &[bool],
) -> Result<String> {
    let described = crate::fdw::describe(files)?;
    let file_cols: Vec<&str> = described.iter().map(|(n, _)| n.as_str()).collect();
    // Each selected file column, in the order of `targets`: a json/jsonb target gets a
    // structured value (a STRUCT, LIST, number, ...) as JSON text, which DuckDB would
    // otherwise render as a record literal.
    let quoted = |cols: &[&str]| {
        cols.iter()
            .enumerate()
            .map(|(i, c)| {
                let file_type = described
                    .iter()
                    .find(|(n, _)| n == c)
                    .map(|(_, t)| t.as_str())
                    .unwrap_or("VARCHAR");
                if json.get(i).copied().unwrap_or(false) && !matches!(file_type, "VARCHAR" | "JSON")
                {
                    format!("CAST(to_json({}) AS VARCHAR)", quote_ident(c))
                } else {
                    quote_ident(c)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let targets_ref: Vec<&str> = targets.iter().map(String::as_str).collect();
    if files.match_by_name {
        if let Some(missing) = targets.iter().find(|t| !file_cols.contains(&t.as_str())) {
            return Err(Error::ColumnMismatch(format!(
                "column \"{missing}\" of table \"{table}\" is not in \"{}\" (its columns: {})",
                files.url,
                file_cols.join(", ")
            )));
        }
        if let Some(extra) = file_cols.iter().find(|c| !targets.iter().any(|t| t == *c)) {
            return Err(Error::ColumnMismatch(format!(
                "column \"{extra}\" of \"{}\" has no matching column in table \"{table}\"",
                files.url
            )));
        }
        let source = if files.format == Format::Csv {
            files.read_sql_as_text()
        } else {
            files.read_sql(None)
        };
        return Ok(format!("SELECT {} FROM {source}", quoted(&targets_ref)));
    }
    if file_cols.len() != targets.len() {
        return Err(Error::ColumnMismatch(format!(
            "\"{}\" has {} columns, but COPY into table \"{table}\" expects {} ({}); file columns are matched by position, or by name with match_by 'name'",
            files.url,
            file_cols.len(),
            targets.len(),
            targets.join(", ")
        )));
    }
    Ok(if files.format == Format::Csv {
        format!(
            "SELECT {} FROM {}",
            quoted(&targets_ref),
            files.read_sql(Some(targets))
        )
    } else {
        format!(
            "SELECT {} FROM {}",
            quoted(&file_cols),
            files.read_sql(None)
        )
    })
}
