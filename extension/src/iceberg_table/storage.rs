//! Whole-file reads and writes of Iceberg metadata (metadata files, manifest lists,
//! manifests), through pgduck_server: it holds the object-storage credentials, the
//! backend does not. Reads use DuckDB's `read_blob`; writes pgduck_server's
//! `pg_lake_write_file` (one PUT, or a local file renamed into place once complete).
//! Both move the bytes as base64 text. Callers check privileges first.

use base64::Engine as _;
use pg_lake_common::contract::protocol::{DELETE_FILE, WRITE_FILE};

use crate::error::{Error, Result};
use crate::files::quote_literal;
use crate::pgduck::Connection;

/// The bytes of the file at `url`.
pub fn read(url: &str) -> Result<Vec<u8>> {
    let rows = Connection::acquire()?.query(&format!(
        "SELECT to_base64(content) FROM read_blob({})",
        quote_literal(url)
    ))?;
    let text = rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
        .ok_or_else(|| Error::FileNotFound(url.to_string()))?;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| Error::Protocol(format!("the content of {url} is not base64: {e}")))
}

/// Writes `bytes` as the whole file at `url`.
pub fn write(url: &str, bytes: &[u8]) -> Result<()> {
    write_all(&[(url, bytes)])
}

/// Writes each `(url, bytes)` as a whole file, in one statement (a snapshot's
/// manifests and manifest list: one round trip instead of one per file). When it
/// fails, some of the files may be written.
pub fn write_all(files: &[(&str, &[u8])]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let contents: Vec<String> = files
        .iter()
        .map(|(_, bytes)| base64::engine::general_purpose::STANDARD.encode(bytes))
        .collect();
    let sql = (0..files.len())
        .map(|i| format!("SELECT * FROM {WRITE_FILE}(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let params: Vec<&str> = files
        .iter()
        .zip(&contents)
        .flat_map(|((url, _), content)| [*url, content.as_str()])
        .collect();
    let written = Connection::acquire()?.execute_params(&sql, &params)?;
    if written != files.len() {
        return Err(Error::Protocol(format!(
            "{WRITE_FILE} answered {written} rows for {} files ({}, ...)",
            files.len(),
            files[0].0
        )));
    }
    Ok(())
}

/// Deletes the file at `url`; a file already gone is not an error.
pub fn delete(url: &str) -> Result<()> {
    match Connection::acquire()?.query(&format!(
        "SELECT * FROM {DELETE_FILE}({})",
        quote_literal(url)
    )) {
        Err(Error::Engine { sqlstate, .. }) if sqlstate == "58P01" => Ok(()),
        other => other.map(|_| ()),
    }
}
