//! The Postgres protocol side: start-up and authentication, simple and extended
//! query, COPY-out for `TRANSMIT`, and cancel requests. pgwire does the framing;
//! this module decides what each message means for a DuckDB session.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{send_ready_for_query, ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyInResponse, CopyOutResponse};
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use pgwire::messages::extendedquery::{Bind, BindComplete, Execute};
use pgwire::messages::response::{CommandComplete, EmptyQueryResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::{Authentication, SecretKey};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tracing::{debug, info};

use crate::copy_in::{self, CopyIn};
use crate::engine::{Engine, Session};
use crate::error::QueryError;
use crate::params::decode_params;
use crate::query::{self, Event, Failure, Plan};
use crate::sql::{classify, redact_for_log, split_statements, strip_transmit, Reply};
use crate::types::{Column, Description};

/// Serves one listener. Unix-socket clients are trusted (the socket lives in a
/// directory only the pod's containers share); TCP clients must give the password.
pub struct Backend {
    engine: Arc<Engine>,
    /// Where `COPY ... FROM STDIN` data is spooled before DuckDB loads it.
    spool_dir: PathBuf,
    password: Option<String>,
    verbose: bool,
    parser: Arc<StatementParser>,
}

impl Backend {
    pub fn new(
        engine: Arc<Engine>,
        spool_dir: PathBuf,
        password: Option<String>,
        verbose: bool,
    ) -> Arc<Self> {
        Arc::new(Backend {
            engine,
            spool_dir,
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

/// The `COPY ... FROM STDIN` a connection is receiving, if any.
#[derive(Default)]
struct CopyInSlot(std::sync::Mutex<Option<CopyIn>>);

impl Backend {
    /// Starts a `COPY ... FROM STDIN` if `sql` is one; the caller sends CopyInResponse.
    fn start_copy_in<C: ClientInfo>(
        &self,
        client: &C,
        sql: &str,
    ) -> Option<Result<(), QueryError>> {
        let (target, options) = copy_in::parse(sql)?;
        Some(CopyIn::start(&self.spool_dir, target, options).map(|copy| {
            let slot = client
                .session_extensions()
                .get_or_insert_with(CopyInSlot::default);
            *slot.0.lock().expect("copy slot") = Some(copy);
        }))
    }

    fn take_copy_in<C: ClientInfo>(client: &C) -> Option<CopyIn> {
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

impl Backend {
    fn clone_handle(&self) -> Backend {
        Backend {
            engine: self.engine.clone(),
            spool_dir: self.spool_dir.clone(),
            password: self.password.clone(),
            verbose: self.verbose,
            parser: self.parser.clone(),
        }
    }
}

/// The session attached to a connection once start-up succeeded.
struct SessionSlot(Arc<Session>);

/// MD5 salt sent to a TCP client, kept until its password arrives.
struct Md5Salt([u8; 4]);

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

fn server_parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = format!("15.0 (pgduck_server {})", env!("CARGO_PKG_VERSION"));
    p.date_style = "ISO, MDY".into();
    p.time_zone = "UTC".into();
    p.interval_style = "postgres".into();
    p
}

#[async_trait]
impl StartupHandler for Backend {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                if self.password.is_some() {
                    let salt: [u8; 4] = rand::random();
                    client.session_extensions().insert(Md5Salt(salt));
                    client.set_state(PgWireConnectionState::AuthenticationInProgress);
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::MD5Password(salt.to_vec()),
                        ))
                        .await?;
                    Ok(())
                } else {
                    self.start_session(client).await
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(pw) => {
                let given = pw.into_password()?.password;
                let user = client.metadata().get("user").cloned().unwrap_or_default();
                let salt = client
                    .session_extensions()
                    .get::<Md5Salt>()
                    .map(|s| s.0)
                    .unwrap_or_default();
                let expected = self
                    .password
                    .as_deref()
                    .map(|p| md5_password(p, &user, &salt));
                if expected.as_deref() != Some(given.as_str()) {
                    return Err(fatal(
                        "28P01",
                        &format!("password authentication failed for user \"{user}\""),
                    ));
                }
                self.start_session(client).await
            }
            _ => Err(fatal("08P01", "unexpected message during start-up")),
        }
    }
}

/// `md5` + md5(md5(password + user) + salt), as libpq computes it.
fn md5_password(password: &str, user: &str, salt: &[u8; 4]) -> String {
    let inner = format!("{:x}", md5::compute(format!("{password}{user}")));
    let mut outer = inner.into_bytes();
    outer.extend_from_slice(salt);
    format!("md5{:x}", md5::compute(outer))
}

impl Backend {
    async fn start_session<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self
            .engine
            .open_session()
            .map_err(|e| fatal(e.code, &e.message))?;
        client.set_pid_and_secret_key(session.pid, SecretKey::I32(session.secret));
        debug!(pid = session.pid, "session started");
        client.session_extensions().insert(SessionSlot(session));
        finish_authentication(client, &server_parameters()).await
    }

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
            match self.respond(client, &session, plan_for(sql)).await? {
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
            Some(pgwire::api::store::Entry::Value(p)) if p.statement.statement.transmit => p,
            _ => return self._on_execute(client, message).await,
        };
        // COPY-out replies cannot be suspended, so they bypass the portal machinery.
        let session = session_of(client)?;
        let plan = portal_plan(&portal)?;
        match self.respond(client, &session, plan).await? {
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
        if prepared.description.columns.is_empty()
            && prepared.reply == Reply::Rows
            && !prepared.transmit
        {
            // The statement could not be described without its parameters (a table
            // function taking one, e.g. read_csv($1)): describe it with the portal's.
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

#[async_trait]
impl CancelHandler for Backend {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let secret = match request.secret_key {
            SecretKey::I32(s) => s,
            SecretKey::Bytes(b) if b.len() == 4 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            SecretKey::Bytes(_) => return,
        };
        let hit = self.engine.cancel(request.pid, secret);
        info!(pid = request.pid, matched = hit, "cancel request");
    }
}
