//! `COPY (<query>) TO STDOUT [(options)]` (or `COPY <table> TO STDOUT`): DuckDB writes
//! the file (Parquet, JSON, CSV, any of its COPY options) to a private temporary file,
//! whose bytes are then streamed to the client as binary COPY-out. The temporary file
//! is removed when the [`TempOut`] is dropped, whatever happened.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::QueryError;
use pg_lake_common::sql::quote_literal as literal;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The prefix of every temporary file this module writes.
pub const PREFIX: &str = "copy-out-";

/// The source (a parenthesised query or a table) and the options of a
/// `COPY ... TO STDOUT`.
pub fn parse(sql: &str) -> Option<(&str, &str)> {
    let trimmed = sql.trim().trim_end_matches(';').trim_end();
    let upper = trimmed.to_ascii_uppercase();
    if !upper.starts_with("COPY")
        || !upper[4..].starts_with(|c: char| c.is_whitespace() || c == '(')
    {
        return None;
    }
    // The last `TO STDOUT` outside quotes and parentheses is the target.
    let bytes = upper.as_bytes();
    let mut depth = 0i32;
    let mut quote: Option<u8> = None;
    let mut found = None;
    let mut i = 4;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'\'' | b'"' => quote = Some(b),
                b'(' => depth += 1,
                b')' => depth -= 1,
                b'T' if depth == 0
                    && upper[i..].starts_with("TO")
                    && (bytes[i - 1].is_ascii_whitespace() || bytes[i - 1] == b')') =>
                {
                    let rest = &upper[i + 2..];
                    let after_ws = rest.trim_start();
                    if rest.len() != after_ws.len() && after_ws.starts_with("STDOUT") {
                        let end = upper.len() - after_ws.len() + "STDOUT".len();
                        let next = upper[end..].chars().next();
                        if next.is_none_or(|c| c.is_whitespace() || c == '(') {
                            found = Some((i, end));
                        }
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    let (to, end) = found?;
    let source = trimmed[4..to].trim();
    if source.is_empty() {
        return None;
    }
    Some((source, trimmed[end..].trim()))
}

/// The temporary file (or, with PARTITION_BY and the like, directory) DuckDB writes.
pub struct TempOut {
    path: PathBuf,
}

/// Creates `dir` 0700 if missing (the directory of COPY TO STDOUT's files and uploads).
pub fn private_dir(dir: &Path) -> Result<(), QueryError> {
    create_private_dir(dir).map_err(|e| {
        QueryError::new(
            "58030",
            format!(
                "cannot create COPY TO STDOUT directory {}: {e}",
                dir.display()
            ),
        )
    })
}

impl TempOut {
    /// A new name under `dir` (created 0700 if missing); nothing is written yet.
    pub fn new(dir: &Path) -> Result<TempOut, QueryError> {
        private_dir(dir)?;
        let path = dir.join(format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        Ok(TempOut { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The DuckDB statement writing `source` with `options` to the temporary file.
    pub fn write_sql(&self, source: &str, options: &str) -> String {
        let path = literal(&self.path.to_string_lossy());
        format!("COPY {source} TO {path} {options}")
    }

    /// Opens what DuckDB wrote, which must be one file.
    pub fn open(&self) -> Result<std::fs::File, QueryError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| {
            QueryError::new(
                "58030",
                format!(
                    "COPY TO STDOUT: DuckDB wrote no file at {}: {e}",
                    self.path.display()
                ),
            )
        })?;
        if meta.is_dir() {
            return Err(QueryError::new(
                "0A000",
                "COPY TO STDOUT sends one file: options writing several (PARTITION_BY, \
                 PER_THREAD_OUTPUT, FILE_SIZE_BYTES) are not supported",
            ));
        }
        std::fs::File::open(&self.path).map_err(|e| {
            QueryError::new("58030", format!("cannot read {}: {e}", self.path.display()))
        })
    }
}

impl Drop for TempOut {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir_all(&self.path);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&self.path);
            }
            Err(_) => {}
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes what a previous process left behind in `dir` (it was killed mid-COPY).
pub fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(PREFIX) {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn recognises_copy_to_stdout() {
        assert_eq!(
            parse("COPY (SELECT 1) TO STDOUT (FORMAT parquet)"),
            Some(("(SELECT 1)", "(FORMAT parquet)"))
        );
        assert_eq!(parse("copy t to stdout"), Some(("t", "")));
        assert_eq!(parse("COPY(SELECT 1)TO STDOUT;"), Some(("(SELECT 1)", "")));
        assert_eq!(
            parse("COPY (SELECT 'to stdout' AS x, (SELECT 1) TO_) TO\n STDOUT WITH (FORMAT csv)"),
            Some((
                "(SELECT 'to stdout' AS x, (SELECT 1) TO_)",
                "WITH (FORMAT csv)"
            ))
        );
        assert_eq!(parse("COPY t TO 'f.parquet'"), None);
        assert_eq!(parse("COPY t TO STDOUTX"), None);
        assert_eq!(parse("COPY t FROM STDIN"), None);
        assert_eq!(parse("SELECT 1"), None);
        assert_eq!(parse("COPY TO STDOUT"), None);
    }
}
