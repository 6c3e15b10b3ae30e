//! `/v1/{prefix}/namespaces` routes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::{next_page_token, page, parse_namespace, AppState, JsonBody, QueryParams};
use crate::error::Result;
use crate::model::*;

pub async fn list(
    State(s): State<AppState>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<ListNamespacesResponse>> {
    let page = page(q.page_token.map(|t| t.replace('\u{1f}', ".")), q.page_size)?;
    let parent = q.parent.as_deref().map(parse_namespace);
    let namespaces = s.catalog.list_namespaces(parent, page.clone()).await?;
    let next_page_token = next_page_token(
        &page,
        namespaces.len(),
        namespaces.last().map(|n| n.join(".")),
    );
    Ok(Json(ListNamespacesResponse {
        namespaces,
        next_page_token,
    }))
}

pub async fn create(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<CreateNamespaceRequest>,
) -> Result<Json<NamespaceResponse>> {
    Ok(Json(s.catalog.create_namespace(req).await?))
}

pub async fn load(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
) -> Result<Json<NamespaceResponse>> {
    Ok(Json(
        s.catalog
            .load_namespace(parse_namespace(&namespace))
            .await?,
    ))
}

pub async fn exists(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
) -> Result<StatusCode> {
    s.catalog
        .load_namespace(parse_namespace(&namespace))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn drop(State(s): State<AppState>, Path(namespace): Path<String>) -> Result<StatusCode> {
    s.catalog
        .drop_namespace(parse_namespace(&namespace))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn update_properties(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
    JsonBody(req): JsonBody<UpdateNamespacePropertiesRequest>,
) -> Result<Json<UpdateNamespacePropertiesResponse>> {
    let changes = s
        .catalog
        .update_namespace_properties(parse_namespace(&namespace), req)
        .await?;
    Ok(Json(UpdateNamespacePropertiesResponse {
        updated: changes.updated,
        removed: changes.removed,
        missing: changes.missing,
    }))
}
