//! Routes about the service itself: `/v1/config`, the OAuth2 token endpoint,
//! health, readiness, metrics and the OpenAPI document.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::{AppState, QueryParams, ENDPOINTS};
use crate::auth::TokenError;
use crate::model::CatalogConfig;

/// The OpenAPI document of what this server serves.
const OPENAPI: &str = include_str!("../../openapi.yaml");

pub async fn config(
    State(s): State<AppState>,
    QueryParams(_q): QueryParams<HashMap<String, String>>,
) -> Json<CatalogConfig> {
    let mut defaults = s.catalog.client_config().clone();
    defaults.insert("warehouse".into(), s.catalog.warehouse_root().to_string());
    let mut overrides = HashMap::new();
    if let Some(prefix) = &s.prefix {
        overrides.insert("prefix".into(), prefix.clone());
    }
    Json(CatalogConfig {
        defaults,
        overrides,
        endpoints: ENDPOINTS.iter().map(|e| e.to_string()).collect(),
        idempotency_key_lifetime: format!("PT{}S", s.idempotency_lifetime.as_secs()),
    })
}

#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Client id and secret from an HTTP Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let decoded = STANDARD.decode(value.strip_prefix("Basic ")?).ok()?;
    let (id, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// OAuth2 client-credentials grant (`application/x-www-form-urlencoded`).
pub async fn oauth_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<TokenRequest>, axum::extract::rejection::FormRejection>,
) -> Response {
    let req = match form {
        Ok(Form(req)) => req,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "invalid_request", "error_description": e.body_text() })),
            )
                .into_response()
        }
    };
    let basic = basic_credentials(&headers);
    let client_id = req
        .client_id
        .or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let client_secret = req.client_secret.or_else(|| basic.map(|b| b.1));
    if let Err(wait) = s
        .token_limiter
        .check(client_id.as_deref().unwrap_or_default(), Instant::now())
    {
        let retry_after = wait.as_secs_f64().ceil().max(1.0).to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after)],
            Json(json!({
                "error": "temporarily_unavailable",
                "error_description": "too many token requests; retry after the time in Retry-After"
            })),
        )
            .into_response();
    }
    match s.auth.issue(
        req.grant_type.as_deref(),
        client_id.as_deref(),
        client_secret.as_deref(),
    ) {
        Ok(token) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-store")],
            Json(token),
        )
            .into_response(),
        Err(e) => {
            let (status, error, description) = match e {
                TokenError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
                TokenError::UnsupportedGrantType => (
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "only client_credentials is supported",
                ),
                TokenError::InvalidClient => (
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "unknown client or wrong secret",
                ),
            };
            (
                status,
                Json(json!({ "error": error, "error_description": description })),
            )
                .into_response()
        }
    }
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(s): State<AppState>) -> Response {
    match s.catalog.store().check_ready().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, e.public_message()).into_response()
        }
    }
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI)
}
