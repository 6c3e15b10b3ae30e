//! The catalog's service logic, one file per entity: [`namespaces`],
//! [`tables`] (create, register, load, drop and purge), [`commits`] (table
//! commits and multi-table transactions: `pg_lake_iceberg` decides what a commit
//! does, this layer reads, writes and swaps), [`views`], and [`table_version`]
//! (parsed metadata files and their cache). HTTP handlers call [`Catalog`]; it
//! calls the [`CatalogStore`] and the [`Warehouse`].

mod commits;
mod namespaces;
mod table_version;
mod tables;
mod views;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::*;
use crate::storage::{CatalogStore, EntityKind, Page};
use crate::warehouse::Warehouse;

pub use table_version::TableVersion;

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

    pub(super) async fn current_location(
        &self,
        ident: &TableIdentifier,
        kind: EntityKind,
    ) -> Result<String> {
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
    pub(super) async fn new_entity_location(
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

    /// Removes a metadata file that `failure` kept from being published, unless
    /// the failure leaves open whether a catalog row now points at it.
    pub(super) async fn discard(&self, location: &str, failure: &Error) {
        if matches!(failure, Error::CommitStateUnknown(_)) {
            return;
        }
        if let Err(e) = self.warehouse.delete(location).await {
            tracing::warn!(location, error = %e, "could not remove an unpublished metadata file");
        }
    }

    /// Runs one commit attempt, again while it loses the compare-and-swap.
    pub(super) async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T>
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
}
