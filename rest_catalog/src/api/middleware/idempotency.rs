//! `Idempotency-Key` on mutations: reservation, replay, and the outcome record.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Principal;
use crate::api::{tables, AppState};
use crate::error::Error;
use crate::storage::{Reservation, StoredResponse};

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
pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
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
