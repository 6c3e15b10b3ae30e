//! The warehouse: object storage (S3, GCS or a local directory) reached through
//! object_store, where metadata files are written and read, and the FileIO
//! properties clients need to reach the same storage.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use pg_lake_common::wiring::ObjectStore as StoreWiring;

use crate::error::{Error, Result};
use crate::model::Properties;

/// Storage settings (non-secret; keys come from the environment): the node's object-store
/// wiring, as every engine of the node gets it, and the catalog's own choices.
#[derive(Debug, Clone, Default)]
pub struct StorageSettings {
    /// Warehouse URI and S3 settings (`s3://bucket/prefix`, `gs://...`, `file:///dir`, `/dir`).
    pub store: StoreWiring,
    /// Hand the catalog's own S3 keys to clients in `config` (`s3.access-key-id`, ...).
    pub vend_credentials: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    /// Locations are `<scheme>://<bucket>/<key>`.
    Bucket {
        prefixes: &'static [&'static str],
        bucket: String,
    },
    /// Locations are absolute paths, optionally as `file://` URLs.
    Local,
}

pub struct Warehouse {
    root: String,
    /// The root as an object path of `store`: every location the catalog
    /// writes to or purges must be strictly below it.
    root_path: Path,
    scheme: Scheme,
    store: Arc<dyn ObjectStore>,
    client_config: Properties,
    /// The catalog's own S3 keys, handed out only with `--vend-credentials` and
    /// only to table loads and creates that ask for them. Never in `client_config`.
    vended_credentials: Properties,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// GCS HMAC keys, read as pgduck_server reads them, so one Secret serves both.
const GCS_HMAC_KEY_ID_ENV: &str = pg_lake_common::contract::env::GCS_ACCESS_KEY_ID;
const GCS_HMAC_SECRET_ENV: &str = pg_lake_common::contract::env::GCS_SECRET_ACCESS_KEY;
/// Another GCS endpoint (an emulator), as the Google client libraries read it.
const GCS_EMULATOR_ENV: &str = pg_lake_common::contract::env::STORAGE_EMULATOR_HOST;
const GCS_XML_API: &str = "https://storage.googleapis.com";

/// A GCS bucket: with HMAC keys through GCS's S3-compatible XML API (the keys
/// pgduck_server uses), otherwise through the JSON API with a service-account
/// key or the metadata server (`GOOGLE_*` settings).
fn gcs_store(bucket: &str) -> Result<Arc<dyn ObjectStore>> {
    let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let Some((key_id, secret)) = env(GCS_HMAC_KEY_ID_ENV).zip(env(GCS_HMAC_SECRET_ENV)) else {
        let store = GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| Error::Config(format!("GCS warehouse: {e}")))?;
        return Ok(Arc::new(store));
    };
    let endpoint = env(GCS_EMULATOR_ENV).unwrap_or_else(|| GCS_XML_API.to_string());
    let store = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_access_key_id(key_id)
        .with_secret_access_key(secret)
        // GCS accepts any region in SigV4 signatures; "auto" is what it documents.
        .with_region("auto")
        .with_endpoint(&endpoint)
        .with_virtual_hosted_style_request(false)
        .with_allow_http(endpoint.starts_with("http://"))
        .build()
        .map_err(|e| Error::Config(format!("GCS warehouse (HMAC keys): {e}")))?;
    Ok(Arc::new(store))
}

fn bucket_of(rest: &str) -> Result<String> {
    let bucket = rest.split('/').next().unwrap_or_default();
    if bucket.is_empty() {
        return Err(Error::Config("the warehouse URI names no bucket".into()));
    }
    Ok(bucket.to_string())
}

impl Warehouse {
    pub fn new(settings: &StorageSettings) -> Result<Self> {
        let root = settings.store.warehouse.trim_end_matches('/').to_string();
        let mut client_config = Properties::new();
        let mut vended_credentials = Properties::new();
        let (scheme, store): (Scheme, Arc<dyn ObjectStore>) = if let Some(rest) = root
            .strip_prefix("s3://")
            .or_else(|| root.strip_prefix("s3a://"))
        {
            let bucket = bucket_of(rest)?;
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(&bucket)
                .with_virtual_hosted_style_request(!settings.store.s3_path_style)
                .with_allow_http(!settings.store.s3_use_ssl);
            if let Some(region) = &settings.store.s3_region {
                builder = builder.with_region(region);
                client_config.insert("s3.region".into(), region.clone());
                client_config.insert("client.region".into(), region.clone());
            }
            if let Some(endpoint) = &settings.store.s3_endpoint {
                builder = builder.with_endpoint(endpoint);
                client_config.insert("s3.endpoint".into(), endpoint.clone());
            }
            if settings.store.s3_path_style {
                client_config.insert("s3.path-style-access".into(), "true".into());
            }
            if settings.vend_credentials {
                for (env, property) in [
                    ("AWS_ACCESS_KEY_ID", "s3.access-key-id"),
                    ("AWS_SECRET_ACCESS_KEY", "s3.secret-access-key"),
                    ("AWS_SESSION_TOKEN", "s3.session-token"),
                ] {
                    if let Ok(value) = std::env::var(env) {
                        vended_credentials.insert(property.into(), value);
                    }
                }
            }
            let store = builder
                .build()
                .map_err(|e| Error::Config(format!("S3 warehouse: {e}")))?;
            (
                Scheme::Bucket {
                    prefixes: &["s3://", "s3a://"],
                    bucket,
                },
                Arc::new(store),
            )
        } else if let Some(rest) = root.strip_prefix("gs://") {
            let bucket = bucket_of(rest)?;
            (
                Scheme::Bucket {
                    prefixes: &["gs://"],
                    bucket: bucket.clone(),
                },
                gcs_store(&bucket)?,
            )
        } else {
            let dir = root.strip_prefix("file://").unwrap_or(&root);
            if !dir.starts_with('/') {
                return Err(Error::Config(format!(
                    "warehouse {root:?}: expected s3://bucket/prefix, gs://bucket/prefix or an absolute directory"
                )));
            }
            std::fs::create_dir_all(dir)?;
            (Scheme::Local, Arc::new(LocalFileSystem::new()))
        };
        let root_path = store_path(&scheme, &root)
            .map_err(|_| Error::Config(format!("warehouse {root:?} is not a valid location")))?;
        Ok(Self {
            root,
            root_path,
            scheme,
            store,
            client_config,
            vended_credentials,
        })
    }

    /// The warehouse URI, without a trailing slash.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// FileIO properties every client needs to reach the warehouse.
    pub fn client_config(&self) -> &Properties {
        &self.client_config
    }

    /// FileIO properties with the catalog's keys, when it vends credentials.
    pub fn vended_credentials(&self) -> Option<&Properties> {
        (!self.vended_credentials.is_empty()).then_some(&self.vended_credentials)
    }

    /// The object path of any location in this warehouse's bucket or file
    /// system (for reading files that catalog rows point at).
    fn object_path(&self, location: &str) -> Result<Path> {
        store_path(&self.scheme, location).map_err(|e| match e {
            Error::BadRequest(m) => {
                Error::BadRequest(format!("{m}; the warehouse is {:?}", self.root))
            }
            other => other,
        })
    }

    /// The object path of a location strictly below the warehouse root,
    /// compared segment by segment: the only places the catalog writes to or purges.
    fn confined_path(&self, location: &str) -> Result<Path> {
        let path = self.object_path(location)?;
        let below_root = path
            .prefix_match(&self.root_path)
            .is_some_and(|mut rest| rest.next().is_some());
        if !below_root {
            return Err(Error::BadRequest(format!(
                "location {location:?} is not inside the warehouse {:?}",
                self.root
            )));
        }
        Ok(path)
    }

    /// Checks that a client-supplied table or view location (or metadata
    /// file) is strictly inside the warehouse.
    pub fn validate_location(&self, location: &str) -> Result<()> {
        self.confined_path(location).map(|_| ())
    }

    /// The part of `location` that any spelling of it contains (`s3a://` for
    /// `s3://`, a path for a `file://` URL): a cheap filter for [`Self::is_within`].
    pub fn search_key(&self, location: &str) -> Result<String> {
        Ok(self.object_path(location)?.as_ref().to_string())
    }

    /// Whether `inner` is `outer` or below it, segment by segment.
    pub fn is_within(&self, inner: &str, outer: &str) -> bool {
        match (self.object_path(inner), self.object_path(outer)) {
            (Ok(inner), Ok(outer)) => inner.prefix_matches(&outer),
            _ => false,
        }
    }

    pub async fn write(&self, location: &str, bytes: Bytes) -> Result<()> {
        let path = self.confined_path(location)?;
        self.store.put(&path, PutPayload::from_bytes(bytes)).await?;
        Ok(())
    }

    pub async fn read(&self, location: &str) -> Result<Bytes> {
        let path = self.object_path(location)?;
        Ok(self.store.get(&path).await?.bytes().await?)
    }

    /// Deletes one object; a missing one is not an error.
    pub async fn delete(&self, location: &str) -> Result<()> {
        let path = self.confined_path(location)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object under a location (a dropped table's files); the
    /// location must be strictly inside the warehouse, never its root.
    pub async fn delete_all_under(&self, location: &str) -> Result<usize> {
        let prefix = self.confined_path(location)?;
        let paths: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        let count = paths.len();
        for path in paths {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(count)
    }
}

/// The object path of a location in a store of `scheme`: for buckets the key
/// after `<scheme>://<bucket>/`, for a local file system the absolute path
/// without its leading `/`. Relative segments (`..`, `.`) and empty ones are refused.
fn store_path(scheme: &Scheme, location: &str) -> Result<Path> {
    let key = match scheme {
        Scheme::Bucket { prefixes, bucket } => prefixes
            .iter()
            .find_map(|p| location.strip_prefix(p))
            .and_then(|rest| rest.strip_prefix(bucket.as_str()))
            .and_then(|rest| {
                if rest.is_empty() {
                    Some(rest)
                } else {
                    rest.strip_prefix('/')
                }
            }),
        Scheme::Local => location
            .strip_prefix("file://")
            .unwrap_or(location)
            .strip_prefix('/'),
    };
    let key = key.ok_or_else(|| {
        Error::BadRequest(format!(
            "location {location:?} is not in the warehouse's storage"
        ))
    })?;
    check_location_text(location, key)?;
    Path::parse(key).map_err(|e| Error::BadRequest(format!("location {location:?}: {e}")))
}

/// Longest location, in bytes (S3's limit on a key).
const MAX_LOCATION_BYTES: usize = 1024;
/// Longest segment of a location, in bytes (NAME_MAX of every file system).
const MAX_SEGMENT_BYTES: usize = 255;

/// What no store can take: NUL bytes, over-long locations or segments. Refused
/// up front, so that the store's own error (a file-system message) never
/// becomes the answer.
fn check_location_text(location: &str, key: &str) -> Result<()> {
    let shown = crate::model::shown(location);
    if location.contains('\0') {
        return Err(Error::BadRequest(format!(
            "location {shown} contains a NUL byte"
        )));
    }
    if location.len() > MAX_LOCATION_BYTES {
        return Err(Error::BadRequest(format!(
            "location {shown} is {} bytes long; at most {MAX_LOCATION_BYTES} are accepted",
            location.len()
        )));
    }
    if let Some(segment) = key.split('/').find(|s| s.len() > MAX_SEGMENT_BYTES) {
        return Err(Error::BadRequest(format!(
            "location {shown} has a segment of {} bytes; at most {MAX_SEGMENT_BYTES} are accepted",
            segment.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A warehouse at `s3://bucket/wh` (building it contacts nothing).
    fn s3_warehouse() -> Warehouse {
        Warehouse::new(&StorageSettings {
            store: StoreWiring {
                warehouse: "s3://bucket/wh".into(),
                s3_region: Some("us-east-1".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn locations_outside_the_bucket_are_refused() {
        let w = s3_warehouse();
        assert_eq!(
            w.object_path("s3://bucket/wh/a/b").unwrap().as_ref(),
            "bucket/wh/a/b".trim_start_matches("bucket/")
        );
        assert!(matches!(
            w.object_path("s3://other/x"),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            w.object_path("gs://bucket/x"),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn local_warehouses_take_paths_and_file_urls() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let w = Warehouse::new(&StorageSettings {
            store: StoreWiring {
                warehouse: root.clone(),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        let expected = root.trim_start_matches('/').to_string() + "/t";
        assert_eq!(
            w.object_path(&format!("{root}/t")).unwrap().as_ref(),
            expected
        );
        assert_eq!(
            w.object_path(&format!("file://{root}/t")).unwrap().as_ref(),
            expected
        );
        assert!(w.object_path("relative/t").is_err());
    }

    #[test]
    fn writes_and_purges_stay_strictly_inside_a_local_warehouse() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("wh").to_str().unwrap().to_string();
        let w = Warehouse::new(&StorageSettings {
            store: StoreWiring {
                warehouse: format!("{root}/"),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        assert!(w.validate_location(&format!("{root}/ns/t")).is_ok());
        assert!(w.validate_location(&format!("file://{root}/ns/t")).is_ok());
        for outside in [
            "/".to_string(),
            "/etc".to_string(),
            root.clone(),
            format!("{root}/"),
            format!("file://{root}"),
            // A string prefix of the root is not inside it.
            format!("{root}2/t"),
            format!("{root}/../escape"),
            format!("{root}/ns/../../escape"),
            format!("{root}/./t"),
            format!("{root}//t"),
            "relative/t".to_string(),
            "s3://bucket/t".to_string(),
        ] {
            let err = w.validate_location(&outside).unwrap_err();
            assert!(matches!(err, Error::BadRequest(_)), "{outside}: {err}");
            assert!(
                err.to_string().contains(&outside),
                "the error names the location: {err}"
            );
        }
        assert!(w.is_within(
            &format!("{root}/a/b/metadata/x.json"),
            &format!("{root}/a/b")
        ));
        assert!(w.is_within(&format!("{root}/a"), &format!("file://{root}/a")));
        assert!(!w.is_within(&format!("{root}/ab/x"), &format!("{root}/a")));
    }

    #[test]
    fn locations_no_store_can_take_are_bad_requests() {
        let w = s3_warehouse();
        for bad in [
            "s3://bucket/wh/a\0b".to_string(),
            format!("s3://bucket/wh/{}", "x".repeat(256)),
            format!("s3://bucket/wh/{}", "x/".repeat(600)),
        ] {
            let err = w.validate_location(&bad).unwrap_err();
            assert!(matches!(err, Error::BadRequest(_)), "{err}");
        }
        assert!(w
            .validate_location(&format!("s3://bucket/wh/{}", "x".repeat(255)))
            .is_ok());
    }

    #[tokio::test]
    async fn the_warehouse_root_is_never_purged() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let w = Warehouse::new(&StorageSettings {
            store: StoreWiring {
                warehouse: root.clone(),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        std::fs::write(dir.path().join("keep"), b"x").unwrap();
        assert!(w.delete_all_under(&root).await.is_err());
        assert!(w.delete_all_under("/").await.is_err());
        assert!(dir.path().join("keep").exists());
    }

    #[test]
    fn bucket_locations_must_be_under_the_warehouse_prefix() {
        let w = s3_warehouse();
        assert!(w.validate_location("s3://bucket/wh/ns/t").is_ok());
        assert!(w.validate_location("s3a://bucket/wh/ns/t").is_ok());
        for outside in [
            "s3://bucket/wh",
            "s3://bucket/wh2/t",
            "s3://bucket/other/t",
            "s3://bucket",
            "s3://bucketx/wh/t",
            "s3://other/wh/t",
            "s3://bucket/wh/../x",
        ] {
            assert!(w.validate_location(outside).is_err(), "{outside}");
        }
        let whole = Warehouse::new(&StorageSettings {
            store: StoreWiring {
                warehouse: "s3://bucket".into(),
                s3_region: Some("us-east-1".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        assert!(whole.validate_location("s3://bucket/t").is_ok());
        assert!(whole.validate_location("s3://bucket").is_err());
        assert!(whole.validate_location("s3://bucket/").is_err());
    }

    #[test]
    fn credentials_are_kept_apart_from_the_client_config() {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDTEST");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret-test");
        let settings = StorageSettings {
            store: StoreWiring {
                warehouse: "s3://bucket/wh".into(),
                s3_region: Some("us-east-1".into()),
                ..Default::default()
            },
            vend_credentials: true,
            ..Default::default()
        };
        let w = Warehouse::new(&settings).unwrap();
        assert!(!w
            .client_config()
            .values()
            .any(|v| v.contains("secret-test")));
        assert_eq!(
            w.vended_credentials().unwrap()["s3.secret-access-key"],
            "secret-test"
        );
        assert!(!format!("{w:?}").contains("secret-test"));
        let quiet = Warehouse::new(&StorageSettings {
            vend_credentials: false,
            ..settings
        })
        .unwrap();
        assert!(quiet.vended_credentials().is_none());
    }
}
