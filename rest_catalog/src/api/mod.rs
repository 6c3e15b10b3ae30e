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
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::Namespace;
use crate::storage::{Page, StoredResponse};

/// Separator of namespace levels in a path segment or the `parent` parameter.
const NAMESPACE_PATH_SEPARATOR: char = '\u{1f}';

#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    /// The `{prefix}` path segment, if the catalog is configured with one.
    pub prefix: Option<String>,
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

async fn not_found(method: Method, uri: axum::http::Uri) -> Error {
    Error::NotFound(format!("no route for {method} {}", uri.path()))
}

/// A JSON request body whose parse errors become `400 BadRequestException`
/// (an unknown update or requirement type among them).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| Error::BadRequest(format!("could not read the request body: {e}")))?;
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
    let page = page(query.page_token, query.page_size);
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
pub fn page(token: Option<String>, size: Option<u32>) -> Page {
    Page {
        after: token.filter(|t| !t.is_empty()),
        limit: size.filter(|s| *s > 0),
    }
}

/// The token of the page after `returned` items, if the page was full.
pub fn next_page_token(page: &Page, returned: usize, last: Option<String>) -> Option<String> {
    page.limit.filter(|l| returned >= *l as usize).and(last)
}

async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.auth.authenticate(header) {
        Ok(_) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Replays the stored response of a mutation retried with the same
/// `Idempotency-Key`, and stores successful ones.
async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = request
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
    else {
        return next.run(request).await;
    };
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let key = format!("{} {} {key}", request.method(), request.uri().path());
    let store = state.catalog.store();
    match store.stored_response(&key).await {
        Ok(Some(stored)) => return replay(stored),
        Ok(None) => {}
        Err(e) => return e.into_response(),
    }
    let response = next.run(request).await;
    if !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return Error::BadRequest(format!("could not buffer the response: {e}")).into_response()
        }
    };
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    if let Err(e) = store
        .store_response(&key, &stored, state.idempotency_lifetime.as_secs())
        .await
    {
        tracing::warn!(error = %e, "could not store the response of an idempotent request");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    if stored.body.is_empty() {
        return status.into_response();
    }
    let mut response = (status, stored.body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
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
        let p = page(Some(String::new()), Some(2));
        assert_eq!(p.after, None);
        assert_eq!(next_page_token(&p, 2, Some("b".into())), Some("b".into()));
        assert_eq!(next_page_token(&p, 1, Some("a".into())), None);
        assert_eq!(
            next_page_token(&page(None, None), 5, Some("e".into())),
            None
        );
    }
}
