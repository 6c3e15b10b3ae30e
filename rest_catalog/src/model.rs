//! Request and response bodies of the Iceberg REST API (the `components/schemas`
//! of the OpenAPI document). Iceberg's own types (schemas, metadata, updates,
//! requirements) come from the iceberg crate.

use std::collections::HashMap;

use iceberg::spec::{Schema, SortOrder, UnboundPartitionSpec, ViewMetadata, ViewVersion};
use iceberg::{TableRequirement, TableUpdate, ViewUpdate};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub type Properties = HashMap<String, String>;
/// A namespace as its levels.
pub type Namespace = Vec<String>;

#[derive(Debug, Serialize)]
pub struct CatalogConfig {
    pub defaults: Properties,
    pub overrides: Properties,
    pub endpoints: Vec<String>,
    #[serde(rename = "idempotency-key-lifetime")]
    pub idempotency_key_lifetime: String,
}

#[derive(Debug, Deserialize)]
pub struct CreateNamespaceRequest {
    pub namespace: Namespace,
    #[serde(default)]
    pub properties: Properties,
}

#[derive(Debug, Serialize)]
pub struct NamespaceResponse {
    pub namespace: Namespace,
    pub properties: Properties,
}

#[derive(Debug, Serialize)]
pub struct ListNamespacesResponse {
    pub namespaces: Vec<Namespace>,
    #[serde(rename = "next-page-token", skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct UpdateNamespacePropertiesRequest {
    #[serde(default)]
    pub removals: Vec<String>,
    #[serde(default)]
    pub updates: Properties,
}

#[derive(Debug, Serialize)]
pub struct UpdateNamespacePropertiesResponse {
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableIdentifier {
    pub namespace: Namespace,
    pub name: String,
}

impl std::fmt::Display for TableIdentifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.namespace.join("."), self.name)
    }
}

#[derive(Debug, Serialize)]
pub struct ListTablesResponse {
    pub identifiers: Vec<TableIdentifier>,
    #[serde(rename = "next-page-token", skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateTableRequest {
    pub name: String,
    pub location: Option<String>,
    pub schema: Schema,
    pub partition_spec: Option<UnboundPartitionSpec>,
    pub write_order: Option<SortOrder>,
    #[serde(default)]
    pub stage_create: bool,
    #[serde(default)]
    pub properties: Properties,
}

/// The metadata is passed through as the JSON text of its file.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadTableResult<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_location: Option<&'a str>,
    pub metadata: &'a RawValue,
    pub config: &'a Properties,
    /// Vended credentials, only when the request asked for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_credentials: Option<Vec<StorageCredential>>,
}

#[derive(Debug, Deserialize)]
pub struct CommitTableRequest {
    pub identifier: Option<TableIdentifier>,
    #[serde(default)]
    pub requirements: Vec<TableRequirement>,
    #[serde(default)]
    pub updates: Vec<TableUpdate>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitTableResponse<'a> {
    pub metadata_location: &'a str,
    pub metadata: &'a RawValue,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitTransactionRequest {
    pub table_changes: Vec<CommitTableRequest>,
}

#[derive(Debug, Deserialize)]
pub struct RenameRequest {
    pub source: TableIdentifier,
    pub destination: TableIdentifier,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegisterTableRequest {
    pub name: String,
    pub metadata_location: String,
    #[serde(default)]
    pub overwrite: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateViewRequest {
    pub name: String,
    pub location: Option<String>,
    pub schema: Schema,
    pub view_version: ViewVersion,
    #[serde(default)]
    pub properties: Properties,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadViewResult {
    pub metadata_location: String,
    pub metadata: ViewMetadata,
    pub config: Properties,
}

/// The one requirement a view commit may carry.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ViewRequirement {
    AssertViewUuid { uuid: uuid::Uuid },
}

#[derive(Debug, Deserialize)]
pub struct CommitViewRequest {
    pub identifier: Option<TableIdentifier>,
    #[serde(default)]
    pub requirements: Vec<ViewRequirement>,
    #[serde(default)]
    pub updates: Vec<ViewUpdate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageCredential {
    pub prefix: String,
    pub config: Properties,
}

#[derive(Debug, Serialize)]
pub struct LoadCredentialsResponse {
    #[serde(rename = "storage-credentials")]
    pub storage_credentials: Vec<StorageCredential>,
}

/// `GET` list query: `pageToken`, `pageSize` (and `parent` for namespaces).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub page_token: Option<String>,
    pub page_size: Option<u32>,
    pub parent: Option<String>,
}
