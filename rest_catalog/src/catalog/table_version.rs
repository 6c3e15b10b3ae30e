//! Table metadata files as the catalog holds them: parsed, with the JSON text
//! clients receive verbatim, cached by location (files are immutable).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use iceberg::spec::TableMetadata;
use pg_lake_iceberg::metadata_file;
use serde_json::value::RawValue;

use super::Catalog;
use crate::error::{Error, Result};

/// Parsed metadata files kept in memory. Files are immutable, so an entry is
/// valid as long as it is kept; the map is emptied when it reaches this size.
const METADATA_CACHE_ENTRIES: usize = 512;

/// One version of a table's metadata: parsed, and as the JSON text that
/// clients receive verbatim (so loads do not re-serialize it).
pub struct TableVersion {
    /// Where the metadata file is; `None` for a staged create, not yet written.
    pub location: Option<String>,
    pub metadata: TableMetadata,
    pub json: Box<RawValue>,
    /// `json` with only the snapshots that branches and tags point at
    /// (`snapshots=refs`), made once, on first request.
    refs_only: tokio::sync::OnceCell<Box<RawValue>>,
}

impl TableVersion {
    /// Parses a metadata file (gzip-compressed or not).
    pub(super) fn parse(location: &str, bytes: &[u8]) -> Result<Self> {
        let (metadata, text) = metadata_file::parse_table_metadata(location, bytes)?;
        let json =
            RawValue::from_string(text).map_err(|e| Error::Metadata(format!("{location}: {e}")))?;
        Ok(Self {
            location: Some(location.to_string()),
            metadata,
            json,
            refs_only: tokio::sync::OnceCell::new(),
        })
    }

    pub(super) fn encode(location: Option<String>, metadata: TableMetadata) -> Result<Self> {
        let json = RawValue::from_string(metadata_file::to_json(&metadata)?)
            .map_err(|e| Error::Metadata(e.to_string()))?;
        Ok(Self {
            location,
            metadata,
            json,
            refs_only: tokio::sync::OnceCell::new(),
        })
    }

    /// The metadata JSON without the snapshots no branch or tag references.
    pub async fn refs_only_json(&self) -> Result<&RawValue> {
        let json = self
            .refs_only
            .get_or_try_init(|| async { self.without_unreferenced_snapshots() })
            .await?;
        Ok(json)
    }

    fn without_unreferenced_snapshots(&self) -> Result<Box<RawValue>> {
        let invalid = |e: serde_json::Error| Error::Metadata(e.to_string());
        let mut value: serde_json::Value =
            serde_json::from_str(self.json.get()).map_err(invalid)?;
        let referenced: HashSet<i64> = value["refs"]
            .as_object()
            .map(|refs| {
                refs.values()
                    .filter_map(|r| r["snapshot-id"].as_i64())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(snapshots) = value
            .get_mut("snapshots")
            .and_then(serde_json::Value::as_array_mut)
        {
            snapshots.retain(|s| {
                s["snapshot-id"]
                    .as_i64()
                    .is_some_and(|id| referenced.contains(&id))
            });
        }
        RawValue::from_string(serde_json::to_string(&value).map_err(invalid)?).map_err(invalid)
    }

    /// The location of a version that has been written.
    pub fn written_location(&self) -> &str {
        self.location.as_deref().unwrap_or_default()
    }
}

impl Catalog {
    pub(super) async fn table_version(&self, location: &str) -> Result<Arc<TableVersion>> {
        if let Some(cached) = self.lock_cache().get(location) {
            return Ok(cached.clone());
        }
        let bytes = self.warehouse.read(location).await?;
        let version = Arc::new(TableVersion::parse(location, &bytes)?);
        self.remember(version.clone());
        Ok(version)
    }

    /// Writes a new metadata file for `metadata`, which nothing points at yet.
    pub(super) async fn write_table_version(
        &self,
        location: String,
        metadata: TableMetadata,
    ) -> Result<Arc<TableVersion>> {
        let version = TableVersion::encode(Some(location.clone()), metadata)?;
        let bytes = metadata_file::file_bytes(&location, version.json.get())?;
        self.warehouse.write(&location, Bytes::from(bytes)).await?;
        Ok(Arc::new(version))
    }

    pub(super) fn lock_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TableVersion>>> {
        self.table_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn remember(&self, version: Arc<TableVersion>) {
        let mut cache = self.lock_cache();
        if cache.len() >= METADATA_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(version.written_location().to_string(), version);
    }
}
