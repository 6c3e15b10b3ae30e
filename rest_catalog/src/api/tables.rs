//! Table routes, `tables/rename` and `transactions/commit`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::{ident, list_entities, parse_namespace, AppState, JsonBody, QueryParams};
use crate::catalog::TableVersion;
use crate::error::{Error, Result};
use crate::model::*;
use crate::storage::EntityKind;

pub async fn list(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<ListTablesResponse>> {
    list_entities(&s, &namespace, q, EntityKind::Table).await
}

/// The `LoadTableResult` of a table version, with its ETag when it is written.
fn load_result(s: &AppState, version: &TableVersion, metadata: &RawValue) -> Response {
    let body = Json(LoadTableResult {
        metadata_location: version.location.as_deref(),
        metadata,
        config: s.catalog.client_config(),
    });
    match version
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(&etag(l)).ok())
    {
        Some(tag) => ([(header::ETAG, tag)], body).into_response(),
        None => body.into_response(),
    }
}

pub async fn create(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
    JsonBody(req): JsonBody<CreateTableRequest>,
) -> Result<Response> {
    let version = s
        .catalog
        .create_table(parse_namespace(&namespace), req)
        .await?;
    Ok(load_result(&s, &version, &version.json))
}

pub async fn register(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
    JsonBody(req): JsonBody<RegisterTableRequest>,
) -> Result<Response> {
    let version = s
        .catalog
        .register_table(parse_namespace(&namespace), req)
        .await?;
    Ok(load_result(&s, &version, &version.json))
}

/// The entity tag of a table version: metadata files are immutable, so their
/// location identifies the content.
fn etag(metadata_location: &str) -> String {
    let digest = Sha256::digest(metadata_location.as_bytes());
    format!(
        "\"{}\"",
        digest
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

#[derive(Debug, Deserialize)]
pub struct LoadQuery {
    /// `all` (the default) or `refs`: only snapshots that branches and tags reference.
    snapshots: Option<String>,
}

pub async fn load(
    State(s): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    QueryParams(q): QueryParams<LoadQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let version = s.catalog.load_table(&ident(&namespace, table)).await?;
    let tag = etag(version.written_location());
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let metadata = match q.snapshots.as_deref() {
        None | Some("all") => &*version.json,
        Some("refs") => version.refs_only_json().await?,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "snapshots={other:?} is not supported; use all or refs"
            )))
        }
    };
    Ok(load_result(&s, &version, metadata))
}

pub async fn exists(
    State(s): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
) -> Result<StatusCode> {
    let found = s
        .catalog
        .exists(&ident(&namespace, table), EntityKind::Table)
        .await?;
    Ok(if found {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    })
}

pub async fn commit(
    State(s): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    JsonBody(req): JsonBody<CommitTableRequest>,
) -> Result<Response> {
    let version = s
        .catalog
        .commit_table(ident(&namespace, table), req)
        .await?;
    Ok(Json(CommitTableResponse {
        metadata_location: version.written_location(),
        metadata: &version.json,
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DropQuery {
    /// `true`/`false` in any case (PyIceberg sends `True`).
    purge_requested: Option<String>,
}

pub async fn drop(
    State(s): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    QueryParams(q): QueryParams<DropQuery>,
) -> Result<StatusCode> {
    let purge = q
        .purge_requested
        .is_some_and(|p| p.eq_ignore_ascii_case("true"));
    s.catalog
        .drop_table(&ident(&namespace, table), purge)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rename(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<RenameRequest>,
) -> Result<StatusCode> {
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
    let version = s.catalog.load_table(&ident(&namespace, table)).await?;
    Ok(Json(LoadCredentialsResponse {
        storage_credentials: vec![StorageCredential {
            prefix: version.metadata.location().to_string(),
            config: s.catalog.client_config().clone(),
        }],
    }))
}
