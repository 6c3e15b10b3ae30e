//! `COPY <table> FROM STDIN`: what the client sends is spooled to a file (memory
//! stays flat however much arrives), then DuckDB loads it with its own COPY.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::QueryError;
use pg_lake_common::sql::quote_literal as literal;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The table (and column list) and the options of a `COPY ... FROM STDIN`.
pub fn parse(sql: &str) -> Option<(&str, &str)> {
    let upper = sql.to_ascii_uppercase();
    if !upper.trim_start().starts_with("COPY ") {
        return None;
    }
    let at = upper.find(" FROM STDIN")?;
    let after = &sql[at + " FROM STDIN".len()..];
    if after.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let target = sql.trim_start()["COPY ".len()..].trim_start();
    let target = &target[..target.len() - (sql.len() - at)];
    Some((target.trim(), after.trim()))
}

/// A copy in progress: the spool file is removed when this is dropped.
pub struct CopyIn {
    path: PathBuf,
    file: std::fs::File,
    target: String,
    options: String,
}

impl CopyIn {
    pub fn start(dir: &Path, target: &str, options: &str) -> Result<CopyIn, QueryError> {
        let path = dir.join(format!(
            "copy-in-{}-{}.data",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&path).map_err(|e| {
            QueryError::new(
                "58030",
                format!("cannot spool COPY data to {}: {e}", path.display()),
            )
        })?;
        Ok(CopyIn {
            path,
            file,
            target: target.to_owned(),
            options: options.to_owned(),
        })
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), QueryError> {
        self.file.write_all(data).map_err(|e| {
            QueryError::new(
                "58030",
                format!("cannot spool COPY data to {}: {e}", self.path.display()),
            )
        })
    }

    /// The DuckDB statement that loads the spooled data.
    pub fn load_sql(&mut self) -> Result<String, QueryError> {
        self.file
            .flush()
            .map_err(|e| QueryError::new("58030", e.to_string()))?;
        let path = literal(&self.path.to_string_lossy());
        Ok(format!(
            "COPY {} FROM {path} {}",
            self.target,
            without_header_detection(&self.options)
        ))
    }
}

/// DuckDB guesses whether a CSV starts with a header; Postgres' COPY never does.
/// Unless the client says, the first line is data.
/// Other formats (Parquet, JSON) take no HEADER option.
fn without_header_detection(options: &str) -> String {
    let upper = options.to_ascii_uppercase();
    if upper.contains("HEADER") || !matches!(format_of(&upper).as_deref(), None | Some("CSV")) {
        return options.to_owned();
    }
    match options.trim_end().strip_suffix(')') {
        Some(open) => format!("{open}, HEADER false)"),
        None if options.trim().is_empty() => "(HEADER false)".to_owned(),
        None => options.to_owned(),
    }
}

/// The word after `FORMAT` in upper-cased options, without quotes.
fn format_of(upper: &str) -> Option<String> {
    let bytes = upper.as_bytes();
    let mut from = 0;
    while let Some(at) = upper[from..].find("FORMAT") {
        let at = from + at;
        from = at + "FORMAT".len();
        let before_ok =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let rest = &upper[from..];
        if !before_ok || rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let word: String = rest
            .trim_start()
            .trim_start_matches(['\'', '"'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !word.is_empty() {
            return Some(word);
        }
    }
    None
}

impl Drop for CopyIn {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn the_first_line_is_data_unless_the_client_asks_for_a_header() {
        use super::without_header_detection as h;
        assert_eq!(h("(FORMAT csv)"), "(FORMAT csv, HEADER false)");
        assert_eq!(h(""), "(HEADER false)");
        assert_eq!(h("(FORMAT csv, HEADER)"), "(FORMAT csv, HEADER)");
        assert_eq!(h("(FORMAT parquet)"), "(FORMAT parquet)");
        assert_eq!(h("(FORMAT 'json')"), "(FORMAT 'json')");
        assert_eq!(
            h("(DELIMITER '|', FORMAT CSV)"),
            "(DELIMITER '|', FORMAT CSV, HEADER false)"
        );
    }

    #[test]
    fn recognises_copy_from_stdin() {
        assert_eq!(
            parse("COPY t FROM STDIN (FORMAT csv)"),
            Some(("t", "(FORMAT csv)"))
        );
        assert_eq!(
            parse("copy s.t (a, b) from stdin"),
            Some(("s.t (a, b)", ""))
        );
        assert_eq!(parse("COPY t FROM STDINX"), None);
        assert_eq!(parse("COPY t FROM 'file.csv'"), None);
        assert_eq!(parse("SELECT 1"), None);
    }
}
