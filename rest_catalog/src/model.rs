//! Request and response bodies of the Iceberg REST API (the `components/schemas`
//! of the OpenAPI document), and the limits on the names and properties they
//! carry. Iceberg's own types (schemas, metadata, updates, requirements) come
//! from the iceberg crate.

use std::collections::HashMap;

use iceberg::spec::{Schema, SortOrder, UnboundPartitionSpec, ViewMetadata, ViewVersion};
use iceberg::{TableRequirement, TableUpdate, ViewUpdate};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};

pub type Properties = HashMap<String, String>;
/// A namespace as its levels.
pub type Namespace = Vec<String>;

/// Longest table, view or namespace-level name, in bytes: one path segment on
/// every file system (NAME_MAX), and what the JDBC catalog's columns hold.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest namespace (levels joined by '.'), in bytes, so that a catalog row's
/// key stays well inside Postgres' limit on an index entry (2,704 bytes).
pub const MAX_NAMESPACE_BYTES: usize = 1024;
/// Longest property key, in bytes (the JDBC catalog's `varchar(255)`).
pub const MAX_PROPERTY_KEY_BYTES: usize = 255;

/// A value as error messages show it: quoted, escaped, and cut after 64 characters.
pub fn shown(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((end, _)) => format!("{:?}…", &value[..end]),
        None => format!("{value:?}"),
    }
}

/// Text that goes into the catalog database: Postgres `text` cannot hold NUL.
pub fn check_text(what: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::BadRequest(format!(
            "{what} {} contains a NUL byte, which the catalog cannot store",
            shown(value)
        )));
    }
    Ok(())
}

/// A table, view or namespace-level name: 1 to [`MAX_NAME_BYTES`] bytes, no NUL.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::BadRequest(format!("{what} must not be empty")));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::BadRequest(format!(
            "{what} {} is {} bytes long; at most {MAX_NAME_BYTES} are accepted",
            shown(name),
            name.len()
        )));
    }
    check_text(what, name)
}

/// Every level of a namespace, and its length as stored.
pub fn check_namespace(namespace: &Namespace) -> Result<()> {
    for level in namespace {
        check_name("namespace level", level)?;
    }
    let stored =
        namespace.iter().map(String::len).sum::<usize>() + namespace.len().saturating_sub(1);
    if stored > MAX_NAMESPACE_BYTES {
        return Err(Error::BadRequest(format!(
            "namespace {} is {stored} bytes long; at most {MAX_NAMESPACE_BYTES} are accepted",
            shown(&namespace.join("."))
        )));
    }
    Ok(())
}

/// Namespace property keys and values as the catalog stores them.
pub fn check_properties<'a>(
    keys: impl IntoIterator<Item = &'a String>,
    values: impl IntoIterator<Item = &'a String>,
) -> Result<()> {
    for key in keys {
        if key.len() > MAX_PROPERTY_KEY_BYTES {
            return Err(Error::BadRequest(format!(
                "property key {} is {} bytes long; at most {MAX_PROPERTY_KEY_BYTES} are accepted",
                shown(key),
                key.len()
            )));
        }
        check_text("property key", key)?;
    }
    for value in values {
        check_text("property value", value)?;
    }
    Ok(())
}

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

impl TableIdentifier {
    /// Checks the name and the namespace (see [`check_name`], [`check_namespace`]).
    pub fn check(&self) -> Result<()> {
        check_namespace(&self.namespace)?;
        check_name("name", &self.name)
    }
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

pub use pg_lake_iceberg::commit::ViewRequirement;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_free_of_nul() {
        assert!(check_name("name", "events").is_ok());
        assert!(check_name("name", &"x".repeat(MAX_NAME_BYTES)).is_ok());
        let long = check_name("name", &"x".repeat(10_000)).unwrap_err();
        assert!(matches!(long, Error::BadRequest(_)));
        assert!(long.to_string().contains("10000 bytes"), "{long}");
        assert!(long.to_string().len() < 200, "the value is cut: {long}");
        let nul = check_name("name", "a\0b").unwrap_err();
        assert!(nul.to_string().contains("NUL"), "{nul}");
        assert!(check_name("name", "").is_err());
        let deep: Namespace = (0..10).map(|_| "y".repeat(200)).collect();
        assert!(check_namespace(&deep).is_err());
        assert!(check_properties([&"k".to_string()], [&"v\0".to_string()]).is_err());
        assert!(check_properties([&"k".repeat(256)], []).is_err());
    }
}
