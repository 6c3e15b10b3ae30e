//! COPY TO a lake URL: Postgres runs the query; its rows, rendered as text, stream to
//! pgduck_server as CSV (`COPY ... FROM STDIN`) into a temporary table, and DuckDB writes
//! the file from there.

use pgrx::pg_sys;

use crate::error::{Error, OrReport, Result};
use crate::files::access::local_path;
use crate::files::{quote_ident, quote_literal, Format, LakeFiles, Location};
use crate::pg::util::{
    list_ptrs, pstrdup, qualified_name, string, with_transmission_modes, Transmission,
};
use crate::pgduck::Connection;
use crate::types::{PgShape, Transfer};
use crate::write::csv_sink;

/// The DuckDB table COPY TO stages rows in (one per connection, replaced each time).
const STAGING: &str = "pg_lake_copy_staging";

/// One output column of the query COPY TO runs.
struct OutputColumn {
    name: String,
    transfer: Transfer,
}

/// A COPY TO's rows staged in pgduck_server: the connection holding them, how many,
/// and the DuckDB query that reads them back as the file's columns.
struct Staged {
    conn: Connection,
    rows: u64,
    select: String,
}

/// Runs the COPY's query in Postgres and streams its rows into a DuckDB staging table.
///
/// # Safety
/// `stmt` must be a valid COPY TO statement.
unsafe fn stage(
    stmt: *mut pg_sys::CopyStmt,
    files: &LakeFiles,
    query_string: *const std::ffi::c_char,
) -> Staged {
    // SAFETY: guaranteed by the caller; parse analysis runs on the backend thread.
    let (query_sql, columns) = unsafe { source_query(stmt, query_string, files.format) };
    if columns.is_empty() {
        Error::FeatureNotSupported(
            "COPY to a lake file needs at least one column: the query has no columns".into(),
        )
        .report();
    }
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
            Some(csv_sink::Scaled::new(
                i,
                c.name.clone(),
                c.transfer.decimal?,
            ))
        })
        .collect();
    let (conn, rows) = with_transmission_modes(Transmission::Execute, || {
        csv_sink::run(&pg_sql, sink, scaled)
    })
    .or_report();

    let duck_exprs: Vec<String> = columns
        .iter()
        .zip(&names)
        .map(|(c, n)| format!("{} AS {}", c.transfer.duckdb_expr(n), quote_ident(&c.name)))
        .collect();
    Staged {
        conn,
        rows,
        select: format!("SELECT {} FROM {STAGING}", duck_exprs.join(", ")),
    }
}

/// # Safety
/// `stmt` must be a valid COPY TO statement.
pub(super) unsafe fn copy_to(
    stmt: *mut pg_sys::CopyStmt,
    files: &LakeFiles,
    query_string: *const std::ffi::c_char,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    let Staged {
        mut conn,
        rows,
        select,
    } = unsafe { stage(stmt, files, query_string) };
    // A local file is written under a temporary name and renamed when complete, so a
    // failed COPY never leaves a partial file that breaks every glob over its directory.
    let target = match files.location {
        Location::Local => Some(LocalTarget::new(&files.url)),
        Location::ObjectStore => None,
    };
    if rows == 0 && target.is_none() && files.format != Format::Parquet {
        // DuckDB's CSV and JSON writers upload nothing for zero rows; the file they
        // would write (a CSV header, a compressed empty stream) is written instead.
        empty_object(conn, &select, files).or_report();
        return rows;
    }
    let copy = format!(
        "COPY ({select}) TO {} ({}); DROP TABLE {STAGING}",
        quote_literal(target.as_ref().map_or(files.url.as_str(), |t| t.temp_str())),
        files.copy_to_options()
    );
    conn.execute(&copy).or_report();
    if let Some(target) = target {
        target.commit().or_report();
    }
    rows
}

/// The object a COPY of zero rows writes: DuckDB writes the file it would (header and
/// compression included) to pgduck_server's private temporary file, whose bytes come
/// back through COPY TO STDOUT and go to `files.url` in one write.
fn empty_object(conn: Connection, select: &str, files: &LakeFiles) -> Result<()> {
    let mut stream = conn.copy_out(&format!(
        "COPY ({select}) TO STDOUT ({})",
        files.copy_to_options()
    ))?;
    let mut bytes = Vec::new();
    loop {
        let chunk = stream.next_chunk()?;
        if chunk.is_empty() {
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    drop(stream);
    crate::iceberg_table::storage::write(&files.url, &bytes)?;
    drop_staging()
}

/// Drops the staging table after a COPY TO STDOUT read it: it lives in that
/// connection's DuckDB session, idle again once the stream ended.
fn drop_staging() -> Result<()> {
    Connection::acquire()?.execute(&format!("DROP TABLE IF EXISTS {STAGING}"))
}

/// `COPY ... TO STDOUT WITH (format parquet | json)`: DuckDB writes the file, pgduck_server
/// streams its bytes, and they go to the client as binary COPY data, chunk by chunk.
///
/// # Safety
/// `stmt` must be a valid COPY TO STDOUT statement; the client is waiting for its result.
pub(super) unsafe fn copy_to_stdout(
    stmt: *mut pg_sys::CopyStmt,
    files: &LakeFiles,
    query_string: *const std::ffi::c_char,
) -> u64 {
    // SAFETY: guaranteed by the caller; protocol messages go out on the backend thread.
    unsafe {
        let Staged { conn, rows, select } = stage(stmt, files, query_string);
        let mut stream = conn
            .copy_out(&format!(
                "COPY ({select}) TO STDOUT ({})",
                files.copy_to_options()
            ))
            .or_report();
        // CopyOutResponse: overall format binary, no per-column formats (a file's bytes).
        send_message(b'H', &[1, 0, 0]);
        loop {
            let chunk = stream.next_chunk().or_report();
            if chunk.is_empty() {
                break;
            }
            send_message(b'd', &chunk);
        }
        pg_sys::pq_putemptymessage(b'c' as std::ffi::c_char);
        drop(stream);
        let _ = drop_staging();
        rows
    }
}

/// Sends one protocol message of type `kind` to the client.
///
/// # Safety
/// Called on the backend thread while the client expects such a message.
unsafe fn send_message(kind: u8, payload: &[u8]) {
    // SAFETY: pq_beginmessage initialises `buf` in the current memory context,
    // pq_endmessage queues it for the client and frees it.
    unsafe {
        let mut buf = pg_sys::StringInfoData::default();
        pg_sys::pq_beginmessage(&mut buf, kind as std::ffi::c_char);
        pg_sys::appendBinaryStringInfo(&mut buf, payload.as_ptr().cast(), payload.len() as i32);
        pg_sys::pq_endmessage(&mut buf);
    }
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

/// The SQL text of what COPY TO reads, and its output columns as they travel to `format`.
///
/// # Safety
/// `stmt` must be a valid COPY TO statement.
unsafe fn source_query(
    stmt: *mut pg_sys::CopyStmt,
    query_string: *const std::ffi::c_char,
    format: Format,
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
                let shape = PgShape::of(pg_sys::exprType(expr), pg_sys::exprTypmod(expr));
                OutputColumn {
                    name,
                    transfer: shape.transfer_to(format).or_report(),
                }
            })
            .collect();
        let sql = string(pg_sys::pg_get_querydef(query, false)).unwrap_or_default();
        (sql, columns)
    }
}
