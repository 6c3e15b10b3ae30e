//! Views: lifecycle and errors.

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn views_lifecycle_and_errors() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    let view = json!({
        "name": "v",
        "schema": { "type": "struct", "schema-id": 0, "fields": [ { "id": 1, "name": "x", "required": false, "type": "long" } ] },
        "view-version": {
            "version-id": 1, "timestamp-ms": 1700000000000i64, "schema-id": 0,
            "summary": { "engine-name": "test" },
            "representations": [ { "type": "sql", "sql": "SELECT 1 AS x", "dialect": "duckdb" } ],
            "default-namespace": ["ns"]
        },
        "properties": {}
    });
    assert_error(
        c.get("/v1/namespaces/ns/views/v").await,
        404,
        "NoSuchViewException",
    );
    assert_eq!(c.head("/v1/namespaces/ns/views/v").await, 404);
    let (status, created) = c.post("/v1/namespaces/ns/views", view.clone()).await;
    assert_eq!(status, 200, "{created}");
    assert_error(
        c.post("/v1/namespaces/ns/views", view).await,
        409,
        "AlreadyExistsException",
    );
    assert_error(
        c.post("/v1/namespaces/ns/tables", table_request("v")).await,
        409,
        "AlreadyExistsException",
    );
    let (_, listed) = c.get("/v1/namespaces/ns/views").await;
    assert_eq!(
        listed["identifiers"],
        json!([{ "namespace": ["ns"], "name": "v" }])
    );
    let (_, tables) = c.get("/v1/namespaces/ns/tables").await;
    assert_eq!(
        tables["identifiers"],
        json!([]),
        "views are not listed as tables"
    );
    assert_error(
        c.get("/v1/namespaces/ns/tables/v").await,
        404,
        "NoSuchTableException",
    );

    let replace = |uuid: &Value| {
        json!({
            "requirements": [ { "type": "assert-view-uuid", "uuid": uuid } ],
            "updates": [
                { "action": "add-view-version", "view-version": {
                    "version-id": 2, "timestamp-ms": 1700000001000i64, "schema-id": 0, "summary": {},
                    "representations": [ { "type": "sql", "sql": "SELECT 2 AS x", "dialect": "duckdb" } ],
                    "default-namespace": ["ns"] } },
                { "action": "set-current-view-version", "view-version-id": -1 }
            ]
        })
    };
    assert_error(
        c.post(
            "/v1/namespaces/ns/views/v",
            replace(&json!("00000000-0000-0000-0000-000000000000")),
        )
        .await,
        409,
        "CommitFailedException",
    );
    let (status, replaced) = c
        .post(
            "/v1/namespaces/ns/views/v",
            replace(&created["metadata"]["view-uuid"]),
        )
        .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["metadata"]["current-version-id"], 2);
    let unknown = json!({ "updates": [ { "action": "set-moon" } ] });
    assert_error(
        c.post("/v1/namespaces/ns/views/v", unknown).await,
        400,
        "BadRequestException",
    );

    let rename = json!({ "source": { "namespace": ["ns"], "name": "v" }, "destination": { "namespace": ["ns"], "name": "w" } });
    assert_eq!(c.post("/v1/views/rename", rename.clone()).await.0, 204);
    assert_error(
        c.post("/v1/views/rename", rename).await,
        404,
        "NoSuchViewException",
    );
    assert_eq!(c.head("/v1/namespaces/ns/views/w").await, 204);
    assert_eq!(c.delete("/v1/namespaces/ns/views/w").await.0, 204);
    assert_error(
        c.delete("/v1/namespaces/ns/views/w").await,
        404,
        "NoSuchViewException",
    );
}
