//! A local cache of remote files under `--cache_dir/files`, bounded by `--cache_size`.
//!
//! Statements that read whole remote files through DuckDB's readers
//! (`read_parquet('s3://…')`, `read_csv(['gs://…', …])`, …) are rewritten to read the
//! local copy when one exists and still matches the object (same size and modification
//! time, checked with one metadata request for all of a statement's cached files). A
//! file read remotely is downloaded in the background for next time. Globs, writes,
//! metadata functions (`read_blob`, `glob`) and calls with a `filename` column are left
//! alone, so results never show a local path.
//!
//! Copies are laid out as `files/<scheme>/<bucket>/<key>`: file names keep their
//! extension (format and compression detection) and hive `key=value` directories. Each
//! has a `<name>.pglake.json` sidecar with its URL and the object's size and time, so
//! the cache survives restarts. The least recently used unpinned copies are evicted
//! when the total exceeds the limit; copies a running statement reads are pinned.
//! `pg_lake_cache.files` (an in-memory DuckDB table) lists what is cached.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use duckdb::Connection;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use pg_lake_common::sql::quote_literal as literal;

/// DuckDB table functions that read whole files given as their first argument.
const READERS: &[&str] = &[
    "read_parquet",
    "parquet_scan",
    "read_csv",
    "read_csv_auto",
    "read_json",
    "read_json_auto",
    "read_ndjson",
    "read_ndjson_auto",
    "read_json_objects",
];
/// Remote schemes worth caching.
const SCHEMES: &[&str] = &["s3://", "s3a://", "gs://", "gcs://", "r2://", "https://"];
/// Largest single file kept: a download is held in memory once while it is written out.
const MAX_FILE: u64 = 512 * 1024 * 1024;
const SIDECAR: &str = ".pglake.json";

#[derive(Serialize, Deserialize, Clone)]
struct Sidecar {
    url: String,
    remote_size: u64,
    remote_modified: String,
}

struct Entry {
    path: PathBuf,
    meta: Sidecar,
    last_used: u64,
    pins: u32,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    used: u64,
    clock: u64,
    queued: HashSet<String>,
    /// URLs found too large or unreadable, and when they may be tried again.
    skipped: Skips,
}

/// How long a URL that could not be cached is left alone: long enough not to fetch a
/// failing or oversized object on every statement, short enough that a fixed or
/// replaced one is cached again without a restart.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// URLs not to download before a given time.
#[derive(Default)]
struct Skips(HashMap<String, std::time::Instant>);

impl Skips {
    fn skip(&mut self, url: &str, now: std::time::Instant) {
        self.0.insert(url.to_owned(), now + RETRY_AFTER);
    }

    /// Whether `url` is still to be left alone at `now`; forgets it once it is not.
    fn holds(&mut self, url: &str, now: std::time::Instant) -> bool {
        match self.0.get(url) {
            Some(until) if now < *until => true,
            Some(_) => {
                self.0.remove(url);
                false
            }
            None => false,
        }
    }
}

pub struct FileCache {
    root: PathBuf,
    limit: u64,
    state: Mutex<State>,
    /// Checks metadata and maintains `pg_lake_cache.files`.
    conn: Mutex<Connection>,
    downloads: Mutex<mpsc::Sender<String>>,
}

/// Copies a statement reads; they stay on disk until this is dropped.
pub struct Pins {
    cache: Arc<FileCache>,
    urls: Vec<String>,
}

impl Drop for Pins {
    fn drop(&mut self) {
        let mut state = self.cache.state.lock().expect("file cache lock");
        for url in &self.urls {
            if let Some(e) = state.entries.get_mut(url) {
                e.pins = e.pins.saturating_sub(1);
            }
        }
        self.cache.evict(&mut state);
    }
}

impl FileCache {
    /// Opens the cache under `dir`, indexing copies left by earlier runs. `conn` and
    /// `download_conn` are connections to the server's database (for its secrets).
    pub fn open(
        dir: &Path,
        limit: u64,
        conn: Connection,
        download_conn: Connection,
    ) -> Result<Arc<FileCache>, String> {
        let root = dir.join("files");
        std::fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
        conn.execute_batch(
            "ATTACH IF NOT EXISTS ':memory:' AS pg_lake_cache;
             CREATE TABLE IF NOT EXISTS pg_lake_cache.files (
                 url VARCHAR PRIMARY KEY, path VARCHAR, size BIGINT, remote_modified VARCHAR,
                 hits BIGINT, cached_at TIMESTAMPTZ, last_used TIMESTAMPTZ)",
        )
        .map_err(|e| format!("creating pg_lake_cache.files: {e}"))?;
        let (tx, rx) = mpsc::channel();
        let cache = Arc::new(FileCache {
            root,
            limit,
            state: Mutex::new(State::default()),
            conn: Mutex::new(conn),
            downloads: Mutex::new(tx),
        });
        cache.load_existing();
        let worker = Arc::downgrade(&cache);
        std::thread::Builder::new()
            .name("file-cache".into())
            .stack_size(crate::threads::DUCKDB_THREAD_STACK)
            .spawn(move || {
                while let Ok(url) = rx.recv() {
                    let Some(cache) = worker.upgrade() else { break };
                    cache.download(&download_conn, &url);
                }
            })
            .map_err(|e| format!("starting the file cache worker: {e}"))?;
        Ok(cache)
    }

    /// Where the copy of `url` lives, or None for URLs that cannot be mapped safely.
    fn local_path(&self, url: &str) -> Option<PathBuf> {
        let (scheme, rest) = url.split_once("://")?;
        let rel = Path::new(rest);
        if rest.is_empty()
            || rest.contains('\0')
            || rest.contains('?')
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return None;
        }
        Some(self.root.join(scheme).join(rel))
    }

    fn load_existing(&self) {
        let mut found = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for item in rd.flatten() {
                let path = item.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.to_string_lossy().ends_with(".part") {
                    let _ = std::fs::remove_file(&path);
                } else if let Some(data) = path
                    .to_str()
                    .and_then(|p| p.strip_suffix(SIDECAR))
                    .map(PathBuf::from)
                {
                    let meta = std::fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Sidecar>(&b).ok());
                    let size = std::fs::metadata(&data).map(|m| m.len()).ok();
                    match (meta, size) {
                        (Some(meta), Some(size))
                            if size == meta.remote_size
                                && self.local_path(&meta.url).as_deref() == Some(&data) =>
                        {
                            let mtime = std::fs::metadata(&data).and_then(|m| m.modified()).ok();
                            found.push((mtime, data, meta));
                        }
                        _ => {
                            let _ = std::fs::remove_file(&path);
                            let _ = std::fs::remove_file(&data);
                        }
                    }
                }
            }
        }
        // Oldest first, so the least recently written are evicted first.
        found.sort_by_key(|(mtime, _, _)| *mtime);
        let mut state = self.state.lock().expect("file cache lock");
        for (_, path, meta) in found {
            state.clock += 1;
            state.used += meta.remote_size;
            self.record(&meta, &path, 0);
            let last_used = state.clock;
            state.entries.insert(
                meta.url.clone(),
                Entry {
                    path,
                    meta,
                    last_used,
                    pins: 0,
                },
            );
        }
        self.evict(&mut state);
        if !state.entries.is_empty() {
            info!(
                files = state.entries.len(),
                bytes = state.used,
                "file cache: reusing copies from an earlier run"
            );
        }
    }

    /// Rewrites `sql` to read valid local copies; returns the new text (None when
    /// nothing changed) and the pins that keep those copies until the statement ends.
    /// Remote files without a copy are queued for download.
    pub fn rewrite(self: &Arc<Self>, sql: &str) -> (Option<String>, Option<Pins>) {
        let reads = remote_reads(sql);
        if reads.is_empty() {
            return (None, None);
        }
        let cached: Vec<(String, Sidecar)> = {
            let state = self.state.lock().expect("file cache lock");
            let mut seen = HashSet::new();
            reads
                .iter()
                .filter(|r| seen.insert(r.url.clone()))
                .filter_map(|r| {
                    state
                        .entries
                        .get(&r.url)
                        .map(|e| (r.url.clone(), e.meta.clone()))
                })
                .collect()
        };
        for r in &reads {
            self.queue(&r.url);
        }
        if cached.is_empty() {
            return (None, None);
        }
        let valid = self.still_valid(&cached);
        let mut state = self.state.lock().expect("file cache lock");
        let mut pinned = Vec::new();
        let mut stale = Vec::new();
        for (url, _) in &cached {
            if !valid.contains(url) {
                stale.push(url.clone());
                // Changed or gone: drop the copy and fetch the object again.
                if let Some(e) = state.entries.get(url) {
                    if e.pins == 0 {
                        let e = state.entries.remove(url).expect("present");
                        state.used -= e.meta.remote_size;
                        self.remove_files(&e);
                    }
                }
                continue;
            }
            state.clock += 1;
            let clock = state.clock;
            if let Some(e) = state.entries.get_mut(url) {
                e.pins += 1;
                e.last_used = clock;
                pinned.push(url.clone());
            }
        }
        drop(state);
        for url in &stale {
            self.queue(url);
        }
        if pinned.is_empty() {
            return (None, None);
        }
        let mut out = String::with_capacity(sql.len());
        let mut at = 0;
        for r in &reads {
            if !pinned.contains(&r.url) {
                continue;
            }
            let Some(local) = self.local_path(&r.url) else {
                continue;
            };
            out.push_str(&sql[at..r.span.0]);
            out.push_str(&literal(&local.to_string_lossy()));
            at = r.span.1;
        }
        out.push_str(&sql[at..]);
        self.count_hits(&pinned);
        debug!(files = pinned.len(), "file cache: reading local copies");
        let pins = Pins {
            cache: self.clone(),
            urls: pinned,
        };
        (Some(out), Some(pins))
    }

    /// URLs whose object still has the size and modification time of its copy.
    fn still_valid(&self, cached: &[(String, Sidecar)]) -> HashSet<String> {
        let list: Vec<String> = cached.iter().map(|(u, _)| literal(u)).collect();
        let sql = format!(
            "SELECT filename, size, CAST(last_modified AS VARCHAR) FROM read_blob([{}])",
            list.join(", ")
        );
        let conn = self.conn.lock().expect("file cache connection lock");
        let rows: Result<Vec<(String, i64, String)>, _> = conn.prepare(&sql).and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        });
        let Ok(rows) = rows else {
            return HashSet::new();
        };
        let now: HashMap<String, (i64, String)> =
            rows.into_iter().map(|(f, s, m)| (f, (s, m))).collect();
        cached
            .iter()
            .filter(|(url, meta)| {
                now.get(url).is_some_and(|(size, modified)| {
                    *size as u64 == meta.remote_size && *modified == meta.remote_modified
                })
            })
            .map(|(url, _)| url.clone())
            .collect()
    }

    fn queue(&self, url: &str) {
        {
            let mut state = self.state.lock().expect("file cache lock");
            if state.entries.contains_key(url)
                || state.skipped.holds(url, std::time::Instant::now())
                || !state.queued.insert(url.to_owned())
            {
                return;
            }
        }
        let _ = self
            .downloads
            .lock()
            .expect("download queue lock")
            .send(url.to_owned());
    }

    /// Fetches `url` into the cache (on the worker thread).
    fn download(&self, conn: &Connection, url: &str) {
        let outcome = self.fetch(conn, url);
        let mut state = self.state.lock().expect("file cache lock");
        state.queued.remove(url);
        match outcome {
            Ok(Some((path, meta))) => {
                state.clock += 1;
                state.used += meta.remote_size;
                let last_used = state.clock;
                self.record(&meta, &path, 0);
                if let Some(old) = state.entries.insert(
                    url.to_owned(),
                    Entry {
                        path,
                        meta,
                        last_used,
                        pins: 0,
                    },
                ) {
                    state.used -= old.meta.remote_size;
                }
                self.evict(&mut state);
            }
            Ok(None) => state.skipped.skip(url, std::time::Instant::now()),
            Err(e) => {
                // The statement that named it reports errors; here it is only a miss.
                debug!(url, "file cache: not cached: {e}");
                state.skipped.skip(url, std::time::Instant::now());
            }
        }
    }

    fn fetch(&self, conn: &Connection, url: &str) -> Result<Option<(PathBuf, Sidecar)>, String> {
        let Some(path) = self.local_path(url) else {
            return Ok(None);
        };
        let max = MAX_FILE.min(self.limit / 4);
        let (size, modified): (i64, String) = conn
            .query_row(
                &format!(
                    "SELECT size, CAST(last_modified AS VARCHAR) FROM read_blob({})",
                    literal(url)
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| e.to_string())?;
        if size as u64 > max {
            debug!(url, size, "file cache: too large to cache");
            return Ok(None);
        }
        let (content, size2, modified2): (Vec<u8>, i64, String) = conn
            .query_row(
                &format!(
                    "SELECT content, size, CAST(last_modified AS VARCHAR) FROM read_blob({})",
                    literal(url)
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| e.to_string())?;
        if size2 != size || modified2 != modified || content.len() as u64 != size as u64 {
            return Err("the object changed while it was copied".into());
        }
        let dir = path.parent().ok_or("no parent directory")?;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let part = PathBuf::from(format!("{}.part", path.display()));
        std::fs::write(&part, &content).map_err(|e| e.to_string())?;
        let meta = Sidecar {
            url: url.to_owned(),
            remote_size: size as u64,
            remote_modified: modified,
        };
        let sidecar = PathBuf::from(format!("{}{SIDECAR}", path.display()));
        std::fs::write(
            &sidecar,
            serde_json::to_vec(&meta).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        std::fs::rename(&part, &path).map_err(|e| e.to_string())?;
        debug!(url, bytes = size, "file cache: stored");
        Ok(Some((path, meta)))
    }

    /// Drops the copy of `url` (the object was deleted), pinned or not: a statement
    /// reading it keeps its open file.
    pub fn forget(&self, url: &str) {
        let mut state = self.state.lock().expect("file cache lock");
        state.skipped.0.remove(url);
        if let Some(e) = state.entries.remove(url) {
            state.used -= e.meta.remote_size;
            self.remove_files(&e);
            debug!(url, "file cache: forgotten (deleted)");
        }
    }

    /// Removes least recently used, unpinned copies until the total fits the limit.
    fn evict(&self, state: &mut State) {
        while state.used > self.limit {
            let victim = state
                .entries
                .iter()
                .filter(|(_, e)| e.pins == 0)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(u, _)| u.clone());
            let Some(url) = victim else { break };
            let e = state.entries.remove(&url).expect("present");
            state.used -= e.meta.remote_size;
            self.remove_files(&e);
            debug!(url, "file cache: evicted");
        }
    }

    fn remove_files(&self, e: &Entry) {
        let _ = std::fs::remove_file(format!("{}{SIDECAR}", e.path.display()));
        if let Err(err) = std::fs::remove_file(&e.path) {
            if err.kind() != std::io::ErrorKind::NotFound {
                warn!(path = %e.path.display(), "file cache: cannot remove a copy: {err}");
            }
        }
        self.unrecord(&e.meta.url);
    }

    fn record(&self, meta: &Sidecar, path: &Path, hits: u64) {
        let sql = format!(
            "INSERT OR REPLACE INTO pg_lake_cache.files VALUES ({}, {}, {}, {}, {hits}, now(), now())",
            literal(&meta.url),
            literal(&path.to_string_lossy()),
            meta.remote_size,
            literal(&meta.remote_modified),
        );
        self.table_update(&sql);
    }

    fn unrecord(&self, url: &str) {
        self.table_update(&format!(
            "DELETE FROM pg_lake_cache.files WHERE url = {}",
            literal(url)
        ));
    }

    fn count_hits(&self, urls: &[String]) {
        let list: Vec<String> = urls.iter().map(|u| literal(u)).collect();
        self.table_update(&format!(
            "UPDATE pg_lake_cache.files SET hits = hits + 1, last_used = now() WHERE url IN ({})",
            list.join(", ")
        ));
    }

    fn table_update(&self, sql: &str) {
        if let Err(e) = self
            .conn
            .lock()
            .expect("file cache connection lock")
            .execute_batch(sql)
        {
            warn!("file cache: updating pg_lake_cache.files: {e}");
        }
    }
}

/// A remote file named by a reader call: its URL and the byte span of its literal.
#[derive(Debug, PartialEq)]
struct RemoteRead {
    url: String,
    span: (usize, usize),
}

/// The remote files `sql` reads through [`READERS`], in order of appearance.
fn remote_reads(sql: &str) -> Vec<RemoteRead> {
    // Every statement passes here: most name no URL at all, so skip them before copying.
    if !sql.contains("://") {
        return Vec::new();
    }
    let lower = sql.to_ascii_lowercase();
    if !SCHEMES.iter().any(|s| lower.contains(s)) {
        return Vec::new();
    }
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => i = skip_string(b, i),
            b'"' => i = skip_quoted_ident(b, i),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &lower[start..i];
                let before = sql[..start].trim_end();
                if READERS.contains(&word) && !before.ends_with('.') {
                    let j = skip_ws(b, i);
                    if b.get(j) == Some(&b'(') {
                        out.extend(reader_call(sql, j));
                    }
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// The remote literals of a reader call whose `(` is at `open`; none when the first
/// argument is not literal URLs or the call asks for a `filename` column.
fn reader_call(sql: &str, open: usize) -> Vec<RemoteRead> {
    let b = sql.as_bytes();
    let mut literals = Vec::new();
    let mut i = skip_ws(b, open + 1);
    let list = b.get(i) == Some(&b'[');
    if list {
        i += 1;
    }
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'\'') {
            return Vec::new();
        }
        let end = skip_string(b, i);
        literals.push((i, end, sql[i + 1..end - 1].replace("''", "'")));
        i = skip_ws(b, end);
        match (list, b.get(i)) {
            (true, Some(b',')) => i += 1,
            (true, Some(b']')) => {
                i += 1;
                break;
            }
            (false, _) => break,
            _ => return Vec::new(),
        }
    }
    // The rest of the call: look for a filename option.
    let mut depth = 1;
    while i < b.len() && depth > 0 {
        match b[i] {
            b'\'' => {
                i = skip_string(b, i);
                continue;
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                if sql[start..i].eq_ignore_ascii_case("filename") {
                    return Vec::new();
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    literals
        .into_iter()
        .filter(|(_, _, url)| {
            let lower = url.to_ascii_lowercase();
            SCHEMES.iter().any(|s| lower.starts_with(s)) && !url.contains(['*', '?', '[', '{'])
        })
        .map(|(s, e, url)| RemoteRead { url, span: (s, e) })
        .collect()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Index just past the string literal opening at `open` (`''` is an escaped quote).
fn skip_string(b: &[u8], open: usize) -> usize {
    crate::sql::skip_quoted(b, open, b'\'')
}

fn skip_quoted_ident(b: &[u8], open: usize) -> usize {
    crate::sql::skip_quoted(b, open, b'"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(sql: &str) -> Vec<String> {
        remote_reads(sql).into_iter().map(|r| r.url).collect()
    }

    #[test]
    fn skipped_urls_are_tried_again_later() {
        let mut skips = Skips::default();
        let t0 = std::time::Instant::now();
        assert!(!skips.holds("s3://b/x", t0));
        skips.skip("s3://b/x", t0);
        assert!(skips.holds("s3://b/x", t0 + RETRY_AFTER / 2));
        assert!(!skips.holds("s3://b/y", t0));
        assert!(!skips.holds("s3://b/x", t0 + RETRY_AFTER));
        assert!(skips.0.is_empty(), "a URL past its time is forgotten");
    }

    #[test]
    fn finds_the_files_readers_name() {
        assert_eq!(
            urls("SELECT * FROM read_parquet('s3://b/x.parquet') WHERE a = 's3://b/y'"),
            ["s3://b/x.parquet"]
        );
        assert_eq!(
            urls("SELECT 1 FROM READ_CSV( [ 's3://b/a.csv' , 'gs://c/it''s.csv.gz' ], header = true)"),
            ["s3://b/a.csv", "gs://c/it's.csv.gz"]
        );
        let sql = "TRANSMIT SELECT x FROM read_json('s3://b/j.json', format = 'newline_delimited')";
        let r = remote_reads(sql);
        assert_eq!(&sql[r[0].span.0..r[0].span.1], "'s3://b/j.json'");
    }

    #[test]
    fn leaves_globs_writes_metadata_and_filename_columns_alone() {
        assert!(urls("SELECT * FROM read_parquet('s3://b/*.parquet')").is_empty());
        assert!(urls("SELECT * FROM read_parquet('s3://b/x.parquet', filename = true)").is_empty());
        assert!(urls("COPY t TO 's3://b/x.parquet'").is_empty());
        assert!(urls("SELECT size FROM read_blob('s3://b/x.parquet')").is_empty());
        assert!(urls("SELECT * FROM read_parquet('/local/x.parquet')").is_empty());
        assert!(urls("SELECT * FROM read_parquet(getvariable('files'))").is_empty());
        assert!(urls("SELECT 'read_parquet(''s3://b/x'')'").is_empty());
        assert!(urls("SELECT * FROM my.read_parquet('s3://b/x')").is_empty());
    }
}
