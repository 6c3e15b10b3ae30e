//! The extension's one error type, and how it becomes a Postgres ERROR.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `target` names hosts and ports only, never a password.
    #[error("could not connect to pgduck_server ({target}): {reason}")]
    Connect { target: String, reason: String },

    /// An error DuckDB (through pgduck_server) reported for a query; the session stays usable.
    #[error("{message}")]
    Engine {
        sqlstate: String,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },

    #[error("lost the connection to pgduck_server: {0}")]
    ConnectionLost(String),

    #[error("pgduck_server sent a malformed row: {0}")]
    Protocol(String),

    /// A broken invariant between Postgres and pgduck_server (a bug, not bad input).
    #[error("{0}")]
    Internal(String),

    /// Postgres has a cancel or terminate pending; the remote query was cancelled.
    #[error("canceling statement due to user request")]
    Interrupted,

    #[error("invalid option \"{option}\"")]
    UnknownOption { option: String, valid: &'static str },

    #[error("invalid value for option \"{option}\": \"{value}\"")]
    InvalidOptionValue {
        option: String,
        value: String,
        expected: String,
    },

    #[error("option \"{option}\" only applies to {applies_to}, not to format \"{format}\"")]
    OptionNotApplicable {
        option: String,
        format: String,
        applies_to: &'static str,
    },

    /// A COPY dialect Postgres' own COPY would refuse, in its words.
    #[error("{0}")]
    CopyOption(String),

    /// A function argument that cannot be used.
    #[error("{0}")]
    InvalidArgument(String),

    #[error("value {value} of column \"{column}\" cannot be written to the file: {why}")]
    NumericOutOfRange {
        column: String,
        value: String,
        why: String,
    },

    #[error("option \"filename\" needs a column named \"_filename\"")]
    MissingFilenameColumn,

    #[error("column \"{0}\" specified more than once")]
    DuplicateColumn(String),

    #[error("option \"{0}\" is required")]
    MissingOption(&'static str),

    #[error("unsupported URL scheme \"{scheme}\" in \"{url}\"")]
    UnsupportedScheme { url: String, scheme: String },

    #[error("query parameters are not permitted in cloud storage URLs: \"{0}\"")]
    QueryParameters(String),

    /// A local file the backend's own OS user could not open, as Postgres' COPY reports it.
    #[error("could not open file \"{path}\" for {action}: {reason}")]
    LocalFile {
        path: String,
        action: &'static str,
        reason: String,
        not_found: bool,
    },

    /// A NUL byte in a text value read from a file (Postgres text cannot hold one).
    #[error("invalid byte sequence for encoding \"UTF8\": 0x00")]
    NulInText { column: String },

    #[error("{what} is nested {depth} levels deep; pg_lake supports at most {max}")]
    TooDeep {
        what: String,
        depth: usize,
        max: usize,
    },

    #[error("a row of {bytes} bytes is larger than the {limit} bytes pg_lake passes to pgduck_server in one row")]
    RowTooLarge { bytes: usize, limit: usize },

    #[error("could not determine the file format of \"{0}\"")]
    UnknownFormat(String),

    #[error("permission denied to {action} \"{url}\"")]
    PermissionDenied {
        action: &'static str,
        url: String,
        hint: String,
    },

    #[error("{what} of \"{url}\" has DuckDB type {duckdb_type}, which pg_lake cannot map to a Postgres type")]
    UnsupportedDuckdbType {
        what: String,
        url: String,
        duckdb_type: String,
    },

    #[error("{0}")]
    ColumnMismatch(String),

    #[error("{0}")]
    FeatureNotSupported(String),
    /// The client ended COPY FROM STDIN with CopyFail (Postgres' own wording and 57014).
    #[error("COPY from stdin failed: {0}")]
    CopyFromStdinFailed(String),

    #[error("no file matches \"{0}\"")]
    FileNotFound(String),

    /// The shared Iceberg catalog tables do not exist (or are older than this build) and
    /// this transaction cannot create them.
    #[error("the Iceberg catalog schema \"{schema}\" is missing or out of date and cannot be created in a read-only transaction")]
    CatalogReadOnly { schema: &'static str },

    /// Another commit changed an Iceberg table in a way this transaction's changes
    /// cannot be applied on top of.
    #[error("could not serialize access to Iceberg table {table}: {reason}")]
    SerializationFailure { table: String, reason: String },

    /// An Iceberg table's metadata or manifests that cannot be read.
    #[error("Iceberg table {table}: {reason}")]
    IcebergMetadata { table: String, reason: String },

    /// A column value an Iceberg table cannot store.
    #[error("value {value} of column \"{column}\" is out of range for an Iceberg table: {why}")]
    IcebergOutOfRange {
        column: String,
        value: String,
        why: String,
    },

    #[error(transparent)]
    Spi(#[from] pgrx::spi::SpiError),
}

impl Error {
    fn code(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            Error::Connect { .. } => ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            Error::Engine { sqlstate, .. } => sqlstate_code(sqlstate),
            Error::ConnectionLost(_) => ERRCODE_CONNECTION_FAILURE,
            Error::Protocol(_) => ERRCODE_PROTOCOL_VIOLATION,
            Error::Interrupted => ERRCODE_QUERY_CANCELED,
            Error::UnknownOption { .. } => ERRCODE_FDW_INVALID_OPTION_NAME,
            Error::InvalidOptionValue { .. } => ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE,
            // As the original: a missing path and CSV options on another format are 42601.
            Error::OptionNotApplicable { .. } | Error::MissingOption(_) => ERRCODE_SYNTAX_ERROR,
            Error::CopyOption(_) | Error::InvalidArgument(_) => ERRCODE_INVALID_PARAMETER_VALUE,
            Error::DuplicateColumn(_) => ERRCODE_DUPLICATE_COLUMN,
            Error::MissingFilenameColumn => ERRCODE_INVALID_COLUMN_REFERENCE,
            Error::NumericOutOfRange { .. } => ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            Error::UnsupportedScheme { .. }
            | Error::UnknownFormat(_)
            | Error::QueryParameters(_) => ERRCODE_INVALID_PARAMETER_VALUE,
            Error::LocalFile {
                not_found: true, ..
            } => ERRCODE_UNDEFINED_FILE,
            Error::LocalFile { .. } => ERRCODE_INSUFFICIENT_PRIVILEGE,
            Error::NulInText { .. } => ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            Error::TooDeep { .. } | Error::RowTooLarge { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Error::PermissionDenied { .. } => ERRCODE_INSUFFICIENT_PRIVILEGE,
            Error::UnsupportedDuckdbType { .. } => ERRCODE_DATATYPE_MISMATCH,
            Error::ColumnMismatch(_) => ERRCODE_UNDEFINED_COLUMN,
            Error::FeatureNotSupported(_) => ERRCODE_FEATURE_NOT_SUPPORTED,
            Error::CopyFromStdinFailed(_) => ERRCODE_QUERY_CANCELED,
            Error::FileNotFound(_) => ERRCODE_UNDEFINED_FILE,
            Error::CatalogReadOnly { .. } => ERRCODE_READ_ONLY_SQL_TRANSACTION,
            Error::SerializationFailure { .. } => ERRCODE_T_R_SERIALIZATION_FAILURE,
            Error::IcebergMetadata { .. } => ERRCODE_DATA_CORRUPTED,
            Error::IcebergOutOfRange { .. } => ERRCODE_DATETIME_FIELD_OVERFLOW,
            Error::Spi(_) | Error::Internal(_) => ERRCODE_INTERNAL_ERROR,
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            Error::Engine { detail, .. } => detail.clone().filter(|d| !d.is_empty()),
            Error::NulInText { column } => Some(format!("In column \"{column}\".")),
            Error::MissingFilenameColumn => Some(
                "Declare \"_filename text\" among the columns, or leave the column list empty to infer it."
                    .into(),
            ),
            _ => None,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Error::Engine { hint, .. } => hint.clone().filter(|h| !h.is_empty()),
            Error::Connect { .. } => Some(
                "Check that pgduck_server is running and that pg_lake_engine.host points at its socket."
                    .into(),
            ),
            Error::UnknownOption { valid, .. } => Some(format!("Valid options are: {valid}.")),
            Error::InvalidOptionValue { expected, .. } => Some(format!("Expected {expected}.")),
            Error::UnsupportedScheme { .. } => {
                Some("Supported locations are s3://, gs:// and local paths.".into())
            }
            Error::UnknownFormat(_) => {
                Some("Set the format option to parquet, csv or json.".into())
            }
            Error::PermissionDenied { hint, .. } => Some(hint.clone()),
            Error::SerializationFailure { .. } => {
                Some("Retry the transaction: it will see the other commit.".into())
            }
            Error::CatalogReadOnly { .. } => Some(
                "Run the statement once in a read-write transaction on the primary, or start the REST catalog, which creates it."
                    .into(),
            ),
            _ => None,
        }
    }

    /// Raises this error as a Postgres ERROR. An interrupt is raised by Postgres itself,
    /// so the user sees the usual cancel / timeout message.
    pub fn report(self) -> ! {
        if matches!(self, Error::Interrupted) {
            pgrx::check_for_interrupts!();
        }
        let mut report = ErrorReport::new(self.code(), self.to_string(), "pg_lake");
        if let Some(detail) = self.detail() {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ereport(ERROR) returned")
    }
}

/// Unwraps a result, raising the error as a Postgres ERROR.
pub trait OrReport<T> {
    fn or_report(self) -> T;
}

impl<T> OrReport<T> for Result<T> {
    fn or_report(self) -> T {
        self.unwrap_or_else(|e| e.report())
    }
}

/// Packs a five-character SQLSTATE the way Postgres' MAKE_SQLSTATE does.
fn sqlstate_code(sqlstate: &str) -> PgSqlErrorCode {
    let bytes = sqlstate.as_bytes();
    if bytes.len() != 5 {
        return PgSqlErrorCode::ERRCODE_INTERNAL_ERROR;
    }
    let packed = bytes.iter().enumerate().fold(0i32, |acc, (i, b)| {
        acc | ((((*b as i32) - ('0' as i32)) & 0x3F) << (6 * i))
    });
    let code = PgSqlErrorCode::from(packed);
    // pgrx maps codes it does not know to "internal error"; keep the class honest instead.
    if code as isize as i32 == packed {
        code
    } else {
        PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION
    }
}

/// True when Postgres will raise an error at its next CHECK_FOR_INTERRUPTS.
pub fn interrupt_pending() -> bool {
    // SAFETY: plain reads of sig_atomic_t flags that signal handlers set on this thread.
    unsafe {
        std::ptr::read_volatile(&raw const pg_sys::QueryCancelPending) != 0
            || std::ptr::read_volatile(&raw const pg_sys::ProcDiePending) != 0
    }
}
