//! The crate's one error type. Its kind tells a caller what to do without
//! reading the message: reload and retry, report a missing table, or refuse.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A requirement does not hold against the current metadata: another
    /// commit came first. The client may reload and try again.
    CommitConflict,
    /// The change needs a table that does not exist.
    TableNotFound,
    /// The change can never apply: an invalid update, schema or property.
    InvalidChange,
    /// Bytes that are not a metadata file.
    InvalidMetadata,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the same change may succeed against newer metadata.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::CommitConflict
    }
}

/// Errors raised by the iceberg crate while checking or applying a change: a
/// failed requirement is a conflict, anything else a change that cannot apply.
impl From<iceberg::Error> for Error {
    fn from(e: iceberg::Error) -> Self {
        let kind = match e.kind() {
            iceberg::ErrorKind::CatalogCommitConflicts => ErrorKind::CommitConflict,
            iceberg::ErrorKind::TableNotFound => ErrorKind::TableNotFound,
            _ => ErrorKind::InvalidChange,
        };
        Self::new(kind, e.to_string())
    }
}
