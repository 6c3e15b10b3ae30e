//! The crate's one error type, and how each variant maps onto the Iceberg REST
//! `ErrorModel` (HTTP status + exception name the clients expect).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotAuthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Well-formed, but not a request this server can take (an Idempotency-Key
    /// reused for another request).
    #[error("{0}")]
    UnprocessableRequest(String),
    #[error("namespace does not exist: {0}")]
    NoSuchNamespace(String),
    #[error("table does not exist: {0}")]
    NoSuchTable(String),
    #[error("view does not exist: {0}")]
    NoSuchView(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("namespace is not empty: {0}")]
    NamespaceNotEmpty(String),
    /// A requirement did not hold or another writer won the race: the client may retry.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// Another commit changed the entity between our read and our swap.
    #[error("commit failed: {0}")]
    ConcurrentUpdate(String),
    /// Another request with the same Idempotency-Key is still running. The
    /// text is shown to the client: never a lower layer's error text.
    #[error("{0}")]
    RequestInProgress(String),
    /// The commit may or may not have been applied: never reported as a conflict.
    /// The text is shown to the client: never a lower layer's error text.
    #[error("commit state unknown: {0}")]
    CommitStateUnknown(String),
    #[error("the catalog database is unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("database error: {}", with_causes(.0))]
    Database(tokio_postgres::Error),
    #[error("object storage error: {}", with_causes(.0))]
    Storage(#[from] object_store::Error),
    #[error("invalid Iceberg metadata: {0}")]
    Metadata(String),
    #[error("configuration error: {0}")]
    Config(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// An error's message followed by those of its causes ("error connecting to
/// server: Connection refused").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = c.source();
    }
    message
}

impl Error {
    /// HTTP status and Iceberg exception name.
    pub fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequestException"),
            Error::NotAuthorized(_) => (StatusCode::UNAUTHORIZED, "NotAuthorizedException"),
            Error::UnprocessableRequest(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "UnprocessableEntityException",
            ),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "NotFoundException"),
            Error::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                exception_for(StatusCode::PAYLOAD_TOO_LARGE),
            ),
            Error::NoSuchNamespace(_) => (StatusCode::NOT_FOUND, "NoSuchNamespaceException"),
            Error::NoSuchTable(_) => (StatusCode::NOT_FOUND, "NoSuchTableException"),
            Error::NoSuchView(_) => (StatusCode::NOT_FOUND, "NoSuchViewException"),
            Error::AlreadyExists(_) => (StatusCode::CONFLICT, "AlreadyExistsException"),
            Error::NamespaceNotEmpty(_) => (StatusCode::CONFLICT, "NamespaceNotEmptyException"),
            Error::CommitFailed(_) | Error::ConcurrentUpdate(_) => {
                (StatusCode::CONFLICT, "CommitFailedException")
            }
            // Never 409: clients read 409 as "your change was refused" and may clean up
            // files the first request is still committing. 503 with Retry-After says
            // "ask again"; commit routes answer CommitStateUnknown instead (see api::idempotency).
            Error::RequestInProgress(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
            ),
            // 500, not 503: PyIceberg raises CommitStateUnknownException for
            // 500, 502 and 504 only (503 would be ServiceUnavailableError);
            // Java's REST client maps 500 to it as well.
            Error::CommitStateUnknown(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "CommitStateUnknownException",
            ),
            Error::DatabaseUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
            ),
            Error::Database(_)
            | Error::Storage(_)
            | Error::Metadata(_)
            | Error::Config(_)
            | Error::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
        }
    }

    /// Short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        self.status_and_type().1
    }

    /// What the client is told. A server error's own text (database, storage,
    /// file system messages) goes to the log only: its body says what kind of
    /// failure it was, and the request id finds the log line.
    pub fn public_message(&self) -> String {
        match self {
            Error::RequestInProgress(_) | Error::CommitStateUnknown(_) => self.to_string(),
            Error::DatabaseUnavailable(_) => {
                "the catalog database is unavailable; retry later".into()
            }
            Error::Database(_) => "internal error: the catalog database failed the request".into(),
            Error::Storage(_) => "internal error: the warehouse storage failed the request".into(),
            Error::Metadata(_) => {
                "internal error: a metadata file of the catalog could not be read or written".into()
            }
            Error::Config(_) | Error::Io(_) => "internal error".into(),
            _ => self.to_string(),
        }
    }
}

impl From<pg_lake_iceberg::Error> for Error {
    fn from(e: pg_lake_iceberg::Error) -> Self {
        use pg_lake_iceberg::ErrorKind;
        let message = e.to_string();
        match e.kind() {
            ErrorKind::CommitConflict => Error::CommitFailed(message),
            ErrorKind::TableNotFound => Error::NoSuchTable(message),
            ErrorKind::InvalidChange => Error::BadRequest(message),
            ErrorKind::InvalidMetadata => Error::Metadata(message),
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    /// A value the database refuses for its content (a NUL byte, an index entry
    /// too large) came from the request: 400, not a server error. The inputs are
    /// checked before they reach the database; this is the net under those checks.
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        match e.code() {
            Some(code)
                if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                    || *code == SqlState::PROGRAM_LIMIT_EXCEEDED =>
            {
                tracing::warn!(error = %with_causes(&e), "the catalog database refused a value of the request");
                Error::BadRequest(
                    "the request holds a value the catalog database cannot store \
                     (a NUL byte, or a name or property too long)"
                        .into(),
                )
            }
            _ => Error::Database(e),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Error::from(e),
            other => Error::DatabaseUnavailable(other.to_string()),
        }
    }
}

/// The exception name of an error response the catalog's own code did not
/// produce (a rejection by axum or a middleware).
pub fn exception_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequestException",
        401 => "NotAuthorizedException",
        403 => "ForbiddenException",
        404 => "NotFoundException",
        405 => "MethodNotAllowedException",
        406 => "UnsupportedOperationException",
        409 => "ConflictException",
        413 => "PayloadTooLargeException",
        415 => "UnsupportedMediaTypeException",
        503 => "ServiceUnavailableException",
        s if s >= 500 => "InternalServerError",
        _ => "BadRequestException",
    }
}

/// The body of every error response (`ErrorModel` wrapped in `IcebergErrorResponse`).
pub fn error_body(status: StatusCode, kind: &str, message: &str) -> serde_json::Value {
    json!({ "error": { "message": message, "type": kind, "code": status.as_u16(), "stack": [] } })
}

/// Marks a server error answered by [`Error`]: the request-id layer adds the
/// request's id to its body (see `api::middleware::errors`).
#[derive(Debug, Clone)]
pub struct ServerErrorBody {
    pub kind: &'static str,
    pub message: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_type();
        let message = self.public_message();
        if status.is_server_error() {
            // Inside the request's span, so the line carries its request id.
            tracing::error!(error = %self, kind, "request failed");
        }
        let mut response = (status, axum::Json(error_body(status, kind, &message))).into_response();
        if status.is_server_error() {
            response
                .extensions_mut()
                .insert(ServerErrorBody { kind, message });
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if matches!(self, Error::RequestInProgress(_)) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_commit_outcome_is_a_status_pyiceberg_maps_to_commit_state_unknown() {
        // PyIceberg: 500, 502, 504 -> CommitStateUnknownException; 503 is not among them.
        let (status, kind) = Error::CommitStateUnknown("lost".into()).status_and_type();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(kind, "CommitStateUnknownException");
    }

    #[tokio::test]
    async fn server_error_bodies_never_carry_the_underlying_error_text() {
        let io = std::io::Error::other("open /var/lib/secret/wh/x: File name too long");
        for e in [
            Error::Io(io),
            Error::Metadata("/var/lib/secret/wh/t/metadata/0.json: expected value".into()),
            Error::Config("S3 warehouse: bad endpoint".into()),
            Error::DatabaseUnavailable("error connecting to server db.internal:5432".into()),
        ] {
            let response = e.into_response();
            assert!(response.status().is_server_error());
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&body);
            for internal in ["/var/lib", "bad endpoint", "db.internal", "too long"] {
                assert!(!text.contains(internal), "{text}");
            }
        }
    }

    #[test]
    fn unauthorized_answers_carry_a_bearer_challenge() {
        let response = Error::RequestInProgress("still running".into()).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");

        let response = Error::NotAuthorized("missing bearer token".into()).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[axum::http::header::WWW_AUTHENTICATE],
            "Bearer"
        );
    }
}
