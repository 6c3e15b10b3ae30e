//! The HTTP layer: the Iceberg REST routes (thin handlers that call
//! [`Catalog`], one file per API area) and body parsing into `ErrorModel`
//! errors; the [`middleware`] (request ids and error bodies, authentication,
//! idempotency keys, metrics) is in its own folder.

pub mod middleware;
mod namespaces;
mod service;
pub(crate) mod tables;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::auth::Auth;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::Namespace;
use crate::storage::Page;

/// Separator of namespace levels in a path segment or the `parent` parameter.
const NAMESPACE_PATH_SEPARATOR: char = '\u{1f}';

pub use middleware::{error_model, request_id, Principal, RequestId};

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
        .route_layer(from_fn_with_state(state.clone(), middleware::idempotency))
        .route_layer(from_fn_with_state(state.clone(), middleware::authenticate));
    let operations = Router::new()
        .route("/v1/oauth/tokens", post(service::oauth_token))
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(service::metrics))
        .route("/openapi.yaml", get(service::openapi));
    catalog
        .merge(operations)
        .route_layer(from_fn_with_state(
            state.clone(),
            middleware::record_metrics,
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
