//! View routes and `views/rename`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::{ident, list_entities, parse_namespace, AppState, JsonBody, QueryParams};
use crate::error::Result;
use crate::model::*;
use crate::storage::EntityKind;

pub async fn list(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<ListTablesResponse>> {
    list_entities(&s, &namespace, q, EntityKind::View).await
}

pub async fn create(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
    JsonBody(req): JsonBody<CreateViewRequest>,
) -> Result<Json<LoadViewResult>> {
    Ok(Json(
        s.catalog
            .create_view(parse_namespace(&namespace), req)
            .await?,
    ))
}

pub async fn load(
    State(s): State<AppState>,
    Path((namespace, view)): Path<(String, String)>,
) -> Result<Json<LoadViewResult>> {
    Ok(Json(s.catalog.load_view(&ident(&namespace, view)).await?))
}

pub async fn exists(
    State(s): State<AppState>,
    Path((namespace, view)): Path<(String, String)>,
) -> Result<StatusCode> {
    let found = s
        .catalog
        .exists(&ident(&namespace, view), EntityKind::View)
        .await?;
    Ok(if found {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    })
}

pub async fn replace(
    State(s): State<AppState>,
    Path((namespace, view)): Path<(String, String)>,
    JsonBody(req): JsonBody<CommitViewRequest>,
) -> Result<Json<LoadViewResult>> {
    Ok(Json(
        s.catalog.replace_view(ident(&namespace, view), req).await?,
    ))
}

pub async fn drop(
    State(s): State<AppState>,
    Path((namespace, view)): Path<(String, String)>,
) -> Result<StatusCode> {
    s.catalog.drop_view(&ident(&namespace, view)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rename(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<RenameRequest>,
) -> Result<StatusCode> {
    s.catalog.rename(req, EntityKind::View).await?;
    Ok(StatusCode::NO_CONTENT)
}
