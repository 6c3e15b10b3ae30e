//! Layers around the routes, outermost first: [`errors`] (a request id for
//! every request, and the `ErrorModel` body of every error answer), then for
//! the catalog routes [`auth`] (the bearer token) and [`idempotency`]
//! (`Idempotency-Key`), and [`metrics`] around every matched route.

mod auth;
mod errors;
mod idempotency;
mod metrics;

pub use auth::{authenticate, Principal};
pub use errors::{error_model, request_id, RequestId};
pub use idempotency::idempotency;
pub use metrics::record_metrics;
