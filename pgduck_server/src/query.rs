//! Runs one statement on a session's DuckDB connection, on a blocking thread, and
//! streams its result back batch by batch through a bounded channel. The channel
//! bound is what keeps memory flat: DuckDB produces the next chunk only when the
//! client has taken the previous ones.
//!
//! `TRANSMIT` batches are encoded as COPY text off the DuckDB thread, by a pool of
//! encoder threads at lower priority, so DuckDB produces the next batch meanwhile and
//! several batches encode at once; the channel carries the encode jobs in result
//! order, and the reader awaits them in that order.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use duckdb::arrow::array::{Array, RecordBatch};
use duckdb::types::Value;
use pgwire::messages::data::DataRow;
use tokio::sync::mpsc;

use crate::encode::{
    check_size, write_binary, write_copy_rows, write_text, ColumnTooLarge, TextColumn, TooLarge,
    MAX_NESTING, MAX_VALUE_BYTES,
};
use crate::engine::Session;
use crate::error::QueryError;
use crate::sql::Reply;
use crate::types::Column;

/// Batches in flight between DuckDB and the socket.
const CHANNEL_DEPTH: usize = 4;

/// One statement to run.
pub struct Plan {
    pub sql: String,
    pub params: Vec<Value>,
    pub reply: Reply,
    /// Answer as COPY-out text data (`TRANSMIT`).
    pub transmit: bool,
    /// Per-column binary flags (empty: all text; one entry: applies to all).
    pub binary: Vec<bool>,
}

/// What the executor reports, in order: `Columns` (row and COPY replies),
/// then `Rows`/`Copy` batches, then `Done`.
pub enum Event {
    Columns(Arc<Vec<Column>>),
    Rows(Vec<DataRow>),
    /// The COPY text of one batch, being encoded by the encoder threads.
    Copy(CopyJob),
    Done(Completion),
}

/// The outcome of a statement that succeeded.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Command tag, e.g. `SELECT 3`, `INSERT 0 1`, `CREATE TABLE`.
    pub tag: String,
    /// Whether the session is inside an explicit transaction afterwards.
    pub in_transaction: bool,
}

/// A failed statement, with the session's transaction state afterwards.
pub struct Failure {
    pub error: QueryError,
    pub in_transaction: bool,
}

pub type Receiver = mpsc::Receiver<Result<Event, Failure>>;

/// What an encoder hands back: the batch's COPY text, or the value that was too large.
type Encoded = std::thread::Result<Result<Bytes, QueryError>>;

/// A batch's COPY text, ready once the job has run.
pub struct CopyJob(tokio::sync::oneshot::Receiver<Encoded>);

/// Nice value of the encoder threads. On two cores a TRANSMIT of 10 M rows took 1.14-1.19x
/// the in-process time with 5 (and with 10), 1.23-1.33x at 0, and 1.36-1.39x on tokio's
/// blocking pool (`cargo bench -p pgduck_server --bench transmit`).
const ENCODER_NICE: i32 = 5;

type EncodeJob = (
    RecordBatch,
    Arc<Vec<Column>>,
    tokio::sync::oneshot::Sender<Encoded>,
);

/// The queue of the threads that encode TRANSMIT batches, one per core, started on
/// first use. They run at a lower priority than the threads fetching from DuckDB: a
/// stream goes no faster than its fetch thread, which must not wait for a core while
/// encoders, which have batches queued up, take them.
static ENCODERS: std::sync::LazyLock<std::sync::mpsc::Sender<EncodeJob>> =
    std::sync::LazyLock::new(|| {
        let (tx, rx) = std::sync::mpsc::channel::<EncodeJob>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..cores {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("encoder-{i}"))
                .stack_size(crate::threads::DUCKDB_THREAD_STACK)
                .spawn(move || {
                    // Per thread on Linux; lowering needs no privilege. Failing leaves
                    // the thread at normal priority, which is only slower.
                    // SAFETY: plain system calls about the calling thread.
                    unsafe {
                        libc::setpriority(
                            libc::PRIO_PROCESS,
                            libc::gettid() as libc::id_t,
                            ENCODER_NICE,
                        );
                    }
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((batch, columns, done)) = job else {
                            return;
                        };
                        let encoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            let mut out = Vec::new();
                            write_copy_rows(batch.columns(), batch.num_rows(), &mut out)
                                .map_err(|e| too_large(&columns, e))?;
                            Ok(Bytes::from(out))
                        }));
                        let _ = done.send(encoded);
                    }
                });
        }
        tx
    });

impl CopyJob {
    /// Queues `batch` (of result `columns`) for the encoder threads.
    fn spawn(batch: RecordBatch, columns: Arc<Vec<Column>>) -> CopyJob {
        let (done, rx) = tokio::sync::oneshot::channel();
        // A send fails only when no encoder thread could start: `done` is dropped
        // with the job, and `data` reports it.
        let _ = ENCODERS.send((batch, columns, done));
        CopyJob(rx)
    }

    /// The encoded batch; an error if a value was too large or the encoder panicked.
    pub async fn data(self) -> Result<Bytes, QueryError> {
        let what = match self.0.await {
            Ok(Ok(encoded)) => return encoded,
            Ok(Err(panic)) => panic_message(panic),
            Err(_) => "the encoder thread is gone".to_owned(),
        };
        Err(QueryError::new(
            "XX000",
            format!("internal error while encoding the result: {what}"),
        ))
    }
}

/// `sql` with its TIMETZ result columns cast to text, when it is a query that has any.
fn timetz_as_text(stmt: &duckdb::Statement<'_>, sql: &str) -> Option<String> {
    let n = stmt.column_count();
    let timetz = |i: usize| {
        stmt.column_logical_type(i).raw_id() == duckdb::ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIME_TZ
    };
    if !(0..n).any(timetz) || !is_query(sql) {
        return None;
    }
    let names = stmt.column_names();
    let columns: Vec<String> = (0..n)
        .map(|i| {
            let name = pg_lake_common::sql::quote_ident(names.get(i).map_or("?column?", |s| s.as_str()));
            if timetz(i) {
                format!("CAST(#{} AS VARCHAR) AS {name}", i + 1)
            } else {
                format!("#{} AS {name}", i + 1)
            }
        })
        .collect();
    Some(format!(
        "SELECT {} FROM ({}) AS pg_lake_timetz",
        columns.join(", "),
        sql.trim().trim_end_matches(';')
    ))
}

/// Whether `sql` is a query whose rows can be selected from (not DDL, COPY, PRAGMA, ...).
fn is_query(sql: &str) -> bool {
    let first: String = sql
        .trim_start()
        .trim_start_matches('(')
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(first.as_str(), "SELECT" | "WITH" | "FROM" | "VALUES" | "TABLE")
}

/// `batch` with its UHUGEINT columns (`columns`) as decimal text. DuckDB hands them to
/// Arrow as Decimal128(38, 0) holding the bits of the u128, so values from 2^127 up
/// would read as negative numbers (the maximum as -1).
fn uhugeints_as_text(batch: RecordBatch, columns: &[usize]) -> RecordBatch {
    use duckdb::arrow::array::{AsArray, StringArray};
    use duckdb::arrow::datatypes::{DataType, Decimal128Type, Field, Schema};
    if columns.is_empty() {
        return batch;
    }
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays = batch.columns().to_vec();
    for &i in columns {
        let Some(decimals) = arrays[i].as_primitive_opt::<Decimal128Type>() else {
            continue;
        };
        let text: StringArray = decimals
            .iter()
            .map(|v| v.map(|bits| (bits as u128).to_string()))
            .collect();
        arrays[i] = Arc::new(text);
        fields[i] = Field::new(fields[i].name(), DataType::Utf8, true);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap_or(batch)
}

/// The error for a value Postgres could not hold either, naming its column.
fn too_large(columns: &[Column], e: ColumnTooLarge) -> QueryError {
    let name = columns.get(e.column).map_or("?", |c| c.name.as_str());
    match e.what {
        TooLarge::Value => QueryError::new(
            "54000",
            format!(
                "result too large at column \"{name}\": the text form of its value (or of \
                 the row up to it) exceeds {MAX_VALUE_BYTES} bytes, the most a Postgres value \
                 or row can hold"
            ),
        ),
        TooLarge::Nesting => QueryError::new(
            "54001",
            format!(
                "a value of column \"{name}\" nests lists, structs or maps more than \
                 {MAX_NESTING} levels deep"
            ),
        ),
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// Starts `plan` on a blocking thread. Dropping the receiver stops the query.
pub fn execute(session: Arc<Session>, plan: Plan) -> Receiver {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        if let Err(error) = session.check_secrets(&plan.sql) {
            let in_transaction = session.in_transaction();
            let _ = tx.blocking_send(Err(Failure {
                error,
                in_transaction,
            }));
            return;
        }
        // Local copies of remote files, pinned until the statement is done with them.
        let (cached_sql, _pins) = session.use_file_cache(&plan.sql);
        let plan = match cached_sql {
            Some(sql) => Plan { sql, ..plan },
            None => plan,
        };
        let outcome = session.run_statement(
            |conn| {
                std::panic::catch_unwind(AssertUnwindSafe(|| run(conn, &plan, &tx))).unwrap_or_else(
                    |panic| {
                        Err(QueryError::new(
                            "XX000",
                            format!(
                                "internal error while reading the result: {}",
                                panic_message(panic)
                            ),
                        ))
                    },
                )
            },
            Result::is_ok,
        );
        let in_transaction = session.track_transaction(&plan.reply, outcome.is_ok());
        let last = match outcome {
            Ok(Some(tag)) => Ok(Event::Done(Completion {
                tag,
                in_transaction,
            })),
            Ok(None) => return, // the client went away
            Err(error) => Err(Failure {
                error,
                in_transaction,
            }),
        };
        let _ = tx.blocking_send(last);
    });
    rx
}

type Sender = mpsc::Sender<Result<Event, Failure>>;

/// A prepared statement, from the connection's cache or made for this execution.
enum Prepared<'c> {
    Cached(duckdb::CachedStatement<'c>),
    Fresh(duckdb::Statement<'c>),
}

impl<'c> std::ops::Deref for Prepared<'c> {
    type Target = duckdb::Statement<'c>;
    fn deref(&self) -> &Self::Target {
        match self {
            Prepared::Cached(s) => s,
            Prepared::Fresh(s) => s,
        }
    }
}

impl std::ops::DerefMut for Prepared<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Prepared::Cached(s) => s,
            Prepared::Fresh(s) => s,
        }
    }
}

/// Prepares `sql`, from the connection's statement cache when that is safe. DuckDB binds
/// a statement's table functions once, at prepare time: a cached `glob('s3://b/*')`,
/// `read_parquet('dir/*.parquet')` or `iceberg_scan(...)` would keep the file list it
/// first saw, and files another engine adds or removes would stay invisible to the
/// session. Statements naming anything in quotes (every file and URL is a string
/// literal) are therefore prepared afresh; the rest (health checks, `SELECT 1`,
/// catalog queries without literals) skip parsing and planning through the cache, and
/// DuckDB rebinds those when the catalog changes.
fn prepare<'c>(conn: &'c duckdb::Connection, sql: &str) -> Result<Prepared<'c>, QueryError> {
    Ok(if sql.contains('\'') {
        Prepared::Fresh(conn.prepare(sql)?)
    } else {
        Prepared::Cached(conn.prepare_cached(sql)?)
    })
}

/// Runs the plan; `Ok(None)` when the receiver was dropped mid-way.
fn run(conn: &duckdb::Connection, plan: &Plan, tx: &Sender) -> Result<Option<String>, QueryError> {
    let mut stmt = prepare(conn, &plan.sql)?;
    // Executes in streaming mode; the iterator is dropped at once so errors while
    // fetching come back as values from `step` rather than panics.
    drop(stmt.stream_arrow(duckdb::params_from_iter(plan.params.iter()))?);
    // DuckDB's Arrow export drops a TIMETZ's offset: a query with TIMETZ columns runs
    // again with those columns as DuckDB's text (`12:00:00+03`, as Postgres writes it).
    // Nothing has been fetched yet, and only queries are re-run.
    if let Some(wrapped) = timetz_as_text(&stmt, &plan.sql) {
        drop(stmt);
        stmt = prepare(conn, &wrapped)?;
        drop(stmt.stream_arrow(duckdb::params_from_iter(plan.params.iter()))?);
    }

    if let (Reply::Count(tag), false) = (&plan.reply, plan.transmit) {
        let mut count: i64 = 0;
        while let Some(batch) = stmt.step()? {
            let batch = RecordBatch::from(&batch);
            if let Some(col) = batch.columns().first() {
                if !col.is_empty() && !col.is_null(0) {
                    let mut s = Vec::new();
                    write_text(col.as_ref(), 0, &mut s)
                        .map_err(|what| too_large(&[], ColumnTooLarge { column: 0, what }))?;
                    count += std::str::from_utf8(&s)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        return Ok(Some(format!("{tag} {count}")));
    }
    if let (Reply::Command(tag), false) = (&plan.reply, plan.transmit) {
        while stmt.step()?.is_some() {}
        drop(stmt);
        // DDL can change what cached statements refer to, and DuckDB does not rebind
        // them all (a recreated temp table keeps its old binding): start afresh.
        conn.flush_prepared_statement_cache();
        return Ok(Some(tag.clone()));
    }

    let columns = Arc::new(crate::types::result_columns(&stmt));
    let uhugeints: Vec<usize> = (0..columns.len())
        .filter(|&i| {
            stmt.column_logical_type(i).raw_id() == duckdb::ffi::DUCKDB_TYPE_DUCKDB_TYPE_UHUGEINT
        })
        .collect();
    if tx
        .blocking_send(Ok(Event::Columns(columns.clone())))
        .is_err()
    {
        return Ok(None);
    }
    let binary = |i: usize| match plan.binary.len() {
        0 => false,
        1 => plan.binary[0],
        _ => plan.binary.get(i).copied().unwrap_or(false),
    };
    let mut rows: u64 = 0;
    let mut scratch = Vec::new();
    while let Some(batch) = stmt.step()? {
        let batch = uhugeints_as_text(RecordBatch::from(&batch), &uhugeints);
        let n = batch.num_rows();
        rows += n as u64;
        let event = if plan.transmit {
            // One CopyData per DuckDB batch, as the original pgduck_server sends them.
            Event::Copy(CopyJob::spawn(batch, columns.clone()))
        } else {
            let text: Vec<TextColumn> = batch
                .columns()
                .iter()
                .map(|c| TextColumn::new(c.as_ref()))
                .collect();
            let mut data_rows = Vec::with_capacity(n);
            for row in 0..n {
                let mut data = BytesMut::with_capacity(8 * text.len());
                for (i, col) in text.iter().enumerate() {
                    if col.is_null(row) {
                        data.extend_from_slice(&(-1i32).to_be_bytes());
                        continue;
                    }
                    scratch.clear();
                    let too_large = |what| too_large(&columns, ColumnTooLarge { column: i, what });
                    if binary(i) {
                        write_binary(batch.column(i).as_ref(), row, columns[i].ty, &mut scratch)
                    } else {
                        col.write(row, false, &mut Vec::new(), &mut scratch)
                    }
                    .map_err(too_large)?;
                    // The row as a whole is bounded like each value.
                    check_size(&data, scratch.len() + 4).map_err(too_large)?;
                    data.extend_from_slice(&(scratch.len() as i32).to_be_bytes());
                    data.extend_from_slice(&scratch);
                }
                data_rows.push(DataRow::new(data, text.len() as i16));
            }
            Event::Rows(data_rows)
        };
        if tx.blocking_send(Ok(event)).is_err() {
            return Ok(None);
        }
    }
    let tag = match (&plan.reply, plan.transmit) {
        (_, true) => format!("COPY {rows}"),
        (Reply::Count(t), _) => format!("{t} {rows}"),
        _ => format!("SELECT {rows}"),
    };
    Ok(Some(tag))
}
