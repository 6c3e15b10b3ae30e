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

/// Whether a request asks for vended credentials
/// (`X-Iceberg-Access-Delegation: vended-credentials`, possibly among others).
pub fn wants_vended_credentials(headers: &HeaderMap) -> bool {
    headers
        .get_all("x-iceberg-access-delegation")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|mode| mode.trim().eq_ignore_ascii_case("vended-credentials"))
}

/// Marks a response that carries vended credentials: they are removed from
/// what the idempotency layer stores.
#[derive(Debug, Clone, Copy)]
pub struct CarriesVendedCredentials;

/// The credentials part of a `LoadTableResult` for a table at `location`:
/// the keys (also in `config`, for clients that only read that) and one
/// `storage-credentials` entry for the table's prefix.
fn vended(s: &AppState, location: &str) -> Option<(Properties, Vec<StorageCredential>)> {
    let keys = s.catalog.vended_credentials()?;
    let mut config = s.catalog.client_config().clone();
    config.extend(keys.clone());
    Some((
        config,
        vec![StorageCredential {
            prefix: location.to_string(),
            config: keys.clone(),
        }],
    ))
}

/// Adds vended credentials to a stored `LoadTableResult` being replayed.
pub fn add_vended_credentials(s: &AppState, body: &mut serde_json::Value) {
    let Some(location) = body["metadata"]["location"].as_str().map(str::to_string) else {
        return;
    };
    if let Some((config, storage)) = vended(s, &location) {
        body["config"] = serde_json::json!(config);
        body["storage-credentials"] = serde_json::json!(storage);
    }
}

/// Removes vended credentials from a `LoadTableResult` before it is stored.
pub fn strip_vended_credentials(s: &AppState, body: &mut serde_json::Value) {
    if let Some(object) = body.as_object_mut() {
        object.remove("storage-credentials");
    }
    if let (Some(config), Some(keys)) = (
        body.get_mut("config")
            .and_then(serde_json::Value::as_object_mut),
        s.catalog.vended_credentials(),
    ) {
        config.retain(|k, _| !keys.contains_key(k));
    }
}

/// The `LoadTableResult` of a table version, with its ETag when it is written,
/// and the catalog's keys when the request asked for them and the catalog vends them.
fn load_result(
    s: &AppState,
    version: &TableVersion,
    metadata: &RawValue,
    mode: SnapshotMode,
    headers: &HeaderMap,
) -> Response {
    let credentials = wants_vended_credentials(headers)
        .then(|| vended(s, version.metadata.location()))
        .flatten();
    let carries_credentials = credentials.is_some();
    let (config, storage_credentials) = match credentials {
        Some((config, storage)) => (std::borrow::Cow::Owned(config), Some(storage)),
        None => (std::borrow::Cow::Borrowed(s.catalog.client_config()), None),
    };
    let body = Json(LoadTableResult {
        metadata_location: version.location.as_deref(),
        metadata,
        config: &config,
        storage_credentials,
    });
    let mut response = match version
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(&etag(l, mode)).ok())
    {
        Some(tag) => ([(header::ETAG, tag)], body).into_response(),
        None => body.into_response(),
    };
    if carries_credentials {
        response.extensions_mut().insert(CarriesVendedCredentials);
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

pub async fn create(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateTableRequest>,
) -> Result<Response> {
    let version = s
        .catalog
        .create_table(parse_namespace(&namespace), req)
        .await?;
    Ok(load_result(
        &s,
        &version,
        &version.json,
        SnapshotMode::All,
        &headers,
    ))
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
    Ok(load_result(
        &s,
        &version,
        &version.json,
        SnapshotMode::All,
        &HeaderMap::new(),
    ))
}

/// Which snapshots a load returns (`snapshots=all|refs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotMode {
    All,
    Refs,
}

/// The entity tag of a table version as loaded in a mode: metadata files are
/// immutable, so their location and the mode identify the content.
fn etag(metadata_location: &str, mode: SnapshotMode) -> String {
    let mut hasher = Sha256::new();
    hasher.update(metadata_location.as_bytes());
    hasher.update(match mode {
        SnapshotMode::All => b"\0all".as_slice(),
        SnapshotMode::Refs => b"\0refs".as_slice(),
    });
    let digest = hasher.finalize();
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

/// Whether an `If-None-Match` header (any number of them, each a list of
/// strong or weak tags, or `*`) matches `tag`.
fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

pub async fn load(
    State(s): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    QueryParams(q): QueryParams<LoadQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let mode = match q.snapshots.as_deref() {
        None | Some("all") => SnapshotMode::All,
        Some("refs") => SnapshotMode::Refs,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "snapshots={other:?} is not supported; use all or refs"
            )))
        }
    };
    let version = s.catalog.load_table(&ident(&namespace, table)).await?;
    let tag = etag(version.written_location(), mode);
    if if_none_match(&headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let metadata = match mode {
        SnapshotMode::All => &*version.json,
        SnapshotMode::Refs => version.refs_only_json().await?,
    };
    Ok(load_result(&s, &version, metadata, mode, &headers))
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

/// The storage credentials a client should use for the table's files (the
/// spec's endpoint for refreshing vended credentials): the catalog's keys when
/// it vends them, else only the FileIO settings.
pub async fn credentials(
    State(s): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
) -> Result<Response> {
    let version = s.catalog.load_table(&ident(&namespace, table)).await?;
    let location = version.metadata.location();
    let (storage_credentials, carries) = match vended(&s, location) {
        Some((_, storage)) => (storage, true),
        None => (
            vec![StorageCredential {
                prefix: location.to_string(),
                config: s.catalog.client_config().clone(),
            }],
            false,
        ),
    };
    let mut response = Json(LoadCredentialsResponse {
        storage_credentials,
    })
    .into_response();
    if carries {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_by_snapshot_mode() {
        assert_ne!(
            etag("/w/t/metadata/0.json", SnapshotMode::All),
            etag("/w/t/metadata/0.json", SnapshotMode::Refs)
        );
    }

    #[test]
    fn if_none_match_takes_weak_tags_lists_and_stars() {
        let tag = etag("/w/t/metadata/0.json", SnapshotMode::All);
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(if_none_match(&with(&tag), &tag));
        assert!(if_none_match(&with(&format!("W/{tag}")), &tag));
        assert!(if_none_match(&with(&format!("\"x\", W/{tag}")), &tag));
        assert!(if_none_match(&with("*"), &tag));
        assert!(!if_none_match(&with("\"x\""), &tag));
        assert!(!if_none_match(&HeaderMap::new(), &tag));
    }

    #[test]
    fn the_delegation_header_is_a_list() {
        let mut h = HeaderMap::new();
        assert!(!wants_vended_credentials(&h));
        h.insert(
            "x-iceberg-access-delegation",
            HeaderValue::from_static("remote-signing, vended-credentials"),
        );
        assert!(wants_vended_credentials(&h));
    }
}
