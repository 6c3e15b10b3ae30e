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

/// Whether `target` is the reserved upload target: the data is kept as a file.
pub fn is_upload(target: &str) -> bool {
    target.eq_ignore_ascii_case(pg_lake_common::contract::protocol::UPLOAD_TARGET)
}

/// A copy in progress: the spool file is removed when this is dropped, unless it was
/// an upload that completed (its reader deletes it).
pub struct CopyIn {
    path: PathBuf,
    file: std::fs::File,
    target: String,
    options: String,
    keep: bool,
}

impl CopyIn {
    /// Starts spooling under `dir`; an upload's file is named with `prefix` (so a later
    /// start of the server removes it if nobody did).
    pub fn start(dir: &Path, prefix: &str, target: &str, options: &str) -> Result<CopyIn, QueryError> {
        // The directory may have gone under a running server (a cleaner, a new volume).
        std::fs::create_dir_all(dir).map_err(|e| {
            QueryError::new(
                "58030",
                format!("cannot create the COPY spool directory {}: {e}", dir.display()),
            )
        })?;
        let path = dir.join(format!(
            "{prefix}{}-{}.data",
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
            keep: false,
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
        if is_upload(&self.target) {
            self.keep = true;
            return Ok(format!(
                "SET VARIABLE {} = {path}",
                pg_lake_common::contract::protocol::UPLOAD_VARIABLE
            ));
        }
        Ok(format!(
            "COPY {} FROM {path} {}",
            self.target,
            without_header_detection(&self.options)
        ))
    }

    /// An upload whose variable could not be set is not kept.
    pub fn discard(&mut self) {
        self.keep = false;
    }

    /// The file a completed upload keeps.
    pub fn kept(&self) -> Option<&Path> {
        self.keep.then_some(self.path.as_path())
    }
}

/// A session's last upload: its reader deletes it once loaded; whatever is left (a COPY
/// that failed after the upload) goes at the session's next upload or its end.
#[derive(Default)]
pub struct KeptUpload(std::sync::Mutex<Option<PathBuf>>);

impl KeptUpload {
    pub fn replace(&self, path: &Path) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = kept.replace(path.to_path_buf()) {
            let _ = std::fs::remove_file(old);
        }
    }
}

impl Drop for KeptUpload {
    fn drop(&mut self) {
        if let Some(path) = self.0.get_mut().ok().and_then(|p| p.take()) {
            let _ = std::fs::remove_file(path);
        }
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
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
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
