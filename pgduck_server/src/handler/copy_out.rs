//! `COPY (<query>) TO STDOUT [(options)]`: DuckDB writes the file to a private temporary
//! file, whose bytes go to the client as binary COPY-out in chunks of [`CHUNK`] bytes
//! (memory stays flat whatever the file's size). The file is removed afterwards, also
//! when the statement fails or the client goes away mid-stream.

use std::fmt::Debug;
use std::sync::Arc;

use bytes::BytesMut;
use futures::{Sink, SinkExt};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::response::CommandComplete;
use pgwire::messages::PgWireBackendMessage;
use tokio::io::AsyncReadExt;
use tracing::info;

use crate::copy_out::TempOut;
use crate::engine::Session;
use crate::error::QueryError;
use crate::query::{self, Event, Failure, Plan};
use crate::sql::{redact_for_log, Reply};

use super::Backend;

/// Bytes per CopyData message.
pub const CHUNK: usize = 1 << 20;

impl Backend {
    /// Runs `COPY <source> TO <temp file> <options>` and streams the file; I/O errors
    /// with the client end the connection, the rest are returned for the caller to report.
    pub(super) async fn copy_out<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        source: &str,
        options: &str,
        params: Vec<duckdb::types::Value>,
    ) -> PgWireResult<Result<bool, Failure>>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let failed = |error: QueryError| {
            Ok(Err(Failure {
                error,
                in_transaction: session.in_transaction(),
            }))
        };
        let temp = match TempOut::new(&self.copy_out_dir) {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
        let plan = Plan {
            sql: temp.write_sql(source, options),
            params,
            reply: Reply::Count("COPY"),
            transmit: false,
            binary: Vec::new(),
        };
        if self.verbose {
            info!(pid = session.pid, sql = %redact_for_log(&plan.sql), "copy to stdout");
        }
        let mut rx = query::execute(session.clone(), plan);
        let done = loop {
            match rx.recv().await {
                Some(Ok(Event::Done(done))) => break done,
                Some(Ok(_)) => continue,
                Some(Err(failure)) => return Ok(Err(failure)),
                None => return failed(QueryError::new("XX000", "query ended without a result")),
            }
        };
        drop(rx);
        let file = match temp.open() {
            Ok(f) => f,
            Err(e) => return failed(e),
        };
        let mut file = tokio::fs::File::from_std(file);
        client
            .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
                1,
                0,
                Vec::new(),
            )))
            .await?;
        loop {
            let mut chunk = BytesMut::with_capacity(CHUNK);
            while chunk.len() < CHUNK {
                match file.read_buf(&mut chunk).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        return failed(QueryError::new(
                            "58030",
                            format!("cannot read {}: {e}", temp.path().display()),
                        ))
                    }
                }
            }
            if chunk.is_empty() {
                break;
            }
            let last = chunk.len() < CHUNK;
            client
                .send(PgWireBackendMessage::CopyData(CopyData::new(
                    chunk.freeze(),
                )))
                .await?;
            if last {
                break;
            }
        }
        drop(file);
        drop(temp);
        client
            .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
            .await?;
        client
            .feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                done.tag,
            )))
            .await?;
        Ok(Ok(done.in_transaction))
    }
}
