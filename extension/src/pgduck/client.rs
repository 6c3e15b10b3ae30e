//! The backend's client to pgduck_server.
//!
//! tokio-postgres runs on a current-thread runtime owned by the backend, so no extra
//! threads exist and nothing that can ereport ever runs off the backend thread. Every
//! wait polls Postgres' interrupt flags; on Ctrl-C or statement_timeout the remote query
//! is cancelled and [`Error::Interrupted`] lets Postgres raise its own error.
//!
//! Connections are pooled per backend: a statement takes one, gives it back when done,
//! and a nested scan (a join of two lake tables) simply takes a second one.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, CopyInSink, CopyOutStream, NoTls, SimpleQueryMessage};

use crate::error::{interrupt_pending, Error, Result};
use crate::guc;

/// How often a wait looks at Postgres' interrupt flags.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);
/// How long a cancelled query may take to wind down before its connection is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .expect("a current-thread tokio runtime needs only an epoll fd")
    })
}

thread_local! {
    /// Idle connections of this backend, with the connection string they were opened with.
    static IDLE: RefCell<Vec<(String, Arc<Client>)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `fut` on the backend thread until it completes or Postgres has an interrupt pending.
fn block_on_interruptible<F: Future>(fut: F) -> Result<F::Output> {
    runtime().block_on(async {
        let mut fut = std::pin::pin!(fut);
        let mut tick = tokio::time::interval(INTERRUPT_POLL);
        loop {
            tokio::select! {
                out = &mut fut => return Ok(out),
                _ = tick.tick() => {
                    if interrupt_pending() {
                        return Err(Error::Interrupted);
                    }
                }
            }
        }
    })
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Error::Engine {
                sqlstate: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
                hint: db.hint().map(str::to_string),
            },
            None => Error::ConnectionLost(e.to_string()),
        }
    }
}

/// Environment variable (of the postmaster) holding pgduck_server's password, so that it
/// need not be in `pg_lake_engine.host`, which is visible to superusers and in logs.
const PASSWORD_ENV: &str = pg_lake_common::contract::env::PGDUCK_PASSWORD;

/// Where a connection goes, for messages: hosts and ports only, never a password.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!("host={} port={}", hosts.join(","), ports.join(","))
}

/// `text` with every value of the `password` key of `conninfo` masked, in case a message
/// quotes the connection string.
fn redact(text: &str, conninfo: &str) -> String {
    let mut out = text.to_string();
    let mut rest = conninfo;
    while let Some(at) = rest.find("password") {
        let after = rest[at + "password".len()..].trim_start();
        let Some(value) = after.strip_prefix('=') else {
            rest = &rest[at + "password".len()..];
            continue;
        };
        let value = value.trim_start();
        let secret: String = if let Some(quoted) = value.strip_prefix('\'') {
            quoted.split('\'').next().unwrap_or("").to_string()
        } else {
            value.split_whitespace().next().unwrap_or("").to_string()
        };
        if !secret.is_empty() {
            out = out.replace(&secret, "********");
        }
        rest = &rest[at + "password".len()..];
    }
    out
}

/// One connection to pgduck_server, returned to the backend's pool when dropped healthy.
pub struct Connection {
    conninfo: String,
    /// Shared with requests still in flight (see [`Pipeline`]).
    client: Option<Arc<Client>>,
}

impl Connection {
    /// Takes an idle connection for the current `pg_lake_engine.host`, or opens one. An
    /// idle connection whose server went away (pgduck_server restarted) is noticed here,
    /// before anything is sent on it, and replaced.
    pub fn acquire() -> Result<Connection> {
        let conninfo = guc::engine_conninfo();
        if IDLE.with(|idle| !idle.borrow().is_empty()) {
            // Lets the idle connections' tasks read what arrived meanwhile: a closed socket
            // ends the task, and `is_closed` then says so. Each yield polls the I/O driver.
            runtime().block_on(async {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
            });
        }
        let reused = IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            idle.retain(|(_, c)| !c.is_closed());
            idle.iter()
                .position(|(info, _)| *info == conninfo)
                .map(|i| idle.swap_remove(i).1)
        });
        let client = match reused {
            Some(c) => c,
            None => Self::connect(&conninfo)?,
        };
        Ok(Connection {
            conninfo,
            client: Some(client),
        })
    }

    fn connect(conninfo: &str) -> Result<Arc<Client>> {
        let fail = |target: String, reason: String| Error::Connect {
            target,
            reason: redact(&reason, conninfo),
        };
        let mut config: tokio_postgres::Config =
            conninfo.parse().map_err(|e: tokio_postgres::Error| {
                fail(
                    "pg_lake_engine.host".into(),
                    format!("invalid connection string: {e}"),
                )
            })?;
        let target = describe_target(&config);
        if config.get_password().is_none() {
            if let Ok(password) = std::env::var(PASSWORD_ENV) {
                config.password(password);
            }
        }
        if config.get_user().is_none() {
            // pgduck_server ignores the user, but the startup message must carry one.
            config.user("pg_lake");
        }
        config.application_name("pg_lake");
        let timeout = Duration::from_secs(guc::ENGINE_CONNECT_TIMEOUT.get().max(1) as u64);
        config.connect_timeout(timeout);
        let (client, connection) = block_on_interruptible(config.connect(NoTls))?
            .map_err(|e| fail(target.clone(), e.to_string()))?;
        // The connection task only runs while this backend is inside block_on.
        runtime().spawn(connection);
        Ok(Arc::new(client))
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a live connection always holds its client")
    }

    /// Turns the outcome of a request into a result; an interrupted request is cancelled
    /// remotely and its connection discarded.
    fn settle<T>(&mut self, outcome: Result<Result<T, tokio_postgres::Error>>) -> Result<T> {
        match outcome {
            Ok(result) => result.map_err(Error::from),
            Err(interrupted) => {
                self.cancel_and_discard();
                Err(interrupted)
            }
        }
    }

    /// Asks pgduck_server to cancel whatever this connection runs, then forgets the connection.
    fn cancel_and_discard(&mut self) {
        if let Some(client) = self.client.take() {
            let token = client.cancel_token();
            // Best effort: the connection is dropped either way, which also ends the query.
            let _ = runtime().block_on(async {
                tokio::time::timeout(CANCEL_GRACE, token.cancel_query(NoTls)).await
            });
        }
    }

    /// Runs SQL and returns its rows as text values (simple protocol).
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let outcome = block_on_interruptible(self.client().simple_query(sql));
        let messages = self.settle(outcome)?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    /// Runs `;`-separated statements in one round trip (a simple query; the first
    /// failing one ends it) and answers each statement's rows, in order.
    pub fn query_each(&mut self, sql: &str) -> Result<Vec<Vec<Vec<Option<String>>>>> {
        let outcome = block_on_interruptible(self.client().simple_query(sql));
        let messages = self.settle(outcome)?;
        let mut results = Vec::new();
        let mut rows = Vec::new();
        for message in messages {
            match message {
                SimpleQueryMessage::Row(row) => rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                SimpleQueryMessage::CommandComplete(_) => results.push(std::mem::take(&mut rows)),
                _ => {}
            }
        }
        Ok(results)
    }

    /// Runs one statement with text parameters (`$1`, ...), bound rather than spliced
    /// into the SQL: DuckDB's parser is slow on long literals (a 100 kB string costs it
    /// ~15 ms, as a parameter ~1 ms), and metadata files travel this way. One round trip
    /// (the parameter types are given, so nothing is prepared first); answers the
    /// number of rows.
    pub fn execute_params(&mut self, sql: &str, params: &[&str]) -> Result<usize> {
        let typed: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), tokio_postgres::types::Type)> =
            params
                .iter()
                .map(|p| (p as &(dyn tokio_postgres::types::ToSql + Sync), tokio_postgres::types::Type::TEXT))
                .collect();
        let outcome = block_on_interruptible(self.client().query_typed(sql, &typed));
        Ok(self.settle(outcome)?.len())
    }

    /// Runs SQL statements whose results are not needed.
    pub fn execute(&mut self, sql: &str) -> Result<()> {
        let outcome = block_on_interruptible(self.client().batch_execute(sql));
        self.settle(outcome)
    }

    /// Starts `TRANSMIT <query>`: the result streams back as COPY text rows.
    pub fn transmit(self, query: &str) -> Result<RowStream> {
        let sql = format!("{} {query}", pg_lake_common::contract::protocol::TRANSMIT);
        self.copy_out(&sql)
    }

    /// Starts `sql`, a statement answered with COPY-out data (`TRANSMIT ...`, or
    /// `COPY (...) TO STDOUT (FORMAT parquet)` whose data is a file's bytes).
    pub fn copy_out(mut self, sql: &str) -> Result<RowStream> {
        let outcome = block_on_interruptible(self.client().copy_out(sql));
        let stream = self.settle(outcome)?;
        Ok(RowStream {
            conn: self,
            stream: Box::pin(stream),
            buf: BytesMut::new(),
            done: false,
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !client.is_closed() {
                let conninfo = std::mem::take(&mut self.conninfo);
                IDLE.with(|idle| idle.borrow_mut().push((conninfo, client)));
            }
        }
    }
}

/// A COPY-out result being read row by row.
pub struct RowStream {
    conn: Connection,
    stream: Pin<Box<CopyOutStream>>,
    /// Bytes received but not yet handed out; starts at a row boundary.
    buf: BytesMut,
    done: bool,
}

impl RowStream {
    /// The next row (COPY text format, without its newline), or `None` at the end.
    pub fn next_row(&mut self) -> Result<Option<Bytes>> {
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let mut row = self.buf.split_to(nl + 1);
                row.truncate(nl);
                return Ok(Some(row.freeze()));
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(Error::Protocol("the last row has no newline".into()));
            }
            self.fill()?;
        }
    }

    /// Appends the next chunk of COPY data to `buf`; sets `done` at the end of the result.
    fn fill(&mut self) -> Result<()> {
        let next = match block_on_interruptible(self.stream.next()) {
            Ok(next) => next,
            Err(interrupted) => {
                self.done = true;
                self.conn.cancel_and_discard();
                return Err(interrupted);
            }
        };
        match next {
            Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
            Some(Err(e)) => {
                self.done = true;
                return Err(e.into());
            }
            None => self.done = true,
        }
        Ok(())
    }

    /// Raw COPY data for a reader that parses rows itself; empty at the end.
    pub fn next_chunk(&mut self) -> Result<Bytes> {
        while self.buf.is_empty() && !self.done {
            self.fill()?;
        }
        Ok(self.buf.split().freeze())
    }

    /// Stops reading early: the remote query is cancelled and the connection dropped.
    /// (Draining and reusing it would race the cancel against the next query.)
    pub fn abandon(mut self) {
        if !self.done {
            self.done = true;
            self.conn.cancel_and_discard();
        }
    }
}

impl Drop for RowStream {
    fn drop(&mut self) {
        // A stream dropped mid-result (an error in the scan) leaves unread messages
        // behind; such a connection must not be reused.
        if !self.done {
            self.conn.client = None;
        }
    }
}

/// `COPY ... FROM STDIN` in progress on a connection: data goes out as it is sent, and
/// [`CopyIn::finish`] ends it and hands the connection back for the next statement.
pub struct CopyIn {
    conn: Connection,
    sink: Pin<Box<CopyInSink<Bytes>>>,
    finished: bool,
}

impl Connection {
    /// Starts `sql`, a `COPY ... FROM STDIN`, on this connection.
    pub fn copy_in(mut self, sql: &str) -> Result<CopyIn> {
        let outcome = block_on_interruptible(self.client().copy_in::<_, Bytes>(sql));
        let sink = self.settle(outcome)?;
        Ok(CopyIn {
            conn: self,
            sink: Box::pin(sink),
            finished: false,
        })
    }
}

impl CopyIn {
    /// Sends one chunk of COPY data, waiting while the socket is full.
    pub fn send(&mut self, data: Bytes) -> Result<()> {
        let outcome = block_on_interruptible(self.sink.as_mut().send(data));
        self.conn.settle(outcome)
    }

    /// Ends the copy; returns the connection and the number of rows the server loaded.
    pub fn finish(mut self) -> Result<(Connection, u64)> {
        let outcome = block_on_interruptible(self.sink.as_mut().finish());
        self.finished = true;
        let rows = self.conn.settle(outcome)?;
        let conn = Connection {
            conninfo: std::mem::take(&mut self.conn.conninfo),
            client: self.conn.client.take(),
        };
        Ok((conn, rows))
    }
}

impl Drop for CopyIn {
    fn drop(&mut self) {
        // An unfinished copy (an error while producing rows) is aborted with its
        // connection, which is never reused.
        if !self.finished {
            self.conn.client = None;
        }
    }
}
