//! Where the catalog's state lives: the [`CatalogStore`] trait, implemented for
//! Postgres in [`postgres`]. The service layer holds no SQL.

pub mod postgres;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Namespace, Properties, TableIdentifier};

/// Tables and views share one name space per namespace, told apart by `iceberg_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    Table,
    View,
}

/// A page of a listing: entries sorted by name, strictly after `after`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub after: Option<String>,
    pub limit: Option<u32>,
}

/// One compare-and-swap of an entity's metadata location, or (`new: None`)
/// a check that it is still `expected`, holding it there until the others commit.
#[derive(Debug, Clone)]
pub struct MetadataSwap {
    pub ident: TableIdentifier,
    pub kind: EntityKind,
    pub expected: String,
    pub new: Option<String>,
}

/// Outcome of a namespace property update.
#[derive(Debug, Default)]
pub struct PropertyChanges {
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub missing: Vec<String>,
}

/// A response stored under an Idempotency-Key.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// The state of an Idempotency-Key when a request carrying it arrives.
#[derive(Debug, Clone)]
pub enum Reservation {
    /// The key is now this request's: run it, then complete or release the key.
    Reserved,
    /// Another request with this key is running.
    InFlight,
    /// The outcome of an earlier request with this key.
    Done(StoredResponse),
    /// The key was first used for a request with another body.
    OtherRequest,
}

#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// Succeeds when the store answers and its schema is current.
    async fn check_ready(&self) -> Result<()>;

    async fn create_namespace(&self, namespace: &Namespace, properties: &Properties) -> Result<()>;
    /// `None` when the namespace does not exist.
    async fn namespace_properties(&self, namespace: &Namespace) -> Result<Option<Properties>>;
    /// Direct children of `parent` (top-level namespaces when `None`).
    async fn list_namespaces(
        &self,
        parent: Option<&Namespace>,
        page: &Page,
    ) -> Result<Vec<Namespace>>;
    /// Fails with `NamespaceNotEmpty` while it holds tables, views or namespaces.
    async fn drop_namespace(&self, namespace: &Namespace) -> Result<()>;
    async fn update_namespace_properties(
        &self,
        namespace: &Namespace,
        removals: &[String],
        updates: &Properties,
    ) -> Result<PropertyChanges>;

    async fn list_entities(
        &self,
        namespace: &Namespace,
        kind: EntityKind,
        page: &Page,
    ) -> Result<Vec<String>>;
    /// The current metadata location, `None` when no such entity exists.
    async fn metadata_location(
        &self,
        ident: &TableIdentifier,
        kind: EntityKind,
    ) -> Result<Option<String>>;
    /// Fails with `AlreadyExists` when a table or view has that name, and with
    /// `NoSuchNamespace` when the namespace does not exist; the namespace is
    /// held (`FOR SHARE`) until the insert commits, so a concurrent drop of the
    /// namespace either sees the new row or makes this insert fail.
    async fn insert_entity(
        &self,
        ident: &TableIdentifier,
        kind: EntityKind,
        metadata_location: &str,
    ) -> Result<()>;
    /// Applies every swap or none; a swap or check whose expected location is
    /// no longer current fails the whole call with `ConcurrentUpdate`.
    async fn swap_metadata(&self, swaps: &[MetadataSwap]) -> Result<()>;
    /// Tables and views of every catalog in this database whose metadata
    /// location contains `needle`, except `except` of this catalog: their names
    /// and metadata locations.
    async fn entities_containing(
        &self,
        needle: &str,
        except: Option<&TableIdentifier>,
    ) -> Result<Vec<(String, String)>>;
    /// Removes the entity and returns its last metadata location.
    async fn drop_entity(
        &self,
        ident: &TableIdentifier,
        kind: EntityKind,
    ) -> Result<Option<String>>;
    async fn rename_entity(
        &self,
        from: &TableIdentifier,
        to: &TableIdentifier,
        kind: EntityKind,
    ) -> Result<()>;

    /// Reserves an Idempotency-Key for a request about to run, or reports the
    /// outcome already recorded under it, or that it is still running. Keys
    /// older than `lifetime_secs`, and reservations older than `lease_secs`
    /// that were never completed (their process is gone), are forgotten.
    /// `request_sha256` fingerprints the request body: a key already used for
    /// another body is [`Reservation::OtherRequest`].
    async fn reserve_idempotency_key(
        &self,
        key: &str,
        request_sha256: &str,
        lifetime_secs: u64,
        lease_secs: u64,
    ) -> Result<Reservation>;
    /// Records the final response of a reserved key.
    async fn complete_idempotency_key(&self, key: &str, response: &StoredResponse) -> Result<()>;
    /// Forgets a reservation whose request ended without a final outcome (5xx),
    /// so a retry runs again.
    async fn release_idempotency_key(&self, key: &str) -> Result<()>;
}
