//! The operator's HTTP endpoints: `/metrics` (Prometheus text format) and
//! `/healthz` (liveness; also says whether this replica leads).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State as AxumState;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// What the endpoints report.
pub struct Health {
    pub registry: Registry,
    pub leading: AtomicBool,
}

async fn metrics(AxumState(health): AxumState<Arc<Health>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &health.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn healthz(AxumState(health): AxumState<Arc<Health>>) -> impl IntoResponse {
    let leading = health.leading.load(Ordering::Relaxed);
    ([(header::CONTENT_TYPE, "application/json")], format!("{{\"status\":\"ok\",\"leader\":{leading}}}"))
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz)).with_state(health)
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(addr: String, health: Arc<Health>, shutdown: CancellationToken) -> Result<()> {
    let serve_error = |source| Error::Serve { addr: addr.clone(), source };
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(serve_error)?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    axum::serve(listener, router(health))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(serve_error)
}
