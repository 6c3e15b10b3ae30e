//! The HTTP layer: the Iceberg REST routes (thin handlers that call
//! [`Catalog`]), body parsing into `ErrorModel` errors, and the middleware for
//! authentication, idempotency keys and metrics.

mod namespaces;
mod service;
mod tables;
mod views;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::auth::Auth;
use crate::catalog::Catalog;
use crate::error::{Error, Result, ServerErrorBody};
use crate::metrics::Metrics;
use crate::model::Namespace;
use crate::storage::{Page, Reservation, StoredResponse};

/// Separator of namespace levels in a path segment or the `parent` parameter.
const NAMESPACE_PATH_SEPARATOR: char = '\u{1f}';

#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    /// The `{prefix}` path segment, if the catalog is configured with one.
    pub prefix: Option<String>,
    /// Bounds requests to the OAuth token endpoint.
    pub token_limiter: Arc<crate::rate_limit::RateLimiter>,
    pub idempotency_lifetime: Duration,
}

/// Every catalog endpoint, as advertised in `GET /v1/config`.
pub const ENDPOINTS: &[&str] = &[
    "GET /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "DELETE /v1/{prefix}/namespaces/{namespace}",
    "POST /v1/{prefix}/namespaces/{namespace}/properties",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "POST /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}/credentials",
    "POST /v1/{prefix}/namespaces/{namespace}/register",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
    "POST /v1/{prefix}/tables/rename",
    "POST /v1/{prefix}/transactions/commit",
    "GET /v1/{prefix}/namespaces/{namespace}/views",
    "POST /v1/{prefix}/namespaces/{namespace}/views",
    "GET /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "POST /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "POST /v1/{prefix}/views/rename",
];

/// The whole application: catalog routes behind auth and idempotency, and the
/// unauthenticated operational routes.
pub fn router(state: AppState) -> Router {
    let base = match &state.prefix {
        Some(p) => format!("/v1/{p}"),
        None => "/v1".to_string(),
    };
    let ns = format!("{base}/namespaces/{{namespace}}");
    let catalog = Router::new()
        .route("/v1/config", get(service::config))
        .route(
            &format!("{base}/namespaces"),
            get(namespaces::list).post(namespaces::create),
        )
        .route(
            &ns,
            get(namespaces::load)
                .head(namespaces::exists)
                .delete(namespaces::drop),
        )
        .route(
            &format!("{ns}/properties"),
            post(namespaces::update_properties),
        )
        .route(
            &format!("{ns}/tables"),
            get(tables::list).post(tables::create),
        )
        .route(&format!("{ns}/register"), post(tables::register))
        .route(
            &format!("{ns}/tables/{{table}}"),
            get(tables::load)
                .head(tables::exists)
                .post(tables::commit)
                .delete(tables::drop),
        )
        .route(
            &format!("{ns}/tables/{{table}}/metrics"),
            post(tables::report_metrics),
        )
        .route(
            &format!("{ns}/tables/{{table}}/credentials"),
            get(tables::credentials),
        )
        .route(&format!("{base}/tables/rename"), post(tables::rename))
        .route(
            &format!("{base}/transactions/commit"),
            post(tables::commit_transaction),
        )
        .route(&format!("{ns}/views"), get(views::list).post(views::create))
        .route(
            &format!("{ns}/views/{{view}}"),
            get(views::load)
                .head(views::exists)
                .post(views::replace)
                .delete(views::drop),
        )
        .route(&format!("{base}/views/rename"), post(views::rename))
        .route_layer(middleware::from_fn_with_state(state.clone(), idempotency))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let operations = Router::new()
        .route("/v1/oauth/tokens", post(service::oauth_token))
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(service::metrics))
        .route("/openapi.yaml", get(service::openapi));
    catalog
        .merge(operations)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .fallback(not_found)
        .with_state(state)
}

/// The id of a request: the client's `X-Request-Id` when it is a plain token
/// (1 to 128 of `A-Za-z0-9._-`), else a new UUID. Every log line of the request
/// carries it, the response returns it, and a 5xx body names it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const REQUEST_ID_HEADER: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 128;

/// Gives every request its [`RequestId`] and runs it inside a span holding it.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID_LEN
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Turns every error response that is not JSON yet (rejections by axum and
/// tower-http: 405, 413, 415, path and query errors) into the spec's
/// `ErrorModel`, keeping its status and headers (`Allow` of a 405). A server
/// error's body never holds the underlying error text (that is logged): it
/// says what kind of failure it was and names the request id.
pub async fn error_model(request: Request, next: Next) -> Response {
    let head = request.method() == Method::HEAD;
    let request_id = request.extensions().get::<RequestId>().cloned();
    let response = next.run(request).await;
    let status = response.status();
    if head || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let with_id = |message: &str| match &request_id {
        Some(RequestId(id)) => format!("{message} (request id {id})"),
        None => message.to_string(),
    };
    if let Some(ServerErrorBody { kind, message }) = response.extensions().get().cloned() {
        let body = crate::error::error_body(status, kind, &with_id(&message));
        return replace_body(response, body);
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if status.is_server_error() {
        tracing::error!(status = status.as_u16(), error = %text, "request failed");
        with_id("internal error")
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let body = crate::error::error_body(status, crate::error::exception_for(status), &message);
    replace_body(Response::from_parts(parts, Body::empty()), body)
}

/// The response with `body` as its JSON body, keeping status and headers.
fn replace_body(response: Response, body: serde_json::Value) -> Response {
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body.to_string()))
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Error {
    Error::NotFound(format!("no route for {method} {}", uri.path()))
}

/// A JSON request body whose parse errors become `400 BadRequestException`
/// (an unknown update or requirement type among them).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge(format!("the request body is too large: {e}"))
            } else {
                Error::BadRequest(format!("could not read the request body: {e}"))
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| Error::BadRequest(format!("malformed request body: {e}")))
    }
}

/// Query parameters whose parse errors become `400 BadRequestException`.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self> {
        axum::extract::Query::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| QueryParams(q))
            .map_err(|e| Error::BadRequest(e.body_text()))
    }
}

/// A namespace from a path segment or query parameter (levels joined by 0x1F).
pub fn parse_namespace(raw: &str) -> Namespace {
    raw.split(NAMESPACE_PATH_SEPARATOR)
        .map(str::to_string)
        .collect()
}

/// A table or view named by its path segments.
pub fn ident(namespace: &str, name: String) -> crate::model::TableIdentifier {
    crate::model::TableIdentifier {
        namespace: parse_namespace(namespace),
        name,
    }
}

/// One page of the tables or views of a namespace.
pub async fn list_entities(
    state: &AppState,
    namespace: &str,
    query: crate::model::ListQuery,
    kind: crate::storage::EntityKind,
) -> Result<axum::Json<crate::model::ListTablesResponse>> {
    let page = page(query.page_token, query.page_size)?;
    let identifiers = state
        .catalog
        .list(parse_namespace(namespace), kind, page.clone())
        .await?;
    let next_page_token = next_page_token(
        &page,
        identifiers.len(),
        identifiers.last().map(|i| i.name.clone()),
    );
    Ok(axum::Json(crate::model::ListTablesResponse {
        identifiers,
        next_page_token,
    }))
}

/// The page a list request asks for; `pageSize` alone starts at the beginning.
pub fn page(token: Option<String>, size: Option<u32>) -> Result<Page> {
    if size == Some(0) {
        return Err(Error::BadRequest(
            "pageSize must be at least 1 (leave it out for every entry)".into(),
        ));
    }
    if let Some(token) = &token {
        crate::model::check_text("pageToken", token)?;
    }
    Ok(Page {
        after: token.filter(|t| !t.is_empty()),
        limit: size,
    })
}

/// The token of the page after `returned` items, if the page was full.
pub fn next_page_token(page: &Page, returned: usize, last: Option<String>) -> Option<String> {
    page.limit.filter(|l| returned >= *l as usize).and(last)
}

/// The authenticated caller of a request (set by [`authenticate`]).
#[derive(Debug, Clone)]
pub struct Principal(pub String);

async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.auth.authenticate(header) {
        Ok(principal) => {
            request.extensions_mut().insert(Principal(principal));
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// Longest accepted Idempotency-Key (clients send UUIDs).
const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// How long a request waits for another one with the same Idempotency-Key
/// that is still running before it is answered 409.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(10);

/// A reservation never completed for this long is taken to belong to a
/// process that is gone; a request with its key runs again.
const IN_FLIGHT_LEASE: Duration = Duration::from_secs(300);

/// Whether a request commits table or view metadata: a table or view update, or
/// a multi-table transaction.
fn is_commit(request: &Request) -> bool {
    request.method() == Method::POST
        && request.extensions().get::<MatchedPath>().is_some_and(|p| {
            let p = p.as_str();
            p.ends_with("/tables/{table}")
                || p.ends_with("/views/{view}")
                || p.ends_with("/transactions/commit")
        })
}

/// Honours `Idempotency-Key` on mutations: the key (bound to the caller and
/// the route) is reserved before the request runs; a retry gets the recorded
/// response (2xx and 4xx outcomes; a 5xx frees the key so a retry runs again);
/// a duplicate arriving while the first is running waits for its outcome, up
/// to [`IN_FLIGHT_WAIT`], then gets a 5xx, never 409: a commit's outcome is not
/// known yet (500 CommitStateUnknownException, so no client cleans up files the
/// first attempt may still commit), anything else is 503 with `Retry-After`.
async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(raw) = request
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return next.run(request).await;
    };
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    if raw.is_empty() || raw.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Error::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"
        ))
        .into_response();
    }
    let principal = request
        .extensions()
        .get::<Principal>()
        .map_or("", |p| p.0.as_str());
    let key = format!(
        "{principal}\u{1f}{} {}\u{1f}{raw}",
        request.method(),
        request.uri().path()
    );
    let vend_on_replay = request.method() == Method::POST
        && request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|p| p.as_str().ends_with("/namespaces/{namespace}/tables"))
        && tables::wants_vended_credentials(request.headers());
    // The body is fingerprinted so that a key reused for another request is
    // refused rather than answered with that other request's outcome.
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return Error::PayloadTooLarge(format!("the request body is too large: {e}"))
                .into_response()
        }
    };
    let request_sha256 = hex_sha256(&body);
    let request = Request::from_parts(parts, Body::from(body));
    let waited_until = Instant::now() + IN_FLIGHT_WAIT;
    loop {
        let reservation = state
            .catalog
            .store()
            .reserve_idempotency_key(
                &key,
                &request_sha256,
                state.idempotency_lifetime.as_secs(),
                IN_FLIGHT_LEASE.as_secs(),
            )
            .await;
        match reservation {
            Ok(Reservation::Reserved) => break,
            Ok(Reservation::OtherRequest) => {
                return Error::UnprocessableRequest(
                    "this Idempotency-Key was already used for a request with another body; \
                     use a new key for a new request"
                        .into(),
                )
                .into_response()
            }
            Ok(Reservation::Done(stored)) => return replay(&state, stored, vend_on_replay),
            Ok(Reservation::InFlight) if Instant::now() < waited_until => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Reservation::InFlight) => {
                let message = "a request with this Idempotency-Key is still being processed; \
                               retry later with the same key to get its outcome";
                return if is_commit(&request) {
                    Error::CommitStateUnknown(message.into()).into_response()
                } else {
                    Error::RequestInProgress(message.into()).into_response()
                };
            }
            Err(e) => return e.into_response(),
        }
    }
    // Runs to the end even if the client goes away, so that its retry finds
    // the outcome instead of a reservation nobody completes.
    let task_state = state.clone();
    let task_key = key.clone();
    let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
        let response = next.run(request).await;
        record_outcome(&task_state, &task_key, response).await
    }));
    match task.await {
        Ok(response) => response,
        Err(e) => {
            if let Err(release) = state.catalog.store().release_idempotency_key(&key).await {
                tracing::warn!(error = %release, "could not release an Idempotency-Key");
            }
            Error::Io(std::io::Error::other(format!("request task failed: {e}"))).into_response()
        }
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Records a reserved request's outcome under its key (without vended
/// credentials), or frees the key after a server error.
async fn record_outcome(state: &AppState, key: &str, response: Response) -> Response {
    let store = state.catalog.store();
    if response.status().is_server_error() {
        if let Err(e) = store.release_idempotency_key(key).await {
            tracing::warn!(error = %e, "could not release an Idempotency-Key");
        }
        return response;
    }
    let carries_credentials = response
        .extensions()
        .get::<tables::CarriesVendedCredentials>()
        .is_some();
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            let _ = store.release_idempotency_key(key).await;
            return Error::Io(std::io::Error::other(format!(
                "could not buffer the response: {e}"
            )))
            .into_response();
        }
    };
    let stored_body = if carries_credentials {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(mut value) => {
                tables::strip_vended_credentials(state, &mut value);
                value.to_string()
            }
            Err(_) => String::new(),
        }
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        body: stored_body,
    };
    if let Err(e) = store.complete_idempotency_key(key, &stored).await {
        tracing::warn!(error = %e, "could not record the outcome of an idempotent request");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(state: &AppState, stored: StoredResponse, vend: bool) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    if stored.body.is_empty() {
        return status.into_response();
    }
    let body = match (
        vend && status == StatusCode::OK,
        state.catalog.vended_credentials(),
    ) {
        (true, Some(_)) => match serde_json::from_str::<serde_json::Value>(&stored.body) {
            Ok(mut value) => {
                tables::add_vended_credentials(state, &mut value);
                value.to_string()
            }
            Err(_) => stored.body,
        },
        _ => stored.body,
    };
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    state.metrics.request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_endpoint_is_in_the_openapi_document() {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../../openapi.yaml")).unwrap();
        for endpoint in ENDPOINTS {
            let (method, path) = endpoint.split_once(' ').unwrap();
            let operation = &doc["paths"][path][method.to_lowercase().as_str()];
            assert!(operation.is_mapping(), "{endpoint} is not documented");
        }
    }

    #[test]
    fn namespaces_split_on_the_unit_separator() {
        assert_eq!(parse_namespace("a\u{1f}b"), vec!["a", "b"]);
        assert_eq!(parse_namespace("a"), vec!["a"]);
    }

    #[test]
    fn a_full_page_has_a_next_token() {
        let p = page(Some(String::new()), Some(2)).unwrap();
        assert_eq!(p.after, None);
        assert_eq!(next_page_token(&p, 2, Some("b".into())), Some("b".into()));
        assert_eq!(next_page_token(&p, 1, Some("a".into())), None);
        assert_eq!(
            next_page_token(&page(None, None).unwrap(), 5, Some("e".into())),
            None
        );
        assert!(matches!(page(None, Some(0)), Err(Error::BadRequest(_))));
        assert!(matches!(
            page(Some("a\0".into()), None),
            Err(Error::BadRequest(_))
        ));
    }
}
