//! The catalog's service logic: namespaces, tables and views, and commits
//! (check requirements, apply updates, write a new metadata file, swap the
//! catalog row). HTTP handlers call this; it calls the [`CatalogStore`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use iceberg::spec::{TableMetadata, ViewMetadata};
use iceberg::{TableRequirement, TableUpdate};
use pg_lake_iceberg::commit::{self, NewTable, StagedCreate, StagedMetadata, TableCommit};
use pg_lake_iceberg::metadata_file;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::*;
use crate::storage::{CatalogStore, EntityKind, MetadataSwap, Page, PropertyChanges};
use crate::warehouse::Warehouse;

/// Parsed metadata files kept in memory. Files are immutable, so an entry is
/// valid as long as it is kept; the map is emptied when it reaches this size.
const METADATA_CACHE_ENTRIES: usize = 512;

pub struct Catalog {
    store: Arc<dyn CatalogStore>,
    warehouse: Warehouse,
    metrics: Arc<Metrics>,
    /// How often a commit that lost the compare-and-swap is re-planned on the
    /// server against the new metadata (its requirements are checked again).
    commit_retries: u32,
    table_cache: Mutex<HashMap<String, Arc<TableVersion>>>,
    /// Commits to one table from this process queue here, so a commit whose
    /// requirements went stale fails its check instead of writing a metadata
    /// file that is bound to lose the swap. Other processes (replicas, the
    /// extension) are kept out by the compare-and-swap alone.
    commit_queues: Mutex<HashMap<TableIdentifier, Weak<tokio::sync::Mutex<()>>>>,
}

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
    fn parse(location: &str, bytes: &[u8]) -> Result<Self> {
        let (metadata, text) = metadata_file::parse_table_metadata(location, bytes)?;
        let json = RawValue::from_string(text)
            .map_err(|e| Error::Metadata(format!("{location}: {e}")))?;
        Ok(Self {
            location: Some(location.to_string()),
            metadata,
            json,
            refs_only: tokio::sync::OnceCell::new(),
        })
    }

    fn encode(location: Option<String>, metadata: TableMetadata) -> Result<Self> {
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

/// A table commit ready to be published: its metadata file is written.
struct StagedCommit {
    ident: TableIdentifier,
    previous: Option<String>,
    version: Arc<TableVersion>,
}

impl StagedCommit {
    fn location(&self) -> &str {
        self.version.written_location()
    }

    /// Whether this commit wrote a new metadata file (it changed something).
    fn is_new(&self) -> bool {
        self.previous.as_deref() != Some(self.location())
    }
}

impl Catalog {
    pub fn new(
        store: Arc<dyn CatalogStore>,
        warehouse: Warehouse,
        metrics: Arc<Metrics>,
        commit_retries: u32,
    ) -> Self {
        Self {
            store,
            warehouse,
            metrics,
            commit_retries,
            table_cache: Mutex::new(HashMap::new()),
            commit_queues: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &dyn CatalogStore {
        self.store.as_ref()
    }

    /// FileIO properties returned to clients with every table and view.
    pub fn client_config(&self) -> &Properties {
        self.warehouse.client_config()
    }

    /// The catalog's storage keys, when it vends credentials.
    pub fn vended_credentials(&self) -> Option<&Properties> {
        self.warehouse.vended_credentials()
    }

    pub fn warehouse_root(&self) -> &str {
        self.warehouse.root()
    }

    // ---- namespaces ----

    pub async fn create_namespace(&self, req: CreateNamespaceRequest) -> Result<NamespaceResponse> {
        check_namespace(&req.namespace)?;
        check_properties(req.properties.keys(), req.properties.values())?;
        reject_reserved_property(req.properties.keys())?;
        self.store
            .create_namespace(&req.namespace, &req.properties)
            .await?;
        Ok(NamespaceResponse {
            namespace: req.namespace,
            properties: req.properties,
        })
    }

    pub async fn load_namespace(&self, namespace: Namespace) -> Result<NamespaceResponse> {
        let properties = self.namespace_properties(&namespace).await?;
        Ok(NamespaceResponse {
            namespace,
            properties,
        })
    }

    async fn namespace_properties(&self, namespace: &Namespace) -> Result<Properties> {
        self.store
            .namespace_properties(namespace)
            .await?
            .ok_or_else(|| Error::NoSuchNamespace(namespace.join(".")))
    }

    pub async fn list_namespaces(
        &self,
        parent: Option<Namespace>,
        page: Page,
    ) -> Result<Vec<Namespace>> {
        if let Some(parent) = &parent {
            self.namespace_properties(parent).await?;
        }
        self.store.list_namespaces(parent.as_ref(), &page).await
    }

    pub async fn drop_namespace(&self, namespace: Namespace) -> Result<()> {
        self.store.drop_namespace(&namespace).await
    }

    pub async fn update_namespace_properties(
        &self,
        namespace: Namespace,
        req: UpdateNamespacePropertiesRequest,
    ) -> Result<PropertyChanges> {
        if let Some(key) = req.removals.iter().find(|k| req.updates.contains_key(*k)) {
            return Err(Error::BadRequest(format!(
                "property {key:?} is both removed and updated"
            )));
        }
        check_properties(
            req.removals.iter().chain(req.updates.keys()),
            req.updates.values(),
        )?;
        reject_reserved_property(req.removals.iter().chain(req.updates.keys()))?;
        self.store
            .update_namespace_properties(&namespace, &req.removals, &req.updates)
            .await
    }

    // ---- tables and views: shared ----

    pub async fn list(
        &self,
        namespace: Namespace,
        kind: EntityKind,
        page: Page,
    ) -> Result<Vec<TableIdentifier>> {
        self.namespace_properties(&namespace).await?;
        let names = self.store.list_entities(&namespace, kind, &page).await?;
        Ok(names
            .into_iter()
            .map(|name| TableIdentifier {
                namespace: namespace.clone(),
                name,
            })
            .collect())
    }

    pub async fn exists(&self, ident: &TableIdentifier, kind: EntityKind) -> Result<bool> {
        Ok(self.store.metadata_location(ident, kind).await?.is_some())
    }

    pub async fn rename(&self, req: RenameRequest, kind: EntityKind) -> Result<()> {
        self.store
            .rename_entity(&req.source, &req.destination, kind)
            .await
    }

    async fn current_location(&self, ident: &TableIdentifier, kind: EntityKind) -> Result<String> {
        self.store
            .metadata_location(ident, kind)
            .await?
            .ok_or_else(|| match kind {
                EntityKind::Table => Error::NoSuchTable(ident.to_string()),
                EntityKind::View => Error::NoSuchView(ident.to_string()),
            })
    }

    /// Where a new table or view goes: the location the request names, else
    /// under the namespace's `location` property, else under the warehouse.
    /// Fails when the namespace does not exist (even when a location is named)
    /// or the location is not inside the warehouse.
    async fn new_entity_location(
        &self,
        namespace: &Namespace,
        name: &str,
        requested: Option<String>,
    ) -> Result<String> {
        let properties = self.namespace_properties(namespace).await?;
        let location = match (requested, properties.get("location")) {
            (Some(l), _) => l.trim_end_matches('/').to_string(),
            (None, Some(base)) => format!("{}/{name}", base.trim_end_matches('/')),
            (None, None) => format!("{}/{}/{name}", self.warehouse.root(), namespace.join("/")),
        };
        self.warehouse.validate_location(&location)?;
        Ok(location)
    }

    async fn read_view(&self, location: &str) -> Result<ViewMetadata> {
        let bytes = self.warehouse.read(location).await?;
        Ok(metadata_file::parse_view_metadata(location, &bytes)?)
    }

    async fn write_view(&self, location: &str, metadata: &ViewMetadata) -> Result<()> {
        let bytes = metadata_file::file_bytes(location, &metadata_file::to_json(metadata)?)?;
        self.warehouse.write(location, Bytes::from(bytes)).await
    }

    /// Removes a metadata file that `failure` kept from being published, unless
    /// the failure leaves open whether a catalog row now points at it.
    async fn discard(&self, location: &str, failure: &Error) {
        if matches!(failure, Error::CommitStateUnknown(_)) {
            return;
        }
        if let Err(e) = self.warehouse.delete(location).await {
            tracing::warn!(location, error = %e, "could not remove an unpublished metadata file");
        }
    }

    /// Runs one commit attempt, again while it loses the compare-and-swap.
    async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut retries = 0;
        loop {
            let outcome = attempt().await;
            match &outcome {
                Err(Error::ConcurrentUpdate(_)) if retries < self.commit_retries => {
                    retries += 1;
                    self.metrics.commit("retried");
                }
                Ok(_) => {
                    self.metrics.commit("committed");
                    return outcome;
                }
                Err(Error::ConcurrentUpdate(_) | Error::CommitFailed(_)) => {
                    self.metrics.commit("conflict");
                    return outcome;
                }
                Err(Error::CommitStateUnknown(_)) => {
                    self.metrics.commit("unknown");
                    return outcome;
                }
                Err(_) => {
                    self.metrics.commit("failed");
                    return outcome;
                }
            }
        }
    }

    // ---- tables ----

    pub async fn load_table(&self, ident: &TableIdentifier) -> Result<Arc<TableVersion>> {
        let location = self.current_location(ident, EntityKind::Table).await?;
        self.table_version(&location).await
    }

    async fn table_version(&self, location: &str) -> Result<Arc<TableVersion>> {
        if let Some(cached) = self.lock_cache().get(location) {
            return Ok(cached.clone());
        }
        let bytes = self.warehouse.read(location).await?;
        let version = Arc::new(TableVersion::parse(location, &bytes)?);
        self.remember(version.clone());
        Ok(version)
    }

    /// Writes a new metadata file for `metadata`, which nothing points at yet.
    async fn write_table_version(
        &self,
        location: String,
        metadata: TableMetadata,
    ) -> Result<Arc<TableVersion>> {
        let version = TableVersion::encode(Some(location.clone()), metadata)?;
        let bytes = metadata_file::file_bytes(&location, version.json.get())?;
        self.warehouse.write(&location, Bytes::from(bytes)).await?;
        Ok(Arc::new(version))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TableVersion>>> {
        self.table_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for this process's other commits to the given tables (taken in a
    /// fixed order, so transactions cannot deadlock).
    async fn queue_for(
        &self,
        idents: &[&TableIdentifier],
    ) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut sorted: Vec<&TableIdentifier> = idents.to_vec();
        sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let queues: Vec<Arc<tokio::sync::Mutex<()>>> = {
            let mut map = self
                .commit_queues
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            map.retain(|_, q| q.strong_count() > 0);
            sorted
                .iter()
                .map(|ident| {
                    map.get(*ident).and_then(Weak::upgrade).unwrap_or_else(|| {
                        let queue = Arc::new(tokio::sync::Mutex::new(()));
                        map.insert((*ident).clone(), Arc::downgrade(&queue));
                        queue
                    })
                })
                .collect()
        };
        let mut guards = Vec::with_capacity(queues.len());
        for queue in queues {
            guards.push(queue.lock_owned().await);
        }
        guards
    }

    fn remember(&self, version: Arc<TableVersion>) {
        let mut cache = self.lock_cache();
        if cache.len() >= METADATA_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(version.written_location().to_string(), version);
    }

    pub async fn create_table(
        &self,
        namespace: Namespace,
        req: CreateTableRequest,
    ) -> Result<Arc<TableVersion>> {
        let ident = TableIdentifier {
            namespace: namespace.clone(),
            name: req.name.clone(),
        };
        ident.check()?;
        let location = self
            .new_entity_location(&namespace, &req.name, req.location)
            .await?;
        if self
            .store
            .metadata_location(&ident, EntityKind::Table)
            .await?
            .is_some()
            || self
                .store
                .metadata_location(&ident, EntityKind::View)
                .await?
                .is_some()
        {
            return Err(Error::AlreadyExists(format!(
                "a table or view named {} already exists",
                ident
            )));
        }
        let metadata = commit::new_table(NewTable {
            schema: req.schema,
            partition_spec: req.partition_spec,
            sort_order: req.write_order,
            location,
            properties: req.properties,
        })?;
        if req.stage_create {
            return Ok(Arc::new(TableVersion::encode(None, metadata)?));
        }
        let first = metadata_file::next_table_metadata_location(&metadata, None)?;
        let version = self.write_table_version(first, metadata).await?;
        if let Err(e) = self
            .store
            .insert_entity(&ident, EntityKind::Table, version.written_location())
            .await
        {
            self.discard(version.written_location(), &e).await;
            return Err(e);
        }
        self.remember(version.clone());
        Ok(version)
    }

    pub async fn register_table(
        &self,
        namespace: Namespace,
        req: RegisterTableRequest,
    ) -> Result<Arc<TableVersion>> {
        self.namespace_properties(&namespace).await?;
        let ident = TableIdentifier {
            namespace,
            name: req.name,
        };
        ident.check()?;
        self.warehouse.validate_location(&req.metadata_location)?;
        let version =
            self.table_version(&req.metadata_location)
                .await
                .map_err(|e| match e {
                    Error::Storage(object_store::Error::NotFound { .. }) => Error::BadRequest(
                        format!("metadata file {:?} does not exist", req.metadata_location),
                    ),
                    Error::Metadata(m) => {
                        Error::BadRequest(format!("not an Iceberg table metadata file: {m}"))
                    }
                    other => other,
                })?;
        self.warehouse
            .validate_location(version.metadata.location())?;
        match self
            .store
            .metadata_location(&ident, EntityKind::Table)
            .await?
        {
            Some(current) if req.overwrite => {
                self.store
                    .swap_metadata(&[MetadataSwap {
                        ident,
                        kind: EntityKind::Table,
                        expected: current,
                        new: Some(req.metadata_location.clone()),
                    }])
                    .await?
            }
            _ => {
                self.store
                    .insert_entity(&ident, EntityKind::Table, &req.metadata_location)
                    .await?
            }
        }
        Ok(version)
    }

    pub async fn commit_table(
        &self,
        ident: TableIdentifier,
        req: CommitTableRequest,
    ) -> Result<Arc<TableVersion>> {
        if let Some(body_ident) = &req.identifier {
            if body_ident != &ident {
                return Err(Error::BadRequest(format!(
                    "the body names table {} but the path names {}",
                    body_ident, ident
                )));
            }
        }
        let _queued = self.queue_for(&[&ident]).await;
        self.with_retries(|| async {
            let staged = self.stage(&ident, &req.requirements, &req.updates).await?;
            self.publish(std::slice::from_ref(&staged)).await?;
            Ok(staged.version)
        })
        .await
    }

    /// Commits several tables all or nothing.
    pub async fn commit_transaction(&self, req: CommitTransactionRequest) -> Result<()> {
        let mut seen = HashSet::new();
        let mut changes = Vec::with_capacity(req.table_changes.len());
        for change in &req.table_changes {
            let ident = change.identifier.clone().ok_or_else(|| {
                Error::BadRequest("every table change of a transaction needs its identifier".into())
            })?;
            if !seen.insert(ident.clone()) {
                return Err(Error::BadRequest(format!(
                    "table {} appears twice in the transaction",
                    ident
                )));
            }
            changes.push((ident, change));
        }
        let _queued = self
            .queue_for(&changes.iter().map(|(i, _)| i).collect::<Vec<_>>())
            .await;
        self.with_retries(|| async {
            let mut staged = Vec::with_capacity(changes.len());
            for (ident, change) in &changes {
                match self
                    .stage(ident, &change.requirements, &change.updates)
                    .await
                {
                    Ok(s) => staged.push(s),
                    Err(e) => {
                        self.discard_staged(&staged, &e).await;
                        return Err(e);
                    }
                }
            }
            self.publish(&staged).await
        })
        .await
    }

    /// Checks requirements against the current metadata, applies the updates
    /// and writes the new metadata file (not yet visible to anyone).
    async fn stage(
        &self,
        ident: &TableIdentifier,
        requirements: &[TableRequirement],
        updates: &[TableUpdate],
    ) -> Result<StagedCommit> {
        let previous = self
            .store
            .metadata_location(ident, EntityKind::Table)
            .await?;
        let StagedMetadata { metadata, location } = match &previous {
            Some(location) => {
                let current = self.table_version(location).await?;
                match commit::commit_table(&current.metadata, location, requirements, updates)? {
                    TableCommit::Unchanged => {
                        return Ok(StagedCommit {
                            ident: ident.clone(),
                            previous,
                            version: current,
                        })
                    }
                    TableCommit::Write(staged) => staged,
                }
            }
            None => {
                let create = StagedCreate::new(requirements, updates).map_err(|e| {
                    match e.kind() {
                        pg_lake_iceberg::ErrorKind::TableNotFound => {
                            Error::NoSuchTable(ident.to_string())
                        }
                        _ => e.into(),
                    }
                })?;
                let location = self
                    .new_entity_location(
                        &ident.namespace,
                        &ident.name,
                        create.requested_location().map(str::to_string),
                    )
                    .await?;
                if self
                    .store
                    .metadata_location(ident, EntityKind::View)
                    .await?
                    .is_some()
                {
                    return Err(Error::AlreadyExists(format!(
                        "a view named {ident} already exists"
                    )));
                }
                create.commit(location)?
            }
        };
        self.warehouse.validate_location(metadata.location())?;
        let version = self.write_table_version(location, metadata).await?;
        Ok(StagedCommit {
            ident: ident.clone(),
            previous,
            version,
        })
    }

    /// Makes staged commits visible in one catalog transaction.
    async fn publish(&self, staged: &[StagedCommit]) -> Result<()> {
        // A change that altered nothing (requirements only) is checked again
        // inside the swap transaction: its table must still be at the version
        // its requirements were checked against when the others are swapped.
        let swaps: Vec<MetadataSwap> = staged
            .iter()
            .filter_map(|s| {
                Some(MetadataSwap {
                    ident: s.ident.clone(),
                    kind: EntityKind::Table,
                    expected: s.previous.clone()?,
                    new: s.is_new().then(|| s.location().to_string()),
                })
            })
            .collect();
        let creates: Vec<&StagedCommit> = staged.iter().filter(|s| s.previous.is_none()).collect();
        let outcome = match (creates.as_slice(), swaps.is_empty()) {
            ([], _) => self.store.swap_metadata(&swaps).await,
            ([create], true) => self
                .store
                .insert_entity(&create.ident, EntityKind::Table, create.location())
                .await
                .map_err(|e| match e {
                    Error::AlreadyExists(m) => Error::CommitFailed(m),
                    other => other,
                }),
            _ => Err(Error::BadRequest(
                "a transaction cannot create tables; commit each creation on its own".into(),
            )),
        };
        match outcome {
            Ok(()) => {
                for s in staged {
                    self.remember(s.version.clone());
                }
                Ok(())
            }
            Err(e) => {
                self.discard_staged(staged, &e).await;
                Err(e)
            }
        }
    }

    async fn discard_staged(&self, staged: &[StagedCommit], failure: &Error) {
        for s in staged.iter().filter(|s| s.is_new()) {
            self.discard(s.location(), failure).await;
        }
    }

    /// Removes the table from the catalog; with `purge`, also every file under
    /// its location. A purge is refused (400, nothing dropped) when the location
    /// is not strictly inside the warehouse or another table or view of any
    /// catalog keeps metadata in or under it.
    pub async fn drop_table(&self, ident: &TableIdentifier, purge: bool) -> Result<()> {
        if !purge {
            self.store.drop_entity(ident, EntityKind::Table).await?;
            return Ok(());
        }
        let current = self.current_location(ident, EntityKind::Table).await?;
        let table_location = self.table_location(&current).await?;
        self.check_purgeable(&table_location, Some(ident)).await?;
        let dropped = self.store.drop_entity(ident, EntityKind::Table).await?;
        // The table may have been committed to between the check and the drop.
        let table_location = match dropped {
            Some(last) if last != current => match self.table_location(&last).await {
                Ok(location) => location,
                Err(e) => {
                    tracing::warn!(table = %ident, error = %e, "dropped; files not purged");
                    return Ok(());
                }
            },
            _ => table_location,
        };
        // Checked again now that the row is gone: a table created meanwhile counts.
        if let Err(e) = self.check_purgeable(&table_location, None).await {
            tracing::warn!(table = %ident, error = %e, "dropped; files not purged");
            return Ok(());
        }
        match self.warehouse.delete_all_under(&table_location).await {
            Ok(count) => tracing::info!(table = %ident, count, "purged dropped table's files"),
            Err(e) => {
                tracing::warn!(table = %ident, error = %e, "could not purge dropped table's files")
            }
        }
        Ok(())
    }

    async fn table_location(&self, metadata_location: &str) -> Result<String> {
        Ok(self
            .table_version(metadata_location)
            .await?
            .metadata
            .location()
            .to_string())
    }

    /// Whether every file under `location` may be deleted: it is strictly inside
    /// the warehouse (never its root) and no other catalog row has its metadata there.
    async fn check_purgeable(
        &self,
        location: &str,
        dropping: Option<&TableIdentifier>,
    ) -> Result<()> {
        self.warehouse
            .validate_location(location)
            .map_err(|e| Error::BadRequest(format!("cannot purge: {e}")))?;
        let key = self.warehouse.search_key(location)?;
        let others = self.store.entities_containing(&key, dropping).await?;
        if let Some((name, _)) = others
            .iter()
            .find(|(_, metadata)| self.warehouse.is_within(metadata, location))
        {
            return Err(Error::BadRequest(format!(
                "cannot purge {location:?}: {name} keeps its metadata there; drop without purgeRequested"
            )));
        }
        Ok(())
    }

    // ---- views ----

    pub async fn create_view(
        &self,
        namespace: Namespace,
        req: CreateViewRequest,
    ) -> Result<LoadViewResult> {
        let ident = TableIdentifier {
            namespace: namespace.clone(),
            name: req.name.clone(),
        };
        ident.check()?;
        let location = self
            .new_entity_location(&namespace, &req.name, req.location)
            .await?;
        let metadata = commit::new_view(location, req.schema, req.view_version, req.properties)?;
        let metadata_location = metadata_file::next_view_metadata_location(&metadata, None);
        self.write_view(&metadata_location, &metadata).await?;
        if let Err(e) = self
            .store
            .insert_entity(&ident, EntityKind::View, &metadata_location)
            .await
        {
            self.discard(&metadata_location, &e).await;
            return Err(e);
        }
        Ok(LoadViewResult {
            metadata_location,
            metadata,
            config: self.client_config().clone(),
        })
    }

    pub async fn load_view(&self, ident: &TableIdentifier) -> Result<LoadViewResult> {
        let metadata_location = self.current_location(ident, EntityKind::View).await?;
        let metadata = self.read_view(&metadata_location).await?;
        Ok(LoadViewResult {
            metadata_location,
            metadata,
            config: self.client_config().clone(),
        })
    }

    pub async fn replace_view(
        &self,
        ident: TableIdentifier,
        req: CommitViewRequest,
    ) -> Result<LoadViewResult> {
        self.with_retries(|| async {
            let previous = self.current_location(&ident, EntityKind::View).await?;
            let current = self.read_view(&previous).await?;
            let metadata = commit::commit_view(current, &req.requirements, &req.updates)?;
            self.warehouse.validate_location(metadata.location())?;
            let location = metadata_file::next_view_metadata_location(&metadata, Some(&previous));
            self.write_view(&location, &metadata).await?;
            let swap = MetadataSwap {
                ident: ident.clone(),
                kind: EntityKind::View,
                expected: previous,
                new: Some(location.clone()),
            };
            if let Err(e) = self.store.swap_metadata(&[swap]).await {
                self.discard(&location, &e).await;
                return Err(e);
            }
            Ok(LoadViewResult {
                metadata_location: location,
                metadata,
                config: self.client_config().clone(),
            })
        })
        .await
    }

    pub async fn drop_view(&self, ident: &TableIdentifier) -> Result<()> {
        self.store
            .drop_entity(ident, EntityKind::View)
            .await
            .map(|_| ())
    }
}

/// The namespace property marking existence belongs to the catalog.
fn reject_reserved_property<'a>(mut keys: impl Iterator<Item = &'a String>) -> Result<()> {
    let reserved = pg_lake_common::catalog::NAMESPACE_EXISTS_PROPERTY;
    if keys.any(|k| k == reserved) {
        return Err(Error::BadRequest(format!(
            "namespace property {reserved:?} is reserved by the catalog"
        )));
    }
    Ok(())
}
