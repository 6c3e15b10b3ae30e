//! `pg_lake_file_etags(pattern)`: the entity tag of every file a pattern can match,
//! which DuckDB's own listings (`glob`, `read_blob`) do not report. The extension joins
//! it with `read_blob` for `lake_file.list`, so DuckDB keeps deciding which files match
//! and this function only supplies their tags.
//!
//! Object stores are listed with object_store, configured from the same environment
//! that [`crate::credentials`] turns into DuckDB secrets: S3 keys or the AWS credential
//! chain, GCS HMAC keys (through GCS's S3-compatible API). Local files get a tag built
//! from inode, modification time and size, as object_store's local store spells it.
//! A URL this process has no credentials for (a secret created by a client, GCS through
//! a bearer token) yields no rows, so its files have no tag; the failure is logged
//! without any credential.

use std::collections::HashMap;
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

/// The table function's name in DuckDB.
pub const FUNCTION: &str = "pg_lake_file_etags";

/// At most this many files are listed for one pattern.
const MAX_FILES: usize = 1_000_000;

/// How to reach each object store, from the environment at start-up.
#[derive(Clone, Debug, Default)]
pub struct Stores {
    s3: Option<S3Settings>,
    gcs: Option<S3Settings>,
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

/// `host[:port]` or `scheme://host[:port]`, with `ssl` deciding a missing scheme.
fn endpoint_url(endpoint: &str, ssl: Option<bool>) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else if ssl == Some(false) {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    }
}

impl Stores {
    /// Reads the variables [`crate::credentials::secrets_from_env`] reads.
    pub fn from_env(vars: impl Iterator<Item = (String, String)>) -> Stores {
        let env: HashMap<String, String> = vars.filter(|(_, v)| !v.is_empty()).collect();
        let get = |k: &str| env.get(k).cloned();
        let ssl = get("PG_LAKE_S3_USE_SSL").map(|v| !matches!(v.as_str(), "false" | "0" | "off"));
        let keys = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(k), Some(s)) => Some((k, s, get("AWS_SESSION_TOKEN"))),
            _ => None,
        };
        let s3_wanted = keys.is_some()
            || [
                "AWS_REGION",
                "AWS_DEFAULT_REGION",
                "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_S3",
                "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_PROFILE",
            ]
            .iter()
            .any(|k| get(k).is_some());
        let s3 = s3_wanted.then(|| S3Settings {
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            endpoint: get("AWS_ENDPOINT_URL_S3")
                .or_else(|| get("AWS_ENDPOINT_URL"))
                .map(|e| endpoint_url(&e, ssl)),
            virtual_hosted: get("PG_LAKE_S3_URL_STYLE").as_deref() == Some("vhost"),
            keys,
        });
        let gcs = match (get("GCS_ACCESS_KEY_ID"), get("GCS_SECRET_ACCESS_KEY")) {
            (Some(k), Some(s)) => Some(S3Settings {
                region: Some("auto".to_owned()),
                endpoint: Some(
                    get("STORAGE_EMULATOR_HOST")
                        .map(|e| endpoint_url(&e, Some(false)))
                        .unwrap_or_else(|| "https://storage.googleapis.com".to_owned()),
                ),
                virtual_hosted: false,
                keys: Some((k, s, None)),
            }),
            _ => None,
        };
        Stores { s3, gcs }
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
        .with_virtual_hosted_style_request(settings.virtual_hosted);
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
}

impl Lister {
    pub fn new(stores: Stores, runtime: tokio::runtime::Handle) -> Lister {
        Lister { stores, runtime }
    }

    /// (path, etag) of the files `pattern` can match; empty when the store is not
    /// reachable with this process's settings.
    pub fn etags(&self, pattern: &str) -> Vec<(String, Option<String>)> {
        match pattern.split_once("://") {
            Some(("file", path)) => local_etags(path, "file://"),
            Some((scheme, rest)) => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                let store = match self.stores.store(scheme, bucket) {
                    Some(Ok(store)) => store,
                    Some(Err(e)) => {
                        warn!(%scheme, %bucket, error = %e, "cannot list entity tags");
                        return Vec::new();
                    }
                    None => return Vec::new(),
                };
                let base = format!("{scheme}://{bucket}/");
                let listing = self.list(store, key);
                match listing {
                    Ok(metas) => metas
                        .into_iter()
                        .map(|m| (format!("{base}{}", m.location), m.e_tag))
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

    /// One HEAD for a plain key, else a listing under the key's fixed directory.
    fn list(&self, store: Arc<dyn ObjectStore>, key: &str) -> Result<Vec<ObjectMeta>, String> {
        let (prefix, glob) = split_pattern(key);
        let key = key.to_owned();
        let runtime = self.runtime.clone();
        // Its own thread: the caller may be on one of the runtime's workers, where
        // blocking on the runtime is not allowed.
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    runtime.block_on(async move {
                        if !glob {
                            return match store.head(&Path::from(key.as_str())).await {
                                Ok(meta) => Ok(vec![meta]),
                                Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
                                Err(e) => Err(e.to_string()),
                            };
                        }
                        let prefix = (!prefix.is_empty()).then(|| Path::from(prefix.as_str()));
                        store
                            .list(prefix.as_ref())
                            .take(MAX_FILES)
                            .try_collect::<Vec<_>>()
                            .await
                            .map_err(|e| e.to_string())
                    })
                })
                .join()
                .unwrap_or_else(|_| Err("listing thread panicked".to_owned()))
        })
    }
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
        let pattern = bind.get_parameter(0).to_string();
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

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
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
    }

    #[test]
    fn settings_follow_the_secret_variables_and_hide_keys() {
        let s = Stores::from_env(env(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_ENDPOINT_URL", "127.0.0.1:5000"),
            ("PG_LAKE_S3_USE_SSL", "false"),
        ]));
        let s3 = s.s3.as_ref().unwrap();
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert!(!format!("{s:?}").contains("s3cr3t"));
        assert!(s.gcs.is_none());
        let g = Stores::from_env(env(&[
            ("GCS_ACCESS_KEY_ID", "GOOG"),
            ("GCS_SECRET_ACCESS_KEY", "x"),
            ("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443"),
        ]));
        assert_eq!(
            g.gcs.unwrap().endpoint.as_deref(),
            Some("http://127.0.0.1:4443")
        );
        assert!(g.s3.is_none());
        assert!(Stores::from_env(env(&[])).store("s3", "b").is_none());
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
