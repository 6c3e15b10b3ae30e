//! Request ids, and the `ErrorModel` body of every error answer.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ServerErrorBody;

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
