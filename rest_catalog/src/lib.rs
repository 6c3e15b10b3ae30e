//! Iceberg REST catalog whose state lives in the cluster's Postgres, in the
//! catalog tables the pg_lake extension also writes.
//!
//! Layers: [`api`] (axum routes, thin, and their middleware) → [`catalog`]
//! (service logic, one file per entity; what a commit does to metadata is
//! decided by `pg_lake_iceberg`, the Iceberg core shared with the extension) →
//! [`storage`] (a trait, implemented for Postgres) and [`warehouse`] (object
//! storage for metadata files).

pub mod api;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod error;
pub mod metrics;
pub mod model;
pub mod rate_limit;
pub mod storage;
pub mod warehouse;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

pub use config::Args;
pub use error::{Error, Result};

/// Connects to the catalog database (applying migrations), then serves on
/// `listener` until `shutdown` completes, finishing in-flight requests.
pub async fn serve(
    args: Args,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let auth = Arc::new(args.auth()?);
    let warehouse = warehouse::Warehouse::new(&args.storage()?)?;
    let store = storage::postgres::PostgresStore::connect(
        &args.database_url,
        &args.catalog_name,
        args.max_db_connections,
        Duration::from_secs(args.database_wait_secs),
    )
    .await?;
    let metrics = Arc::new(metrics::Metrics::default());
    let catalog = Arc::new(catalog::Catalog::new(
        Arc::new(store),
        warehouse,
        metrics.clone(),
        args.commit_retries,
    ));
    let state = api::AppState {
        catalog,
        auth,
        metrics,
        prefix: args.prefix.clone(),
        token_limiter: Arc::new(rate_limit::RateLimiter::new(
            rate_limit::TOKEN_REQUESTS_PER_CLIENT,
            rate_limit::TOKEN_REQUESTS_IN_ALL,
        )),
        idempotency_lifetime: Duration::from_secs(args.idempotency_lifetime_secs),
    };
    let app = api::router(state)
        .layer(DefaultBodyLimit::max(args.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(args.max_body_bytes))
        .layer(axum::middleware::from_fn(api::error_model))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(api::request_id));
    tracing::info!(
        listen = %listener.local_addr()?,
        warehouse = %args.warehouse,
        catalog = %args.catalog_name,
        auth = ?args.auth,
        "serving the Iceberg REST catalog"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
