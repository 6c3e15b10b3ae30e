//! Table routes, `tables/rename` and `transactions/commit`.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ident, list_entities, parse_namespace, AppState, JsonBody};
use crate::error::Result;
use crate::model::*;
use crate::storage::EntityKind;

pub async fn list(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ListTablesResponse>> {
    list_entities(&s, &namespace, q, EntityKind::Table).await
}

pub async fn create(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
    JsonBody(req): JsonBody<CreateTableRequest>,
) -> Result<Json<LoadTableResult>> {
    Ok(Json(s.catalog.create_table(parse_namespace(&namespace), req).await?))
}

pub async fn register(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
    JsonBody(req): JsonBody<RegisterTableRequest>,
) -> Result<Json<LoadTableResult>> {
    Ok(Json(s.catalog.register_table(parse_namespace(&namespace), req).await?))
}

/// The entity tag of a table version: metadata files are immutable, so their
/// location identifies the content.
fn etag(metadata_location: &str) -> String {
    let digest = Sha256::digest(metadata_location.as_bytes());
    format!("\"{}\"", digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>())
}

pub async fn load(
    State(s): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let (location, metadata) = s.catalog.load_table(&ident(&namespace, table)).await?;
    let tag = etag(&location);
    let tag_header = HeaderValue::from_str(&tag).map_err(|e| crate::error::Error::Metadata(e.to_string()))?;
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag_header)]).into_response());
    }
    let body = LoadTableResult {
        metadata_location: Some(location),
        metadata: metadata.as_ref().clone(),
        config: s.catalog.client_config(),
    };
    Ok(([(header::ETAG, tag_header)], Json(body)).into_response())
}

pub async fn exists(State(s): State<AppState>, Path((namespace, table)): Path<(String, String)>) -> Result<StatusCode> {
    let found = s.catalog.exists(&ident(&namespace, table), EntityKind::Table).await?;
    Ok(if found { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND })
}

pub async fn commit(
    State(s): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    JsonBody(req): JsonBody<CommitTableRequest>,
) -> Result<Json<CommitTableResponse>> {
    Ok(Json(s.catalog.commit_table(ident(&namespace, table), req).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DropQuery {
    #[serde(default)]
    purge_requested: bool,
}

pub async fn drop(
    State(s): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    Query(q): Query<DropQuery>,
) -> Result<StatusCode> {
    s.catalog.drop_table(&ident(&namespace, table), q.purge_requested).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rename(State(s): State<AppState>, JsonBody(req): JsonBody<RenameRequest>) -> Result<StatusCode> {
    s.catalog.rename(req, EntityKind::Table).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn commit_transaction(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<CommitTransactionRequest>,
) -> Result<StatusCode> {
    s.catalog.commit_transaction(req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Scan and commit reports are accepted; the catalog keeps no history of them.
pub async fn report_metrics(
    State(s): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
) -> Result<StatusCode> {
    s.catalog.load_table(&ident(&namespace, table)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The storage credentials a client should use for the table's files.
pub async fn credentials(
    State(s): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
) -> Result<Json<LoadCredentialsResponse>> {
    let (_, metadata) = s.catalog.load_table(&ident(&namespace, table)).await?;
    Ok(Json(LoadCredentialsResponse {
        storage_credentials: vec![StorageCredential {
            prefix: metadata.location().to_string(),
            config: s.catalog.client_config(),
        }],
    }))
}
