//! `COPY ... FROM STDIN`: CopyData is spooled, CopyDone loads it, CopyFail drops it.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::copy::CopyHandler;
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;

use crate::copy_in::{self, CopyIn};
use crate::error::QueryError;
use crate::query::Plan;
use crate::sql::Reply;

use super::{session_of, status, Backend};

/// The `COPY ... FROM STDIN` a connection is receiving, if any.
#[derive(Default)]
struct CopyInSlot(std::sync::Mutex<Option<CopyIn>>);

impl Backend {
    /// Starts a `COPY ... FROM STDIN` if `sql` is one; the caller sends CopyInResponse.
    pub(super) fn start_copy_in<C: ClientInfo>(
        &self,
        client: &C,
        sql: &str,
    ) -> Option<Result<(), QueryError>> {
        let (target, options) = copy_in::parse(sql)?;
        // An upload outlives the COPY: it goes to the private directory of COPY TO
        // STDOUT's files, under the prefix whose leftovers the next start removes.
        let started = if copy_in::is_upload(target) {
            crate::copy_out::private_dir(&self.copy_out_dir).and_then(|()| {
                CopyIn::start(
                    &self.copy_out_dir,
                    &format!("{}upload-", crate::copy_out::PREFIX),
                    target,
                    options,
                )
            })
        } else {
            CopyIn::start(&self.spool_dir, "copy-in-", target, options)
        };
        Some(started.map(|copy| {
            let slot = client
                .session_extensions()
                .get_or_insert_with(CopyInSlot::default);
            *slot.0.lock().expect("copy slot") = Some(copy);
        }))
    }

    pub(super) fn take_copy_in<C: ClientInfo>(client: &C) -> Option<CopyIn> {
        client
            .session_extensions()
            .get::<CopyInSlot>()?
            .0
            .lock()
            .ok()?
            .take()
    }
}

#[async_trait]
impl CopyHandler for Backend {
    async fn on_copy_data<C>(&self, client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let slot = client.session_extensions().get::<CopyInSlot>();
        let mut guard = slot.as_ref().and_then(|s| s.0.lock().ok());
        match guard.as_mut().and_then(|g| g.as_mut()) {
            Some(copy) => Ok(copy.write(&data.data)?),
            None => Err(QueryError::new("08P01", "CopyData outside of COPY FROM STDIN").into()),
        }
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut copy = Self::take_copy_in(client).ok_or_else(|| -> PgWireError {
            QueryError::new("08P01", "CopyDone outside of COPY FROM STDIN").into()
        })?;
        let session = session_of(client)?;
        let plan = Plan {
            sql: copy.load_sql()?,
            params: Vec::new(),
            reply: Reply::Count("COPY"),
            transmit: false,
            binary: Vec::new(),
        };
        let outcome = self.respond(client, &session, plan).await?;
        if outcome.is_err() {
            copy.discard();
        }
        if let Some(path) = copy.kept() {
            client
                .session_extensions()
                .get_or_insert_with(copy_in::KeptUpload::default)
                .replace(path);
        }
        drop(copy); // the spool file goes once DuckDB has loaded it
        match outcome {
            Ok(in_tx) => {
                client.set_transaction_status(status(in_tx, false));
                Ok(())
            }
            Err(failure) => Err(failure.error.into()),
        }
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        drop(Self::take_copy_in(client));
        QueryError::new("57014", format!("COPY from stdin failed: {}", fail.message)).into()
    }
}
