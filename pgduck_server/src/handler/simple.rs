//! Simple query: several statements per message, each answered in turn.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::query::{send_ready_for_query, SimpleQueryHandler};
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::CopyInResponse;
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::simplequery::Query;
use pgwire::messages::PgWireBackendMessage;

use crate::error::QueryError;
use crate::sql::split_statements;

use super::{check_query_size, plan_for, session_of, status, Backend};

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        check_query_size(&query.query)?;
        client.set_state(PgWireConnectionState::QueryInProgress);
        let statements = split_statements(&query.query);
        let mut tx_status = client.transaction_status();
        if statements.is_empty() {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        }
        let count = statements.len();
        for (i, sql) in statements.into_iter().enumerate() {
            if let Some(started) = self.start_copy_in(client, sql) {
                match started {
                    Ok(()) if i + 1 == count => {
                        client.set_state(PgWireConnectionState::CopyInProgress(false));
                        client
                            .send(PgWireBackendMessage::CopyInResponse(CopyInResponse::new(
                                0,
                                0,
                                Vec::new(),
                            )))
                            .await?;
                        return Ok(());
                    }
                    Ok(()) => {
                        drop(Self::take_copy_in(client));
                        let error = QueryError::new(
                            "0A000",
                            "COPY FROM STDIN must be the last statement of a query",
                        );
                        client
                            .feed(PgWireBackendMessage::ErrorResponse(
                                error.into_info().into(),
                            ))
                            .await?;
                    }
                    Err(error) => {
                        client
                            .feed(PgWireBackendMessage::ErrorResponse(
                                error.into_info().into(),
                            ))
                            .await?;
                    }
                }
                tx_status = status(session.in_transaction(), true);
                break;
            }
            let outcome = match crate::copy_out::parse(sql) {
                Some((source, options)) => {
                    self.copy_out(client, &session, source, options, Vec::new())
                        .await?
                }
                None => self.respond(client, &session, plan_for(sql)).await?,
            };
            match outcome {
                Ok(in_tx) => tx_status = status(in_tx, false),
                Err(failure) => {
                    client
                        .feed(PgWireBackendMessage::ErrorResponse(
                            failure.error.into_info().into(),
                        ))
                        .await?;
                    tx_status = status(failure.in_transaction, true);
                    break;
                }
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(tx_status);
        send_ready_for_query(client, tx_status).await
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        unreachable!("on_query handles simple queries itself")
    }
}
