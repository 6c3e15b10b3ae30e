//! Errors: start-up failures, and DuckDB errors translated into SQLSTATEs.

use pgwire::error::{ErrorInfo, PgWireError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("another pgduck_server (pid {pid}) is serving {socket}")]
    AlreadyRunning { pid: String, socket: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("DuckDB start-up failed: {0}")]
    Startup(String),
}

impl ServerError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ServerError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A query error as the client sees it: SQLSTATE plus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub code: &'static str,
    pub message: String,
}

impl QueryError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn canceled() -> Self {
        Self::new("57014", "canceling statement due to user request")
    }

    pub fn into_info(self) -> ErrorInfo {
        ErrorInfo::new("ERROR".to_owned(), self.code.to_owned(), self.message)
    }
}

impl From<QueryError> for PgWireError {
    fn from(e: QueryError) -> Self {
        PgWireError::UserError(Box::new(e.into_info()))
    }
}

impl From<duckdb::Error> for QueryError {
    fn from(e: duckdb::Error) -> Self {
        let message = match &e {
            duckdb::Error::DuckDBFailure(_, Some(msg)) => msg.clone(),
            other => other.to_string(),
        };
        QueryError {
            code: sqlstate_for(&message),
            message,
        }
    }
}

/// Maps DuckDB's error class prefix ("Catalog Error: ...") to the closest SQLSTATE.
pub fn sqlstate_for(message: &str) -> &'static str {
    let class = message.split(':').next().unwrap_or("").trim();
    let lower = message.to_ascii_lowercase();
    match class {
        "Parser Error" | "Syntax Error" => "42601",
        "Catalog Error" if lower.contains("already exists") => "42P07",
        "Catalog Error" if lower.contains("function") || lower.contains("macro") => "42883",
        "Catalog Error" if lower.contains("schema") => "3F000",
        "Catalog Error" => "42P01",
        "Binder Error" if lower.contains("column") || lower.contains("referenced") => "42703",
        "Binder Error" => "42804",
        // A value that does not fit the target type, as Postgres' numeric_value_out_of_range.
        "Conversion Error" if lower.contains("out of range") => "22003",
        "Conversion Error" => "22P02",
        "Out of Range Error" if lower.contains("division by zero") => "22012",
        "Out of Range Error" => "22003",
        "Constraint Error" if lower.contains("duplicate key") => "23505",
        "Constraint Error" if lower.contains("not null") => "23502",
        "Constraint Error" => "23000",
        "Invalid Input Error" if lower.contains(": pg_lake_write_file: ") => {
            if lower.contains("wildcard")
                || lower.contains("not the url")
                || lower.contains("not base64")
            {
                "22023"
            } else {
                "58030"
            }
        }
        "Invalid Input Error" if lower.contains(": pg_lake_delete_file: ") => {
            delete_file_sqlstate(&lower)
        }
        "Invalid Input Error" => "22023",
        "IO Error" | "HTTP Error" => "58030",
        "INTERRUPT Error" | "Interrupted" => "57014",
        "TransactionContext Error" | "Transaction Error" => "25P02",
        "Out of Memory Error" => "53200",
        "Not implemented Error" => "0A000",
        "Permission Error" => "42501",
        "Dependency Error" => "2BP01",
        "Invalid Configuration Error" => "22023",
        _ if lower.contains("interrupted") => "57014",
        _ => "XX000",
    }
}

/// `pg_lake_delete_file`'s failures (see `crate::etags::Lister::delete`): a missing file
/// is Postgres' undefined_file, a URL that names no one file is bad input, the rest
/// (storage refused or unreachable, no credentials) an I/O error.
fn delete_file_sqlstate(lower: &str) -> &'static str {
    if lower.ends_with("does not exist") {
        "58P01"
    } else if lower.contains("wildcard")
        || lower.contains("not the url of a file")
        || lower.contains("is a directory")
        || lower.contains("the url is null")
    {
        "22023"
    } else {
        "58030"
    }
}

#[cfg(test)]
mod tests {
    use super::sqlstate_for;

    #[test]
    fn duckdb_error_classes_map_to_sqlstates() {
        assert_eq!(
            sqlstate_for("Parser Error: syntax error at or near \"SELEC\""),
            "42601"
        );
        assert_eq!(
            sqlstate_for("Catalog Error: Table with name nope does not exist!"),
            "42P01"
        );
        assert_eq!(
            sqlstate_for("Catalog Error: Table with name t already exists!"),
            "42P07"
        );
        assert_eq!(
            sqlstate_for("Binder Error: Referenced column \"x\" not found"),
            "42703"
        );
        assert_eq!(
            sqlstate_for("Conversion Error: Could not convert string 'a' to INT32"),
            "22P02"
        );
        assert_eq!(sqlstate_for("INTERRUPT Error: Interrupted!"), "57014");
        assert_eq!(sqlstate_for("something odd"), "XX000");
        assert_eq!(
            sqlstate_for("Invalid Input Error: pg_lake_delete_file: file \"/x\" does not exist"),
            "58P01"
        );
        assert_eq!(
            sqlstate_for("Invalid Input Error: pg_lake_delete_file: cannot delete \"s3://b/*\": the URL has a wildcard (*, ? or [) and deletes only one file"),
            "22023"
        );
        assert_eq!(
            sqlstate_for("Invalid Input Error: pg_lake_delete_file: cannot delete \"az://b/k\": pgduck_server has no credentials for az:// URLs"),
            "58030"
        );
    }
}
