//! Extended query: Parse (described by DuckDB), Bind (checked as Postgres checks it),
//! Describe, Execute (portals, suspension; `TRANSMIT` bypasses them).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::{Bind, BindComplete, Execute};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::PgWireBackendMessage;
use tracing::info;

use crate::error::QueryError;
use crate::params::decode_params;
use crate::query::{self, Event, Plan};
use crate::sql::{redact_for_log, split_statements, Reply};
use crate::types::Description;

use super::{check_query_size, field_info, plan_for, session_of, status, Backend};

/// A statement prepared with Parse.
#[derive(Debug, Clone)]
pub struct Prepared {
    sql: String,
    transmit: bool,
    reply: Reply,
    description: Description,
    /// How many parameters the statement takes, when DuckDB could say.
    param_count: Option<usize>,
}

#[derive(Debug)]
pub struct StatementParser;

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        check_query_size(sql)?;
        let statements = split_statements(sql);
        if statements.len() > 1 {
            return Err(QueryError::new(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            )
            .into());
        }
        let Some(sql) = statements.first() else {
            return Ok(None);
        };
        let plan = plan_for(sql);
        let mut description = Description::default();
        let mut param_count = None;
        if !plan.transmit {
            let session = session_of(client)?;
            let body = plan.sql.clone();
            if let Ok(Some(d)) = tokio::task::spawn_blocking(move || session.describe(&body)).await
            {
                param_count = Some(d.params.len());
                description = d;
            }
        }
        if plan.reply != Reply::Rows || plan.transmit {
            description.columns.clear();
        }
        Ok(Some(Prepared {
            param_count,
            sql: plan.sql,
            transmit: plan.transmit,
            reply: plan.reply,
            description,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .description
            .params
            .iter()
            .map(|t| Type::from_oid(t.oid()).unwrap_or(Type::TEXT))
            .collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(stmt
            .description
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| field_info(c, format.map_or(FieldFormat::Text, |f| format_of(f, i))))
            .collect())
    }
}

/// Column `i`'s format; text where the client gave fewer codes (pgwire's own lookup
/// panics there).
fn format_of(format: &Format, i: usize) -> FieldFormat {
    match format {
        Format::Individual(codes) => codes
            .get(i)
            .map_or(FieldFormat::Text, |c| FieldFormat::from(*c)),
        unified => unified.format_for(i),
    }
}

/// The checks Postgres makes of a Bind message, with its messages and SQLSTATEs.
fn check_bind(bind: &Bind, name: &str, stmt: &StoredStatement<Prepared>) -> Result<(), QueryError> {
    let supplied = bind.parameters.len();
    for &code in bind
        .parameter_format_codes
        .iter()
        .chain(&bind.result_column_format_codes)
    {
        if code != 0 && code != 1 {
            return Err(QueryError::new(
                "22023",
                format!("unsupported format code: {code}"),
            ));
        }
    }
    let formats = bind.parameter_format_codes.len();
    if formats > 1 && formats != supplied {
        return Err(QueryError::new(
            "08P01",
            format!("bind message has {formats} parameter formats but {supplied} parameters"),
        ));
    }
    let prepared = &stmt.statement;
    if let Some(described) = prepared.param_count {
        let required = described.max(stmt.parameter_types.len());
        if supplied != required {
            return Err(QueryError::new(
                "08P01",
                format!(
                    "bind message supplies {supplied} parameters, but prepared statement \"{name}\" \
                     requires {required}"
                ),
            ));
        }
    }
    let results = bind.result_column_format_codes.len();
    let columns = prepared.description.columns.len();
    if results > 1 && columns > 0 && results != columns {
        return Err(QueryError::new(
            "08P01",
            format!("bind message has {results} result formats but query has {columns} columns"),
        ));
    }
    Ok(())
}

fn portal_plan(portal: &Portal<Prepared>) -> Result<Plan, QueryError> {
    let stmt = &portal.statement;
    let params = decode_params(
        &portal.parameters,
        &portal.parameter_format,
        &stmt.parameter_types,
        &stmt.statement.description.params,
    )?;
    let binary = match &portal.result_column_format {
        Format::UnifiedText => Vec::new(),
        Format::UnifiedBinary => vec![true],
        Format::Individual(codes) => codes.iter().map(|c| *c == 1).collect(),
    };
    let p = &stmt.statement;
    Ok(Plan {
        sql: p.sql.clone(),
        params,
        reply: p.reply.clone(),
        transmit: p.transmit,
        binary,
    })
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Prepared;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        self.parser.clone()
    }

    /// pgwire's Bind, with Postgres' checks of parameter counts and format codes first.
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Errors name the unnamed statement "" as Postgres does; pgwire stores it by a name.
        let shown = message.statement_name.as_deref().unwrap_or("");
        let name = message
            .statement_name
            .as_deref()
            .unwrap_or(pgwire::api::DEFAULT_NAME);
        match client.portal_store().get_statement(name) {
            Some(Entry::Value(statement)) => {
                check_bind(&message, shown, &statement)?;
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) => {
                if !message.parameters.is_empty() {
                    return Err(QueryError::new(
                        "08P01",
                        format!(
                            "bind message supplies {} parameters, but prepared statement \"{shown}\" \
                             requires 0",
                            message.parameters.len()
                        ),
                    )
                    .into());
                }
                let portal = message
                    .portal_name
                    .as_deref()
                    .unwrap_or(pgwire::api::DEFAULT_NAME);
                client.portal_store().put_empty_portal(portal);
            }
            None => return Err(PgWireError::StatementNotFound(name.to_owned())),
        }
        client
            .send(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(pgwire::api::store::Entry::Value(p))
                if p.statement.statement.transmit
                    || crate::copy_out::parse(&p.statement.statement.sql).is_some() =>
            {
                p
            }
            _ => return self._on_execute(client, message).await,
        };
        // COPY-out replies cannot be suspended, so they bypass the portal machinery.
        let session = session_of(client)?;
        let plan = portal_plan(&portal)?;
        let outcome = match crate::copy_out::parse(&plan.sql) {
            Some((source, options)) if !plan.transmit => {
                let (source, options) = (source.to_owned(), options.to_owned());
                self.copy_out(client, &session, &source, &options, plan.params)
                    .await?
            }
            _ => self.respond(client, &session, plan).await?,
        };
        match outcome {
            Ok(in_tx) => {
                client.set_transaction_status(status(in_tx, false));
                Ok(())
            }
            Err(failure) => {
                client.set_transaction_status(status(failure.in_transaction, false));
                Err(failure.error.into())
            }
        }
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Prepared>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let inferred = self.parser.get_parameter_types(&target.statement)?;
        let params = (0..target.parameter_types.len().max(inferred.len()))
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| inferred.get(i).cloned())
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        Ok(DescribeStatementResponse::new(
            params,
            self.parser.get_result_schema(&target.statement, None)?,
        ))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        target: &Portal<Prepared>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &target.statement.statement;
        let format = Some(&target.result_column_format);
        if (prepared.description.columns.is_empty() || !target.parameters.is_empty())
            && prepared.reply == Reply::Rows
            && !prepared.transmit
        {
            // The statement could not be described without its parameters (a table
            // function taking one, e.g. read_csv($1)), or its description may not hold
            // for the portal's values (DuckDB can bind read_csv($1) at prepare time to
            // columns that are not the file's): describe it with the portal's.
            let plan = portal_plan(target)?;
            let session = session_of(client)?;
            let bound = tokio::task::spawn_blocking(move || {
                session.describe_bound(&plan.sql, Some(&plan.params))
            })
            .await;
            if let Ok(Some(description)) = bound {
                let described = Prepared {
                    description,
                    ..prepared.clone()
                };
                let fields = self.parser.get_result_schema(&described, format)?;
                return Ok(DescribePortalResponse::new(fields));
            }
        }
        let fields = self.parser.get_result_schema(prepared, format)?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        let plan = portal_plan(portal)?;
        if let Some(started) = self.start_copy_in(client, &plan.sql) {
            started?;
            return Ok(Response::CopyIn(CopyResponse::new(0, 0, stream::empty())));
        }
        if self.verbose {
            info!(pid = session.pid, sql = %redact_for_log(&plan.sql), "query (extended)");
        }
        let format = portal.result_column_format.clone();
        let was_in_tx = client.transaction_status() != TransactionStatus::Idle;
        let mut rx = query::execute(session, plan);
        match rx.recv().await {
            Some(Ok(Event::Columns(cols))) => {
                let fields: Vec<FieldInfo> = cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| field_info(c, format_of(&format, i)))
                    .collect();
                let rows = stream::unfold(rx, |mut rx| async move {
                    match rx.recv().await {
                        Some(Ok(Event::Rows(rows))) => {
                            Some((stream::iter(rows.into_iter().map(Ok)).boxed(), rx))
                        }
                        Some(Err(f)) => Some((
                            stream::iter([Err::<DataRow, _>(f.error.into())]).boxed(),
                            rx,
                        )),
                        _ => None,
                    }
                })
                .flatten();
                Ok(Response::Query(QueryResponse::new(Arc::new(fields), rows)))
            }
            Some(Ok(Event::Done(done))) => {
                let tag = Tag::new(&done.tag);
                Ok(match (was_in_tx, done.in_transaction) {
                    (false, true) => Response::TransactionStart(tag),
                    (true, false) => Response::TransactionEnd(tag),
                    _ => Response::Execution(tag),
                })
            }
            Some(Err(f)) => Err(f.error.into()),
            Some(Ok(_)) | None => {
                Err(QueryError::new("XX000", "query ended without a result").into())
            }
        }
    }
}
