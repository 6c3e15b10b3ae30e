//! The Postgres protocol side, one submodule per protocol phase: [`startup`] (start-up
//! and authentication), [`simple`] (simple query), [`extended`] (Parse, Bind, Describe,
//! Execute), [`copy`] (`COPY ... FROM STDIN`), [`copy_out`] (`COPY ... TO STDOUT`) and [`cancel`]; `TRANSMIT`'s COPY-out is
//! written by [`Backend::respond`] here, which every phase uses. pgwire does the
//! framing; these modules decide what each message means for a DuckDB session.

mod cancel;
mod copy;
mod copy_out;
mod extended;
mod simple;
mod startup;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{Sink, SinkExt};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::{ClientInfo, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::data::{FieldDescription, RowDescription};
use pgwire::messages::response::{CommandComplete, TransactionStatus};
use pgwire::messages::PgWireBackendMessage;
use tracing::info;

use crate::engine::{Engine, Session};
use crate::error::QueryError;
use crate::query::{self, Event, Failure, Plan};
use crate::sql::{classify, redact_for_log, strip_transmit};
use crate::types::Column;

pub use extended::StatementParser;

/// Serves one listener. Unix-socket clients are trusted (the socket lives in a
/// directory only the pod's containers share); TCP clients must give the password.
pub struct Backend {
    engine: Arc<Engine>,
    /// Where `COPY ... FROM STDIN` data is spooled before DuckDB loads it.
    spool_dir: PathBuf,
    /// Where `COPY ... TO STDOUT` has DuckDB write the file it then streams.
    copy_out_dir: PathBuf,
    password: Option<String>,
    verbose: bool,
    parser: Arc<StatementParser>,
}

impl Backend {
    pub fn new(
        engine: Arc<Engine>,
        spool_dir: PathBuf,
        copy_out_dir: PathBuf,
        password: Option<String>,
        verbose: bool,
    ) -> Arc<Self> {
        Arc::new(Backend {
            engine,
            spool_dir,
            copy_out_dir,
            password,
            verbose,
            parser: Arc::new(StatementParser),
        })
    }
}

impl PgWireServerHandlers for Backend {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(self.clone_handle())
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(self.clone_handle())
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(self.clone_handle())
    }
    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(self.clone_handle())
    }
    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::new(self.clone_handle())
    }
}

impl Backend {
    fn clone_handle(&self) -> Backend {
        Backend {
            engine: self.engine.clone(),
            spool_dir: self.spool_dir.clone(),
            copy_out_dir: self.copy_out_dir.clone(),
            password: self.password.clone(),
            verbose: self.verbose,
            parser: self.parser.clone(),
        }
    }
}

/// The session attached to a connection once start-up succeeded.
struct SessionSlot(Arc<Session>);

fn session_of<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Session>> {
    client
        .session_extensions()
        .get::<SessionSlot>()
        .map(|s| s.0.clone())
        .ok_or_else(|| fatal("08P01", "query before start-up completed"))
}

fn fatal(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message.into(),
    )))
}

impl Backend {
    /// Runs a statement and writes its reply; I/O errors end the connection,
    /// query errors are returned for the caller to report.
    async fn respond<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        plan: Plan,
    ) -> PgWireResult<Result<bool, Failure>>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.verbose {
            info!(pid = session.pid, sql = %redact_for_log(&plan.sql), "query");
        }
        let transmit = plan.transmit;
        let mut rx = query::execute(session.clone(), plan);
        while let Some(event) = rx.recv().await {
            match event {
                Ok(Event::Columns(cols)) if transmit => {
                    let n = cols.len();
                    client
                        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
                            0,
                            n as i16,
                            vec![0; n],
                        )))
                        .await?;
                }
                Ok(Event::Columns(cols)) => {
                    let fields = cols
                        .iter()
                        .map(|c| field_description(c, FieldFormat::Text))
                        .collect();
                    client
                        .feed(PgWireBackendMessage::RowDescription(RowDescription::new(
                            fields,
                        )))
                        .await?;
                }
                Ok(Event::Rows(rows)) => {
                    for row in rows {
                        client.feed(PgWireBackendMessage::DataRow(row)).await?;
                    }
                }
                Ok(Event::Copy(job)) => {
                    let data = match job.data().await {
                        Ok(data) => data,
                        Err(error) => {
                            // Dropping `rx` stops the statement.
                            return Ok(Err(Failure {
                                error,
                                in_transaction: session.in_transaction(),
                            }));
                        }
                    };
                    client
                        .feed(PgWireBackendMessage::CopyData(CopyData::new(data)))
                        .await?;
                }
                Ok(Event::Done(done)) => {
                    if transmit {
                        client
                            .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
                            .await?;
                    }
                    client
                        .feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                            done.tag,
                        )))
                        .await?;
                    return Ok(Ok(done.in_transaction));
                }
                Err(failure) => return Ok(Err(failure)),
            }
        }
        Ok(Err(Failure {
            error: QueryError::new("XX000", "query ended without a result"),
            in_transaction: false,
        }))
    }
}

fn field_description(c: &Column, format: FieldFormat) -> FieldDescription {
    FieldDescription::new(
        c.name.clone(),
        0,
        0,
        c.ty.oid(),
        c.ty.typlen(),
        -1,
        format.value(),
    )
}

fn field_info(c: &Column, format: FieldFormat) -> FieldInfo {
    FieldInfo::new(
        c.name.clone(),
        None,
        None,
        Type::from_oid(c.ty.oid()).unwrap_or(Type::TEXT),
        format,
    )
    .with_type_size(c.ty.typlen())
}

fn status(in_transaction: bool, failed: bool) -> TransactionStatus {
    match (in_transaction, failed) {
        (true, true) => TransactionStatus::Error,
        (true, false) => TransactionStatus::Transaction,
        (false, _) => TransactionStatus::Idle,
    }
}

/// The longest query text (simple Query or Parse) pgduck_server takes: far more than
/// the extension sends (a `read_parquet` list of 100,000 files is about 10 MB), far less
/// than the 1 GB frame pgwire accepts, whose parsing and planning by DuckDB took 2 GB
/// of memory for a 256 MiB query.
const MAX_QUERY_BYTES: usize = 64 << 20;

fn check_query_size(sql: &str) -> Result<(), QueryError> {
    if sql.len() > MAX_QUERY_BYTES {
        return Err(QueryError::new(
            "54000",
            format!(
                "query of {} bytes is longer than pgduck_server accepts ({MAX_QUERY_BYTES} bytes)",
                sql.len()
            ),
        ));
    }
    Ok(())
}

fn plan_for(sql: &str) -> Plan {
    let (body, transmit) = match strip_transmit(sql) {
        Some(q) => (q, true),
        None => (sql, false),
    };
    Plan {
        sql: body.to_owned(),
        params: Vec::new(),
        reply: classify(body),
        transmit,
        binary: Vec::new(),
    }
}
