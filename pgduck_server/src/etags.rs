//! `pg_lake_file_etags(pattern)`: the entity tag of every file a pattern can match,
//! which DuckDB's own listings (`glob`, `read_blob`) do not report. The extension joins
//! it with `read_blob` for `lake_file.list`, so DuckDB keeps deciding which files match
//! and this function only supplies their tags.
//!
//! Object stores are listed with object_store, configured from the same environment
//! that [`crate::credentials`] turns into DuckDB secrets: S3 keys or the AWS credential
//! chain, GCS HMAC keys (through GCS's S3-compatible API), or else the GCS access token
//! [`crate::gcp`] keeps fresh (through GCS's JSON API). Local files get a tag built
//! from inode, modification time and size, as object_store's local store spells it.
//! A URL this process has no credentials for (a secret created by a client, GCS through
//! an access token not yet minted) yields no rows, so its files have no tag; the failure is logged
//! without any credential.

use std::error::Error;
use std::ffi::CString;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use duckdb::core::{DataChunkHandle, Inserter, LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::{BindInfo, InitInfo, TableFunctionInfo, VTab};
use futures::{StreamExt as _, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use tracing::warn;

use crate::credentials::StorageEnv;

/// The table function's name in DuckDB.
pub const FUNCTION: &str = "pg_lake_file_etags";

/// At most this many files are listed for one pattern.
const MAX_FILES: usize = 1_000_000;

/// How to reach each object store, from the environment at start-up.
#[derive(Clone, Debug, Default)]
pub struct Stores {
    s3: Option<S3Settings>,
    gcs: Option<S3Settings>,
    /// GCS's JSON API, for listing with the access token [`crate::gcp`] keeps fresh
    /// when there are no HMAC keys.
    gcs_api: String,
}

/// An S3 API endpoint and its credentials (`None`: the AWS credential chain).
#[derive(Clone)]
struct S3Settings {
    region: Option<String>,
    /// With scheme, e.g. `http://127.0.0.1:5000`.
    endpoint: Option<String>,
    virtual_hosted: bool,
    keys: Option<(String, String, Option<String>)>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("S3Settings")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("virtual_hosted", &self.virtual_hosted)
            .field("keys", &self.keys.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Stores {
    /// From the settings the DuckDB secrets are made from.
    pub fn new(env: &StorageEnv) -> Stores {
        let s3 = env.s3.as_ref().map(|s3| S3Settings {
            region: s3.region.clone(),
            endpoint: s3.endpoint_url(),
            virtual_hosted: s3.url_style.as_deref() == Some("vhost"),
            keys: s3.keys.clone(),
        });
        let gcs_api = match &env.gcs_emulator {
            Some((host, ssl)) => format!("{}://{host}", if *ssl { "https" } else { "http" }),
            None => "https://storage.googleapis.com".to_owned(),
        };
        let gcs = env.gcs_keys.as_ref().map(|(key, secret)| S3Settings {
            region: Some("auto".to_owned()),
            endpoint: Some(gcs_api.clone()),
            virtual_hosted: false,
            keys: Some((key.clone(), secret.clone(), None)),
        });
        Stores { s3, gcs, gcs_api }
    }

    /// The store serving `bucket`, for a URL scheme this process has settings for.
    fn store(&self, scheme: &str, bucket: &str) -> Option<Result<Arc<dyn ObjectStore>, String>> {
        let settings = match scheme {
            "s3" | "s3a" | "s3n" => self.s3.as_ref()?,
            "gs" | "gcs" => self.gcs.as_ref()?,
            _ => return None,
        };
        let mut builder = match &settings.keys {
            Some((key, secret, token)) => {
                let b = AmazonS3Builder::new()
                    .with_access_key_id(key)
                    .with_secret_access_key(secret);
                match token {
                    Some(t) => b.with_token(t),
                    None => b,
                }
            }
            // Environment, web identity (IRSA), container and instance credentials.
            None => AmazonS3Builder::from_env(),
        }
        .with_bucket_name(bucket)
        .with_virtual_hosted_style_request(settings.virtual_hosted)
        // lake_file.list waits for this: a few quick retries, not object_store's
        // default of ten over three minutes.
        .with_retry(object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: REQUEST_TIMEOUT,
            ..Default::default()
        })
        .with_client_options(object_store::ClientOptions::new().with_timeout(REQUEST_TIMEOUT));
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        Some(
            builder
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
                .map_err(|e| e.to_string()),
        )
    }
}

/// What the function needs at run time: the settings and the runtime that drives
/// object_store's HTTP client.
#[derive(Clone)]
pub struct Lister {
    stores: Stores,
    runtime: tokio::runtime::Handle,
    gcs_token: GcsToken,
    http: reqwest::Client,
}

/// The GCS access token in use, set by [`crate::gcp`] each time it renews one.
pub type GcsToken = Arc<std::sync::RwLock<Option<String>>>;

/// How long one listing request may take.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Lister {
    pub fn new(stores: Stores, runtime: tokio::runtime::Handle, gcs_token: GcsToken) -> Lister {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default();
        Lister {
            stores,
            runtime,
            gcs_token,
            http,
        }
    }

    /// Runs `work` to completion on the runtime, from a thread of its own: the caller
    /// may be one of the runtime's workers, where blocking on it is not allowed.
    fn block_on<T: Send>(&self, work: impl std::future::Future<Output = T> + Send) -> T {
        let runtime = self.runtime.clone();
        std::thread::scope(|scope| {
            scope
                .spawn(move || runtime.block_on(work))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// (path, etag) of the files `pattern` can match; empty when the store is not
    /// reachable with this process's settings.
    pub fn etags(&self, pattern: &str) -> Vec<(String, Option<String>)> {
        match pattern.split_once("://") {
            Some(("file", path)) => local_etags(path, "file://"),
            Some((scheme, rest)) => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                let base = format!("{scheme}://{bucket}/");
                let listing = match self.stores.store(scheme, bucket) {
                    Some(Ok(store)) => self.list(store, key),
                    Some(Err(e)) => Err(e),
                    None if matches!(scheme, "gs" | "gcs") => {
                        let token = self.gcs_token.read().map(|t| t.clone()).unwrap_or(None);
                        match token {
                            Some(token) => self.list_gcs_json(&token, bucket, key),
                            None => return Vec::new(),
                        }
                    }
                    None => return Vec::new(),
                };
                match listing {
                    Ok(found) => found
                        .into_iter()
                        .map(|(key, etag)| (format!("{base}{key}"), etag))
                        .collect(),
                    Err(e) => {
                        warn!(%scheme, %bucket, error = %e, "cannot list entity tags");
                        Vec::new()
                    }
                }
            }
            None => local_etags(pattern, ""),
        }
    }

    /// The GCS access token to `action` `url` with (the JSON API, when no HMAC keys are set).
    fn gcs_bearer(&self, url: &str, action: &str) -> Result<String, String> {
        self.gcs_token
            .read()
            .map(|t| t.clone())
            .unwrap_or(None)
            .ok_or_else(|| {
                format!("cannot {action} \"{url}\": pgduck_server has no GCS credentials")
            })
    }

    /// Deletes the one object or local file `url` names (no patterns); a missing one is
    /// an error naming it. Object stores are reached with the same settings as listings.
    pub fn delete(&self, url: &str) -> Result<(), String> {
        let (scheme, bucket, key) = match one_file(url, "delete", "deletes only one file")? {
            OneFile::Local(path) => return delete_local(url, path),
            OneFile::Object {
                scheme,
                bucket,
                key,
            } => (scheme, bucket, key),
        };
        let missing = || format!("file \"{url}\" does not exist");
        match self.stores.store(scheme, bucket) {
            Some(Ok(store)) => {
                let path = Path::from(key);
                self.block_on(async move {
                    // DeleteObject succeeds for a missing key: HEAD first.
                    match store.head(&path).await {
                        Ok(_) => {}
                        Err(object_store::Error::NotFound { .. }) => return Err(missing()),
                        Err(e) => return Err(format!("cannot delete \"{url}\": {e}")),
                    }
                    store
                        .delete(&path)
                        .await
                        .map_err(|e| format!("cannot delete \"{url}\": {e}"))
                })
            }
            Some(Err(e)) => Err(format!("cannot delete \"{url}\": {e}")),
            None if matches!(scheme, "gs" | "gcs") => {
                let token = self.gcs_bearer(url, "delete")?;
                let object = format!(
                    "{}/storage/v1/b/{}/o/{}",
                    self.stores.gcs_api,
                    encode_segment(bucket),
                    encode_segment(key)
                );
                let http = &self.http;
                self.block_on(async move {
                    let response = http
                        .delete(&object)
                        .bearer_auth(token)
                        .send()
                        .await
                        .map_err(|e| format!("cannot delete \"{url}\": {}", e.without_url()))?;
                    match response.status() {
                        s if s.is_success() => Ok(()),
                        reqwest::StatusCode::NOT_FOUND => Err(missing()),
                        s => Err(format!("cannot delete \"{url}\": HTTP {s}")),
                    }
                })
            }
            None => Err(format!(
                "cannot delete \"{url}\": pgduck_server has no credentials for {scheme}:// URLs"
            )),
        }
    }

    /// Writes `bytes` as the whole of the one object or local file `url` names, replacing
    /// any file of that name. A local file is written under a temporary name in the same
    /// directory (created when missing) and renamed into place, and an object is one PUT,
    /// so no reader ever sees part of it.
    pub fn write(&self, url: &str, bytes: Vec<u8>) -> Result<(), String> {
        let (scheme, bucket, key) = match one_file(url, "write", "names no one file")? {
            OneFile::Local(path) => return write_local(url, path, &bytes),
            OneFile::Object {
                scheme,
                bucket,
                key,
            } => (scheme, bucket, key),
        };
        match self.stores.store(scheme, bucket) {
            Some(Ok(store)) => {
                let path = Path::from(key);
                self.block_on(async move {
                    store
                        .put(&path, bytes.into())
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("cannot write \"{url}\": {e}"))
                })
            }
            Some(Err(e)) => Err(format!("cannot write \"{url}\": {e}")),
            None if matches!(scheme, "gs" | "gcs") => {
                let token = self.gcs_bearer(url, "write")?;
                let upload = format!(
                    "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
                    self.stores.gcs_api,
                    encode_segment(bucket),
                    encode_segment(key)
                );
                let http = &self.http;
                self.block_on(async move {
                    let response = http
                        .post(&upload)
                        .bearer_auth(token)
                        .body(bytes)
                        .send()
                        .await
                        .map_err(|e| format!("cannot write \"{url}\": {}", e.without_url()))?;
                    match response.status() {
                        s if s.is_success() => Ok(()),
                        s => Err(format!("cannot write \"{url}\": HTTP {s}")),
                    }
                })
            }
            None => Err(format!(
                "cannot write \"{url}\": pgduck_server has no credentials for {scheme}:// URLs"
            )),
        }
    }

    /// One HEAD for a plain key, else a listing under the key's fixed directory.
    fn list(
        &self,
        store: Arc<dyn ObjectStore>,
        key: &str,
    ) -> Result<Vec<(String, Option<String>)>, String> {
        let (prefix, glob) = split_pattern(key);
        let one_level = pattern_depth(key, &prefix) == Some(1);
        let found = self.block_on(async move {
            if !glob {
                return match store.head(&Path::from(key)).await {
                    Ok(meta) => Ok(vec![meta]),
                    Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
                    Err(e) => Err(e.to_string()),
                };
            }
            let dir = (!prefix.is_empty()).then(|| Path::from(prefix.as_str()));
            if one_level {
                // `dir/*.parquet`: the objects right in `dir`, not everything below it.
                return store
                    .list_with_delimiter(dir.as_ref())
                    .await
                    .map(|listing| listing.objects)
                    .map_err(|e| e.to_string());
            }
            store
                .list(dir.as_ref())
                .take(MAX_FILES)
                .try_collect::<Vec<ObjectMeta>>()
                .await
                .map_err(|e| e.to_string())
        })?;
        Ok(found
            .into_iter()
            .map(|m| (m.location.to_string(), m.e_tag))
            .collect())
    }

    /// The same through GCS's JSON API with an access token: one object's metadata for
    /// a plain key, else the pages of a prefix listing.
    fn list_gcs_json(
        &self,
        token: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<(String, Option<String>)>, String> {
        #[derive(serde::Deserialize)]
        struct Object {
            name: String,
            etag: Option<String>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            items: Vec<Object>,
            next_page_token: Option<String>,
        }
        let (dir, glob) = split_pattern(key);
        let one_level = pattern_depth(key, &dir) == Some(1);
        let objects = format!(
            "{}/storage/v1/b/{}/o",
            self.stores.gcs_api,
            encode_segment(bucket)
        );
        let http = &self.http;
        self.block_on(async move {
            let get = |url: String, query: Vec<(&'static str, String)>| async move {
                let response = http
                    .get(&url)
                    .bearer_auth(token)
                    .query(&query)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {}", e.without_url()))?;
                let status = response.status();
                if status == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                if !status.is_success() {
                    return Err(format!("GET {url}: HTTP {status}"));
                }
                response
                    .bytes()
                    .await
                    .map(Some)
                    .map_err(|e| format!("GET {url}: {}", e.without_url()))
            };
            if !glob {
                let url = format!("{objects}/{}", encode_segment(key));
                let fields = vec![("fields", "name,etag".to_owned())];
                return match get(url, fields).await? {
                    Some(body) => {
                        let o: Object = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                        Ok(vec![(o.name, o.etag)])
                    }
                    None => Ok(Vec::new()),
                };
            }
            let prefix = if dir.is_empty() {
                dir
            } else {
                format!("{dir}/")
            };
            let mut out = Vec::new();
            let mut page_token: Option<String> = None;
            loop {
                let mut query = vec![
                    ("prefix", prefix.clone()),
                    ("fields", "items(name,etag),nextPageToken".to_owned()),
                    ("maxResults", "1000".to_owned()),
                ];
                if let Some(t) = page_token.take() {
                    query.push(("pageToken", t));
                }
                if one_level {
                    query.push(("delimiter", "/".to_owned()));
                }
                let Some(body) = get(objects.clone(), query).await? else {
                    return Err(format!("bucket {bucket} not found"));
                };
                let page: Page = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                out.extend(page.items.into_iter().map(|o| (o.name, o.etag)));
                match page.next_page_token {
                    Some(t) if out.len() < MAX_FILES => page_token = Some(t),
                    _ => return Ok(out),
                }
            }
        })
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters (a `/` too).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The directory before the first wildcard (`*`, `?`, `[`, `{`), and whether there is one.
fn split_pattern(path: &str) -> (String, bool) {
    match path.find(['*', '?', '[', '{']) {
        Some(at) => {
            let dir = path[..at].rfind('/').map_or("", |slash| &path[..slash]);
            (dir.to_owned(), true)
        }
        None => (path.to_owned(), false),
    }
}

/// How deep below the fixed directory a pattern reaches (`None`: any depth, `**`).
fn pattern_depth(path: &str, dir: &str) -> Option<usize> {
    let rest = path[dir.len()..].trim_start_matches('/');
    (!rest.contains("**")).then(|| rest.matches('/').count() + 1)
}

fn delete_local(url: &str, path: &str) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(format!("cannot delete \"{url}\": it is a directory"))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("file \"{url}\" does not exist"))
        }
        Err(e) => return Err(format!("cannot delete \"{url}\": {e}")),
    }
    std::fs::remove_file(path).map_err(|e| format!("cannot delete \"{url}\": {e}"))
}

/// The one file a URL given to `delete` or `write` names.
enum OneFile<'a> {
    Local(&'a str),
    Object {
        scheme: &'a str,
        bucket: &'a str,
        key: &'a str,
    },
}

/// Splits `url` into the one local file or object it names; a pattern, or a URL that
/// names no file (no bucket, no key, a trailing `/`), is an error for `action`.
fn one_file<'a>(url: &'a str, action: &str, wildcard: &str) -> Result<OneFile<'a>, String> {
    if url.contains(['*', '?', '[']) {
        return Err(format!(
            "cannot {action} \"{url}\": the URL has a wildcard (*, ? or [) and {wildcard}"
        ));
    }
    let (scheme, rest) = match url.split_once("://") {
        Some(("file", path)) => return Ok(OneFile::Local(path)),
        Some(split) => split,
        None => return Ok(OneFile::Local(url)),
    };
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
        return Err(format!("cannot {action} \"{url}\": not the URL of a file"));
    }
    Ok(OneFile::Object {
        scheme,
        bucket,
        key,
    })
}

fn write_local(url: &str, path: &str, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let fail = |e: std::io::Error| format!("cannot write \"{url}\": {e}");
    let target = std::path::Path::new(path);
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(format!("cannot write \"{url}\": not the path of a file"));
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        uuid_like_suffix()
    ));
    let result = (|| {
        let mut file = std::fs::File::create_new(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(fail)
}

/// A name part no other writer picks at the same time.
fn uuid_like_suffix() -> String {
    format!("{}-{:016x}", std::process::id(), rand::random::<u64>())
}

/// The tag object_store's local store gives a file: inode, mtime (µs) and size in hex.
fn local_etag(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let micros = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_micros();
    Some(format!("{:x}-{:x}-{:x}", meta.ino(), micros, meta.len()))
}

fn local_etags(path: &str, prefix: &str) -> Vec<(String, Option<String>)> {
    let (dir, glob) = split_pattern(path);
    if !glob {
        return match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => vec![(format!("{prefix}{path}"), local_etag(&meta))],
            _ => Vec::new(),
        };
    }
    let mut out = Vec::new();
    let root = if dir.is_empty() { "." } else { dir.as_str() };
    walk(
        FsPath::new(root),
        pattern_depth(path, &dir),
        &mut |file, meta| {
            let shown = file.to_string_lossy();
            let shown = if dir.is_empty() {
                shown.trim_start_matches("./").to_owned()
            } else {
                shown.into_owned()
            };
            out.push((format!("{prefix}{shown}"), local_etag(meta)));
            out.len() < MAX_FILES
        },
    );
    out
}

/// Visits regular files under `dir` down to `depth` levels; stops when `visit` says so.
fn walk(
    dir: &FsPath,
    depth: Option<usize>,
    visit: &mut dyn FnMut(&FsPath, &std::fs::Metadata) -> bool,
) -> bool {
    if depth == Some(0) {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            if !walk(&path, depth.map(|d| d - 1), visit) {
                return false;
            }
        } else if let Ok(meta) = std::fs::metadata(&path) {
            if meta.is_file() && !visit(&path, &meta) {
                return false;
            }
        }
    }
    true
}

/// The DuckDB table function.
pub struct FileEtags;

pub struct Listed(Vec<(String, Option<String>)>);

pub struct Cursor(AtomicUsize);

impl VTab for FileEtags {
    type BindData = Listed;
    type InitData = Cursor;

    fn bind(bind: &BindInfo) -> Result<Listed, Box<dyn Error>> {
        bind.add_result_column("path", LogicalTypeHandle::from(LogicalTypeId::Varchar));
        bind.add_result_column("etag", LogicalTypeHandle::from(LogicalTypeId::Varchar));
        let pattern = bind.get_parameter(0);
        if pattern.is_null() {
            // Describing a prepared statement binds it with NULL: no files.
            return Ok(Listed(Vec::new()));
        }
        let pattern = pattern.to_string();
        // SAFETY: registered with an `Arc<Lister>` as extra info, which DuckDB keeps
        // alive as long as the function exists.
        let lister = unsafe { &*bind.get_extra_info::<Arc<Lister>>() };
        Ok(Listed(lister.etags(&pattern)))
    }

    fn init(_: &InitInfo) -> Result<Cursor, Box<dyn Error>> {
        Ok(Cursor(AtomicUsize::new(0)))
    }

    fn func(
        func: &TableFunctionInfo<Self>,
        output: &mut DataChunkHandle,
    ) -> Result<(), Box<dyn Error>> {
        let rows = &func.get_bind_data().0;
        let cursor = &func.get_init_data().0;
        let paths = output.flat_vector(0);
        let mut tags = output.flat_vector(1);
        let n = paths.capacity().min(1024);
        let start = cursor.fetch_add(n, Ordering::Relaxed).min(rows.len());
        let batch = &rows[start..(start + n).min(rows.len())];
        for (i, (path, etag)) in batch.iter().enumerate() {
            paths.insert(i, CString::new(path.as_str())?);
            match etag {
                Some(tag) => tags.insert(i, CString::new(tag.as_str())?),
                None => tags.set_null(i),
            }
        }
        output.set_len(batch.len());
        Ok(())
    }

    fn parameters() -> Option<Vec<LogicalTypeHandle>> {
        Some(vec![LogicalTypeHandle::from(LogicalTypeId::Varchar)])
    }
}

/// Registers the function; it is visible to every connection of the database.
pub fn register(conn: &duckdb::Connection, lister: Lister) -> duckdb::Result<()> {
    conn.register_table_function_with_extra_info::<FileEtags, _>(FUNCTION, &Arc::new(lister))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores(pairs: &[(&str, &str)]) -> Stores {
        Stores::new(&StorageEnv::from_env(crate::credentials::env_of(pairs)).unwrap())
    }

    #[test]
    fn patterns_split_at_the_first_wildcard_directory() {
        assert_eq!(split_pattern("a/b/*.csv"), ("a/b".to_owned(), true));
        assert_eq!(split_pattern("a/b/x?.csv"), ("a/b".to_owned(), true));
        assert_eq!(split_pattern("a/**/x.csv"), ("a".to_owned(), true));
        assert_eq!(split_pattern("*.csv"), (String::new(), true));
        assert_eq!(split_pattern("a/b/x.csv"), ("a/b/x.csv".to_owned(), false));
        assert_eq!(pattern_depth("a/b/*.csv", "a/b"), Some(1));
        assert_eq!(pattern_depth("a/*/*.csv", "a"), Some(2));
        assert_eq!(pattern_depth("a/**/*.csv", "a"), None);
        assert_eq!(encode_segment("d/x y%.csv"), "d%2Fx%20y%25.csv");
    }

    #[test]
    fn settings_follow_the_secret_variables_and_hide_keys() {
        let s = stores(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_ENDPOINT_URL", "127.0.0.1:5000"),
            ("PG_LAKE_S3_USE_SSL", "false"),
        ]);
        let s3 = s.s3.as_ref().unwrap();
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert!(!format!("{s:?}").contains("s3cr3t"));
        assert!(s.gcs.is_none());
        let g = stores(&[
            ("GCS_ACCESS_KEY_ID", "GOOG"),
            ("GCS_SECRET_ACCESS_KEY", "x"),
            ("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443"),
        ]);
        assert_eq!(
            g.gcs.unwrap().endpoint.as_deref(),
            Some("http://127.0.0.1:4443")
        );
        assert!(g.s3.is_none());
        assert!(stores(&[]).store("s3", "b").is_none());
    }

    #[test]
    fn local_files_get_tags_that_change_with_the_file() {
        let dir = std::env::temp_dir().join(format!("etags-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.csv"), "1\n").unwrap();
        std::fs::write(dir.join("sub/b.csv"), "2\n").unwrap();
        let d = dir.to_string_lossy();
        let one = local_etags(&format!("{d}/*.csv"), "");
        assert_eq!(one.len(), 1, "{one:?}");
        let all = local_etags(&format!("{d}/**/*.csv"), "");
        assert_eq!(all.len(), 2, "{all:?}");
        let plain = local_etags(&format!("{d}/a.csv"), "");
        assert_eq!(plain[0].0, format!("{d}/a.csv"));
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::fs::write(dir.join("a.csv"), "10\n").unwrap();
        let again = local_etags(&format!("{d}/a.csv"), "");
        assert_ne!(plain[0].1, again[0].1);
        assert!(local_etags(&format!("{d}/missing.csv"), "").is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
