//! Every endpoint's error paths, and the commit protocol, against a real Postgres.

mod support;

use serde_json::{json, Value};
use support::*;

fn add_column_commit(requirements: Value) -> Value {
    json!({
        "requirements": requirements,
        "updates": [
            { "action": "add-schema", "schema": { "type": "struct", "schema-id": 1, "fields": [
                { "id": 1, "name": "id", "required": true, "type": "long" },
                { "id": 2, "name": "v", "required": false, "type": "string" },
                { "id": 3, "name": "w", "required": false, "type": "int" } ] } },
            { "action": "set-current-schema", "schema-id": -1 }
        ]
    })
}

#[tokio::test]
async fn namespace_errors() {
    let c = start(&[]).await;
    assert_error(
        c.get("/v1/namespaces/missing").await,
        404,
        "NoSuchNamespaceException",
    );
    assert_eq!(c.head("/v1/namespaces/missing").await, 404);
    assert_error(
        c.delete("/v1/namespaces/missing").await,
        404,
        "NoSuchNamespaceException",
    );
    assert_error(
        c.post(
            "/v1/namespaces/missing/properties",
            json!({ "updates": { "a": "b" } }),
        )
        .await,
        404,
        "NoSuchNamespaceException",
    );
    assert_error(
        c.get("/v1/namespaces/missing/tables").await,
        404,
        "NoSuchNamespaceException",
    );
    assert_error(
        c.get("/v1/namespaces/missing/views").await,
        404,
        "NoSuchNamespaceException",
    );
    assert_error(
        c.get("/v1/namespaces?parent=missing").await,
        404,
        "NoSuchNamespaceException",
    );
    assert_error(
        c.post("/v1/namespaces/missing/tables", table_request("t"))
            .await,
        404,
        "NoSuchNamespaceException",
    );

    c.create_namespace("ns").await;
    assert_eq!(c.head("/v1/namespaces/ns").await, 204);
    assert_error(
        c.post("/v1/namespaces", json!({ "namespace": ["ns"] }))
            .await,
        409,
        "AlreadyExistsException",
    );
    assert_error(
        c.post("/v1/namespaces", json!({ "namespace": ["a.b"] }))
            .await,
        400,
        "BadRequestException",
    );
    let reserved = json!({ "namespace": ["x"], "properties": { "exists": "no" } });
    assert_error(
        c.post("/v1/namespaces", reserved).await,
        400,
        "BadRequestException",
    );
    assert_error(
        c.post(
            "/v1/namespaces/ns/properties",
            json!({ "removals": ["x"], "updates": { "x": "1" } }),
        )
        .await,
        400,
        "BadRequestException",
    );
    c.create_table("ns", "t").await;
    assert_error(
        c.delete("/v1/namespaces/ns").await,
        409,
        "NamespaceNotEmptyException",
    );

    // Bad JSON and wrong shapes are 400 with the ErrorModel.
    let resp = c
        .http
        .post(format!("{}/v1/namespaces", c.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "BadRequestException");
    assert_error(
        c.post("/v1/namespaces", json!({ "namespace": "flat" }))
            .await,
        400,
        "BadRequestException",
    );
    assert_error(c.get("/v1/no/such/route").await, 404, "NotFoundException");
}

#[tokio::test]
async fn namespace_properties_listing_and_nesting() {
    let c = start(&[]).await;
    let (status, body) = c
        .post(
            "/v1/namespaces",
            json!({ "namespace": ["a"], "properties": { "owner": "me" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for ns in [json!(["a", "x"]), json!(["a", "y"]), json!(["b"])] {
        assert_eq!(
            c.post("/v1/namespaces", json!({ "namespace": ns })).await.0,
            200
        );
    }
    let (_, body) = c.get("/v1/namespaces").await;
    assert_eq!(body["namespaces"], json!([["a"], ["b"]]));
    let (_, body) = c.get("/v1/namespaces?parent=a").await;
    assert_eq!(body["namespaces"], json!([["a", "x"], ["a", "y"]]));
    assert_eq!(c.get("/v1/namespaces/a%1Fx").await.0, 200);
    let (_, page1) = c.get("/v1/namespaces?parent=a&pageSize=1").await;
    assert_eq!(page1["namespaces"], json!([["a", "x"]]));
    let token = page1["next-page-token"].as_str().unwrap().to_string();
    let (_, page2) = c
        .get(&format!(
            "/v1/namespaces?parent=a&pageSize=1&pageToken={token}"
        ))
        .await;
    assert_eq!(page2["namespaces"], json!([["a", "y"]]));
    assert_error(
        c.delete("/v1/namespaces/a").await,
        409,
        "NamespaceNotEmptyException",
    );

    let (status, body) = c
        .post(
            "/v1/namespaces/a/properties",
            json!({ "removals": ["owner", "nope"], "updates": { "k": "v" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["removed"], json!(["owner"]));
    assert_eq!(body["missing"], json!(["nope"]));
    assert_eq!(body["updated"], json!(["k"]));
    let (_, body) = c.get("/v1/namespaces/a").await;
    assert_eq!(body["properties"], json!({ "k": "v" }));
    assert_eq!(c.delete("/v1/namespaces/b").await.0, 204);
    assert_eq!(c.head("/v1/namespaces/b").await, 404);
}

#[tokio::test]
async fn table_errors() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    c.create_namespace("other").await;
    assert_error(
        c.get("/v1/namespaces/ns/tables/missing").await,
        404,
        "NoSuchTableException",
    );
    assert_eq!(c.head("/v1/namespaces/ns/tables/missing").await, 404);
    assert_error(
        c.delete("/v1/namespaces/ns/tables/missing").await,
        404,
        "NoSuchTableException",
    );
    assert_error(
        c.post(
            "/v1/namespaces/ns/tables/missing",
            add_column_commit(json!([])),
        )
        .await,
        404,
        "NoSuchTableException",
    );
    let rename = |from: &str, to_ns: &str, to: &str| json!({ "source": { "namespace": ["ns"], "name": from }, "destination": { "namespace": [to_ns], "name": to } });
    assert_error(
        c.post("/v1/tables/rename", rename("missing", "ns", "x"))
            .await,
        404,
        "NoSuchTableException",
    );

    c.create_table("ns", "t").await;
    c.create_table("ns", "u").await;
    assert_eq!(c.head("/v1/namespaces/ns/tables/t").await, 204);
    assert_error(
        c.post("/v1/namespaces/ns/tables", table_request("t")).await,
        409,
        "AlreadyExistsException",
    );
    assert_error(
        c.post("/v1/tables/rename", rename("t", "ns", "u")).await,
        409,
        "AlreadyExistsException",
    );
    assert_error(
        c.post("/v1/tables/rename", rename("t", "nowhere", "t"))
            .await,
        404,
        "NoSuchNamespaceException",
    );
    assert_eq!(
        c.post("/v1/tables/rename", rename("t", "other", "t2"))
            .await
            .0,
        204
    );
    assert_eq!(c.get("/v1/namespaces/other/tables/t2").await.0, 200);
    assert_error(
        c.get("/v1/namespaces/ns/tables/t").await,
        404,
        "NoSuchTableException",
    );

    // Unknown update and requirement types, and malformed ones, are 400.
    let unknown_update = json!({ "requirements": [], "updates": [ { "action": "teleport" } ] });
    assert_error(
        c.post("/v1/namespaces/ns/tables/u", unknown_update).await,
        400,
        "BadRequestException",
    );
    let unknown_requirement =
        json!({ "requirements": [ { "type": "assert-moon-phase" } ], "updates": [] });
    assert_error(
        c.post("/v1/namespaces/ns/tables/u", unknown_requirement)
            .await,
        400,
        "BadRequestException",
    );
    let bad_update = json!({ "updates": [ { "action": "set-current-schema", "schema-id": 42 } ] });
    assert_error(
        c.post("/v1/namespaces/ns/tables/u", bad_update).await,
        400,
        "BadRequestException",
    );
    let wrong_ident =
        json!({ "identifier": { "namespace": ["ns"], "name": "zzz" }, "updates": [] });
    assert_error(
        c.post("/v1/namespaces/ns/tables/u", wrong_ident).await,
        400,
        "BadRequestException",
    );
    // A table location outside the warehouse is refused rather than written somewhere unexpected.
    let mut outside = table_request("elsewhere");
    outside["location"] = json!("s3://someone-elses-bucket/t");
    assert_error(
        c.post("/v1/namespaces/ns/tables", outside).await,
        400,
        "BadRequestException",
    );
}

#[tokio::test]
async fn every_requirement_is_checked() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    let created = c.create_table("ns", "t").await;
    let uuid = created["metadata"]["table-uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let failing = [
        json!({ "type": "assert-create" }),
        json!({ "type": "assert-table-uuid", "uuid": "00000000-0000-0000-0000-000000000000" }),
        json!({ "type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 1 }),
        json!({ "type": "assert-last-assigned-field-id", "last-assigned-field-id": 99 }),
        json!({ "type": "assert-current-schema-id", "current-schema-id": 5 }),
        json!({ "type": "assert-last-assigned-partition-id", "last-assigned-partition-id": 5 }),
        json!({ "type": "assert-default-spec-id", "default-spec-id": 5 }),
        json!({ "type": "assert-default-sort-order-id", "default-sort-order-id": 5 }),
    ];
    for requirement in failing {
        let body = add_column_commit(json!([requirement]));
        assert_error(
            c.post("/v1/namespaces/ns/tables/t", body).await,
            409,
            "CommitFailedException",
        );
    }
    let holding = json!([
        { "type": "assert-table-uuid", "uuid": uuid },
        { "type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": null },
        { "type": "assert-last-assigned-field-id", "last-assigned-field-id": 2 },
        { "type": "assert-current-schema-id", "current-schema-id": 0 },
        { "type": "assert-last-assigned-partition-id", "last-assigned-partition-id": 1000 },
        { "type": "assert-default-spec-id", "default-spec-id": 0 },
        { "type": "assert-default-sort-order-id", "default-sort-order-id": 0 }
    ]);
    let (status, body) = c
        .post("/v1/namespaces/ns/tables/t", add_column_commit(holding))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["metadata"]["current-schema-id"], 1);
}

#[tokio::test]
async fn commits_swap_the_catalog_row_and_loads_honour_etags() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    let created = c.create_table("ns", "t").await;
    let first = created["metadata-location"].as_str().unwrap().to_string();
    assert!(
        first.starts_with(c.warehouse.path().to_str().unwrap()),
        "{first}"
    );
    assert!(std::path::Path::new(&first).exists());

    let resp = c
        .http
        .get(format!("{}/v1/namespaces/ns/tables/t", c.base))
        .send()
        .await
        .unwrap();
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let resp = c
        .http
        .get(format!("{}/v1/namespaces/ns/tables/t", c.base))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 304);

    let stale = json!([{ "type": "assert-current-schema-id", "current-schema-id": 0 }]);
    let (status, body) = c
        .post(
            "/v1/namespaces/ns/tables/t",
            add_column_commit(stale.clone()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let second = body["metadata-location"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert!(second.contains("/metadata/00001-"), "{second}");
    // The same requirement no longer holds: a conflict, and nothing changes.
    assert_error(
        c.post("/v1/namespaces/ns/tables/t", add_column_commit(stale))
            .await,
        409,
        "CommitFailedException",
    );

    let db = sql_client(&c.database_url).await;
    let row = db
        .query_one(
            "SELECT metadata_location, previous_metadata_location, iceberg_type FROM lake_catalog.iceberg_tables
             WHERE catalog_name = 'pg_lake' AND table_namespace = 'ns' AND table_name = 't'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), second);
    assert_eq!(row.get::<_, String>(1), first);
    assert_eq!(row.get::<_, String>(2), "TABLE");
    let resp = c
        .http
        .get(format!("{}/v1/namespaces/ns/tables/t", c.base))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "a new version has a new ETag");

    // A writer outside the REST API (the extension) swapping the row is seen at once.
    db.execute(
        "UPDATE lake_catalog.iceberg_tables SET metadata_location = $1 WHERE table_name = 't'",
        &[&first],
    )
    .await
    .unwrap();
    let (_, body) = c.get("/v1/namespaces/ns/tables/t").await;
    assert_eq!(body["metadata-location"], first.as_str());
}

#[tokio::test]
async fn transactions_are_all_or_nothing() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    let a = c.create_table("ns", "a").await;
    let b = c.create_table("ns", "b").await;
    let change = |name: &str, schema_id: i64| {
        let mut body = add_column_commit(
            json!([{ "type": "assert-current-schema-id", "current-schema-id": schema_id }]),
        );
        body["identifier"] = json!({ "namespace": ["ns"], "name": name });
        body
    };
    let failing = json!({ "table-changes": [change("a", 0), change("b", 7)] });
    assert_error(
        c.post("/v1/transactions/commit", failing).await,
        409,
        "CommitFailedException",
    );
    for (name, created) in [("a", &a), ("b", &b)] {
        let (_, body) = c.get(&format!("/v1/namespaces/ns/tables/{name}")).await;
        assert_eq!(
            body["metadata-location"], created["metadata-location"],
            "{name} must be unchanged"
        );
    }
    let missing = json!({ "table-changes": [change("a", 0), change("nope", 0)] });
    assert_error(
        c.post("/v1/transactions/commit", missing).await,
        404,
        "NoSuchTableException",
    );
    let no_ident = json!({ "table-changes": [add_column_commit(json!([]))] });
    assert_error(
        c.post("/v1/transactions/commit", no_ident).await,
        400,
        "BadRequestException",
    );

    let ok = json!({ "table-changes": [change("a", 0), change("b", 0)] });
    let (status, body) = c.post("/v1/transactions/commit", ok).await;
    assert_eq!(status, 204, "{body}");
    for name in ["a", "b"] {
        let (_, body) = c.get(&format!("/v1/namespaces/ns/tables/{name}")).await;
        assert_eq!(body["metadata"]["current-schema-id"], 1);
    }
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_outcome() {
    let c = start(&[]).await;
    let send = || {
        c.http
            .post(format!("{}/v1/namespaces", c.base))
            .header("Idempotency-Key", "0190b9a8-7a3e-7000-8000-000000000001")
            .json(&json!({ "namespace": ["once"] }))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = send().await.unwrap();
    assert_eq!(
        second.status(),
        200,
        "a retry with the same key gets the stored response, not a conflict"
    );
    assert_eq!(
        second.json::<Value>().await.unwrap()["namespace"],
        json!(["once"])
    );
    assert_error(
        c.post("/v1/namespaces", json!({ "namespace": ["once"] }))
            .await,
        409,
        "AlreadyExistsException",
    );
}

#[tokio::test]
async fn stage_create_then_commit_creates_the_table() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    let mut req = table_request("staged");
    req["stage-create"] = json!(true);
    let (status, staged) = c.post("/v1/namespaces/ns/tables", req).await;
    assert_eq!(status, 200, "{staged}");
    assert!(staged.get("metadata-location").is_none());
    assert_eq!(c.head("/v1/namespaces/ns/tables/staged").await, 404);
    let m = &staged["metadata"];
    let commit = json!({
        "requirements": [ { "type": "assert-create" } ],
        "updates": [
            { "action": "assign-uuid", "uuid": m["table-uuid"] },
            { "action": "upgrade-format-version", "format-version": 2 },
            { "action": "add-schema", "schema": m["schemas"][0] },
            { "action": "set-current-schema", "schema-id": -1 },
            { "action": "add-spec", "spec": m["partition-specs"][0] },
            { "action": "set-default-spec", "spec-id": -1 },
            { "action": "set-location", "location": m["location"] },
            { "action": "set-properties", "updates": { "created-by": "test" } }
        ]
    });
    let (status, body) = c
        .post("/v1/namespaces/ns/tables/staged", commit.clone())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["metadata"]["table-uuid"], m["table-uuid"]);
    assert_eq!(body["metadata"]["properties"]["created-by"], "test");
    assert_error(
        c.post("/v1/namespaces/ns/tables/staged", commit).await,
        409,
        "CommitFailedException",
    );
}

#[tokio::test]
async fn register_and_drop_with_purge() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    let created = c.create_table("ns", "t").await;
    let location = created["metadata-location"].as_str().unwrap().to_string();
    let register = json!({ "name": "again", "metadata-location": location });
    let (status, body) = c.post("/v1/namespaces/ns/register", register.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_error(
        c.post("/v1/namespaces/ns/register", register).await,
        409,
        "AlreadyExistsException",
    );
    assert_eq!(c.delete("/v1/namespaces/ns/tables/again").await.0, 204);
    assert!(
        std::path::Path::new(&location).exists(),
        "a drop without purge keeps the files"
    );
    assert_eq!(
        c.delete("/v1/namespaces/ns/tables/t?purgeRequested=true")
            .await
            .0,
        204
    );
    assert!(
        !std::path::Path::new(&location).exists(),
        "a purge removes the table's files"
    );
    assert_eq!(c.delete("/v1/namespaces/ns").await.0, 204);
}

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

#[tokio::test]
async fn unauthenticated_wrong_and_expired_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "static-token-1\n").unwrap();
    let clients = dir.path().join("clients");
    std::fs::write(&clients, "spark:s3cret\n").unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef").unwrap();
    let auth = [
        "--auth",
        "token",
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--oauth-clients-file",
        clients.to_str().unwrap(),
        "--token-signing-key-file",
        key.to_str().unwrap(),
        "--token-ttl-secs",
        "1",
    ];
    let mut c = start_with_auth(&auth, &[]).await;
    assert_error(c.get("/v1/config").await, 401, "NotAuthorizedException");
    let challenge = c
        .http
        .get(format!("{}/v1/namespaces", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    assert_eq!(challenge.headers()["www-authenticate"], "Bearer");
    assert_error(c.get("/v1/namespaces").await, 401, "NotAuthorizedException");
    c.token = Some("wrong".into());
    assert_error(c.get("/v1/namespaces").await, 401, "NotAuthorizedException");
    c.token = Some("static-token-1".into());
    assert_eq!(c.get("/v1/namespaces").await.0, 200);
    c.token = None;
    assert_eq!(c.get("/healthz").await.0, 200, "health needs no token");

    let token_url = format!("{}/v1/oauth/tokens", c.base);
    let bad = c
        .http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "spark"),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    let good: Value = c
        .http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "spark"),
            ("client_secret", "s3cret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(good["token_type"], "bearer");
    c.token = Some(good["access_token"].as_str().unwrap().to_string());
    assert_eq!(c.get("/v1/namespaces").await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = c.get("/v1/namespaces").await;
    assert!(
        expired.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        expired.1
    );
    assert_error(expired, 401, "NotAuthorizedException");
}

#[tokio::test]
async fn config_prefix_operations_and_body_limit() {
    let c = start(&["--prefix", "lake", "--max-body-bytes", "4096"]).await;
    let (status, config) = c.get("/v1/config?warehouse=anything").await;
    assert_eq!(status, 200);
    assert_eq!(config["overrides"]["prefix"], "lake");
    let endpoints: Vec<&str> = config["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for e in [
        "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
        "POST /v1/{prefix}/transactions/commit",
    ] {
        assert!(endpoints.contains(&e), "{e}");
    }
    assert_eq!(
        c.post("/v1/lake/namespaces", json!({ "namespace": ["p"] }))
            .await
            .0,
        200
    );
    assert_error(c.get("/v1/namespaces/p").await, 404, "NotFoundException");
    let big = json!({ "namespace": ["big"], "properties": { "x": "y".repeat(8192) } });
    assert_error(
        c.post("/v1/lake/namespaces", big).await,
        413,
        "PayloadTooLargeException",
    );

    assert_eq!(c.get("/readyz").await.0, 200);
    let resp = c
        .http
        .get(format!("{}/openapi.yaml", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("openapi:"));
    let metrics = c
        .http
        .get(format!("{}/metrics", c.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("rest_catalog_http_requests_total"),
        "{metrics}"
    );
    c.stop().await;
}

#[tokio::test]
async fn migrations_apply_once_under_concurrency() {
    let url = fresh_database().await;
    let stores = futures::future::join_all((0..4).map(|_| {
        let url = url.clone();
        async move {
            rest_catalog::storage::postgres::PostgresStore::connect(
                &url,
                "pg_lake",
                2,
                std::time::Duration::from_secs(5),
            )
            .await
        }
    }))
    .await;
    assert!(stores.iter().all(Result::is_ok));
    let db = sql_client(&url).await;
    let versions: Vec<i32> = db
        .query(
            "SELECT version FROM lake_catalog.schema_version ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i32> = pg_lake_common::catalog::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(versions, expected);
    let owner_is_extension: bool = db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
                 WHERE c.relname = 'iceberg_tables' AND d.deptype = 'e')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!owner_is_extension);
}

#[tokio::test]
async fn a_commit_whose_outcome_is_unknown_is_a_server_error_never_a_conflict() {
    let c = start(&["--commit-retries", "0"]).await;
    c.create_namespace("ns").await;
    c.create_table("ns", "t").await;
    // The catalog's connection dies in the middle of the swap.
    let db = sql_client(&c.database_url).await;
    db.batch_execute(
        "CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$;
         CREATE TRIGGER die BEFORE UPDATE ON lake_catalog.iceberg_tables FOR EACH ROW EXECUTE FUNCTION die();",
    )
    .await
    .unwrap();
    let (status, body) = c
        .post("/v1/namespaces/ns/tables/t", add_column_commit(json!([])))
        .await;
    // PyIceberg raises CommitStateUnknownException for 500, 502 and 504 (503
    // would be ServiceUnavailableError, 409 a false CommitFailedException).
    assert!([500, 502, 504].contains(&status), "{status} {body}");
    let kind = body["error"]["type"].as_str().unwrap();
    assert!(
        ["InternalServerError", "CommitStateUnknownException"].contains(&kind),
        "{body}"
    );
    db.batch_execute("DROP TRIGGER die ON lake_catalog.iceberg_tables")
        .await
        .unwrap();
    let (status, body) = c
        .post("/v1/namespaces/ns/tables/t", add_column_commit(json!([])))
        .await;
    assert_eq!(
        status, 200,
        "the catalog recovers once the database does: {body}"
    );
}

/// A request creating `name` through a staged create's commit, as PyIceberg
/// sends it (always with a set-location update).
fn staged_create_commit(location: &str) -> Value {
    let req = table_request("x");
    json!({
        "requirements": [ { "type": "assert-create" } ],
        "updates": [
            { "action": "upgrade-format-version", "format-version": 2 },
            { "action": "add-schema", "schema": req["schema"] },
            { "action": "set-current-schema", "schema-id": -1 },
            { "action": "set-location", "location": location }
        ]
    })
}

fn view_request(name: &str) -> Value {
    json!({
        "name": name,
        "schema": { "type": "struct", "schema-id": 0, "fields": [ { "id": 1, "name": "x", "required": false, "type": "long" } ] },
        "view-version": {
            "version-id": 1, "timestamp-ms": 1700000000000i64, "schema-id": 0,
            "summary": { "engine-name": "test" },
            "representations": [ { "type": "sql", "sql": "SELECT 1 AS x", "dialect": "duckdb" } ],
            "default-namespace": ["ns"]
        },
        "properties": {}
    })
}

async fn row_count(db: &tokio_postgres::Client, name: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM lake_catalog.iceberg_tables WHERE table_name = $1",
        &[&name],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn locations_outside_the_warehouse_are_refused() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    let root = c.warehouse.path().to_str().unwrap().to_string();
    let outside = tempfile::tempdir().unwrap();
    let db = sql_client(&c.database_url).await;
    for location in [
        "/".to_string(),
        root.clone(),
        format!("file://{root}"),
        format!("{root}-sibling/t"),
        format!("{root}/ns/../../escape"),
        outside.path().to_str().unwrap().to_string(),
    ] {
        let mut table = table_request("t");
        table["location"] = json!(location);
        let (status, body) = c.post("/v1/namespaces/ns/tables", table).await;
        assert_error((status, body.clone()), 400, "BadRequestException");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&location),
            "the error names the location: {body}"
        );
        let mut view = view_request("v");
        view["location"] = json!(location);
        assert_error(
            c.post("/v1/namespaces/ns/views", view).await,
            400,
            "BadRequestException",
        );
        assert_error(
            c.post(
                "/v1/namespaces/ns/tables/s",
                staged_create_commit(&location),
            )
            .await,
            400,
            "BadRequestException",
        );
    }
    assert_eq!(row_count(&db, "t").await + row_count(&db, "v").await, 0);
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing is written outside the warehouse"
    );

    // A commit may not move a table out of the warehouse either.
    c.create_table("ns", "t").await;
    let move_out = json!({ "updates": [ { "action": "set-location", "location": "/" } ] });
    assert_error(
        c.post("/v1/namespaces/ns/tables/t", move_out).await,
        400,
        "BadRequestException",
    );
}

#[tokio::test]
async fn purges_never_delete_the_root_or_another_tables_files() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    let root = c.warehouse.path().to_str().unwrap().to_string();
    let db = sql_client(&c.database_url).await;
    let t = c.create_table("ns", "t").await;
    let t_metadata = t["metadata-location"].as_str().unwrap().to_string();
    let t_location = t["metadata"]["location"].as_str().unwrap().to_string();

    // A second table sharing t's directory (inside the warehouse, so allowed)
    // cannot be purged while t keeps its metadata there.
    let mut shared = table_request("shared");
    shared["location"] = json!(t_location);
    let (status, body) = c.post("/v1/namespaces/ns/tables", shared).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = c
        .delete("/v1/namespaces/ns/tables/shared?purgeRequested=true")
        .await;
    assert_error((status, body.clone()), 400, "BadRequestException");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("ns.t"),
        "{body}"
    );
    assert_eq!(
        row_count(&db, "shared").await,
        1,
        "a refused purge drops nothing"
    );
    assert!(std::path::Path::new(&t_metadata).exists());
    // The namespace directory holds t: a table located there cannot purge it.
    let mut parent = table_request("parent");
    parent["location"] = json!(format!("{root}/ns"));
    assert_eq!(c.post("/v1/namespaces/ns/tables", parent).await.0, 200);
    assert_error(
        c.delete("/v1/namespaces/ns/tables/parent?purgeRequested=true")
            .await,
        400,
        "BadRequestException",
    );
    assert!(std::path::Path::new(&t_metadata).exists());

    // A row written by another writer whose metadata says the table is the
    // warehouse root: its purge is refused and the root is left alone.
    let mut metadata: Value = serde_json::from_slice(&std::fs::read(&t_metadata).unwrap()).unwrap();
    metadata["location"] = json!(root);
    let rogue = format!("{root}/rogue/metadata/00000-rogue.metadata.json");
    std::fs::create_dir_all(format!("{root}/rogue/metadata")).unwrap();
    std::fs::write(&rogue, serde_json::to_vec(&metadata).unwrap()).unwrap();
    db.execute(
        "INSERT INTO lake_catalog.iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, iceberg_type)
         VALUES ('pg_lake', 'ns', 'rogue', $1, 'TABLE')",
        &[&rogue],
    )
    .await
    .unwrap();
    assert_error(
        c.delete("/v1/namespaces/ns/tables/rogue?purgeRequested=true")
            .await,
        400,
        "BadRequestException",
    );
    assert!(std::path::Path::new(&rogue).exists());
    assert!(std::path::Path::new(&t_metadata).exists());
    // Registering that file is refused too: its table location is not inside the warehouse.
    assert_error(
        c.post(
            "/v1/namespaces/ns/register",
            json!({ "name": "again", "metadata-location": rogue }),
        )
        .await,
        400,
        "BadRequestException",
    );

    // Once the others are gone, t's purge proceeds.
    for name in ["shared", "parent", "rogue"] {
        assert_eq!(
            c.delete(&format!("/v1/namespaces/ns/tables/{name}"))
                .await
                .0,
            204
        );
    }
    assert_eq!(
        c.delete("/v1/namespaces/ns/tables/t?purgeRequested=true")
            .await
            .0,
        204
    );
    assert!(!std::path::Path::new(&t_metadata).exists());
    assert!(std::path::Path::new(&root).exists());
}

#[tokio::test]
async fn register_checks_the_metadata_file() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    let root = c.warehouse.path().to_str().unwrap().to_string();
    let t = c.create_table("ns", "t").await;
    let t_metadata = t["metadata-location"].as_str().unwrap().to_string();

    let missing = format!("{root}/ns/gone/metadata/00000-gone.metadata.json");
    let (status, body) = c
        .post(
            "/v1/namespaces/ns/register",
            json!({ "name": "gone", "metadata-location": missing }),
        )
        .await;
    assert_error((status, body.clone()), 400, "BadRequestException");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&missing),
        "{body}"
    );

    let garbage = format!("{root}/ns/garbage.metadata.json");
    std::fs::write(&garbage, b"{\"not\": \"metadata\"}").unwrap();
    assert_error(
        c.post(
            "/v1/namespaces/ns/register",
            json!({ "name": "garbage", "metadata-location": garbage }),
        )
        .await,
        400,
        "BadRequestException",
    );

    // A metadata file outside the warehouse is refused before it is read.
    let outside = tempfile::tempdir().unwrap();
    let copy = outside.path().join("00000-copy.metadata.json");
    std::fs::copy(&t_metadata, &copy).unwrap();
    assert_error(
        c.post(
            "/v1/namespaces/ns/register",
            json!({ "name": "copy", "metadata-location": copy.to_str().unwrap() }),
        )
        .await,
        400,
        "BadRequestException",
    );
    assert_error(
        c.post(
            "/v1/namespaces/missing/register",
            json!({ "name": "x", "metadata-location": t_metadata }),
        )
        .await,
        404,
        "NoSuchNamespaceException",
    );
}

#[tokio::test]
async fn creates_with_a_location_still_need_the_namespace() {
    let c = start(&[]).await;
    let root = c.warehouse.path().to_str().unwrap().to_string();
    let db = sql_client(&c.database_url).await;
    let mut table = table_request("t");
    table["location"] = json!(format!("{root}/missing/t"));
    assert_error(
        c.post("/v1/namespaces/missing/tables", table).await,
        404,
        "NoSuchNamespaceException",
    );
    let mut view = view_request("v");
    view["location"] = json!(format!("{root}/missing/v"));
    assert_error(
        c.post("/v1/namespaces/missing/views", view).await,
        404,
        "NoSuchNamespaceException",
    );
    assert_error(
        c.post(
            "/v1/namespaces/missing/tables/s",
            staged_create_commit(&format!("{root}/missing/s")),
        )
        .await,
        404,
        "NoSuchNamespaceException",
    );
    let rows: i64 = db
        .query_one("SELECT count(*) FROM lake_catalog.iceberg_tables", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn a_create_racing_a_namespace_drop_does_not_outlive_it() {
    let c = start(&[]).await;
    c.create_namespace("racy").await;
    let db = sql_client(&c.database_url).await;
    // A drop of the namespace in progress: its rows locked and deleted, not yet committed.
    db.batch_execute(
        "BEGIN;
         SELECT 1 FROM lake_catalog.iceberg_namespace_properties WHERE namespace = 'racy' FOR UPDATE;
         DELETE FROM lake_catalog.iceberg_namespace_properties WHERE namespace = 'racy';",
    )
    .await
    .unwrap();
    let create = {
        let http = c.http.clone();
        let url = format!("{}/v1/namespaces/racy/tables", c.base);
        tokio::spawn(async move {
            let resp = http
                .post(url)
                .json(&table_request("t"))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!create.is_finished(), "the create waits for the drop");
    db.batch_execute("COMMIT").await.unwrap();
    assert_error(create.await.unwrap(), 404, "NoSuchNamespaceException");
    assert_eq!(row_count(&db, "t").await, 0);
}

#[tokio::test]
async fn a_transaction_rechecks_requirement_only_changes_when_it_swaps() {
    let c = start(&["--commit-retries", "0"]).await;
    c.create_namespace("ns").await;
    let a = c.create_table("ns", "a").await;
    let z0 = c.create_table("ns", "z").await;
    let (status, z1) = c
        .post("/v1/namespaces/ns/tables/z", add_column_commit(json!([])))
        .await;
    assert_eq!(status, 200, "{z1}");
    let z0_location = z0["metadata-location"].as_str().unwrap().to_string();
    // Another writer moves z back to its first version just as the
    // transaction swaps a (a trigger stands in for the concurrent commit).
    let db = sql_client(&c.database_url).await;
    db.batch_execute(&format!(
        "CREATE FUNCTION concurrent_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF pg_trigger_depth() = 1 THEN
             UPDATE lake_catalog.iceberg_tables SET metadata_location = '{z0_location}'
              WHERE table_name = 'z';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER concurrent_commit BEFORE UPDATE ON lake_catalog.iceberg_tables
           FOR EACH ROW WHEN (NEW.table_name = 'a') EXECUTE FUNCTION concurrent_commit();"
    ))
    .await
    .unwrap();
    let mut change_a =
        add_column_commit(json!([{ "type": "assert-current-schema-id", "current-schema-id": 0 }]));
    change_a["identifier"] = json!({ "namespace": ["ns"], "name": "a" });
    // z: requirements only, true when staged (schema 1), false at swap time.
    let check_z = json!({
        "identifier": { "namespace": ["ns"], "name": "z" },
        "requirements": [ { "type": "assert-current-schema-id", "current-schema-id": 1 } ],
        "updates": []
    });
    assert_error(
        c.post(
            "/v1/transactions/commit",
            json!({ "table-changes": [change_a, check_z] }),
        )
        .await,
        409,
        "CommitFailedException",
    );
    db.batch_execute("DROP TRIGGER concurrent_commit ON lake_catalog.iceberg_tables")
        .await
        .unwrap();
    let (_, now) = c.get("/v1/namespaces/ns/tables/a").await;
    assert_eq!(
        now["metadata-location"], a["metadata-location"],
        "a is unchanged: the transaction did not apply"
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A commit appending snapshot `id` to `main` of a table at `location`, as
/// PyIceberg sends it (asserting `main` is still at `parent`).
fn append_commit(location: &str, id: i64, parent: Option<i64>) -> Value {
    json!({
        "requirements": [ { "type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": parent } ],
        "updates": [
            { "action": "add-snapshot", "snapshot": {
                "snapshot-id": id, "parent-snapshot-id": parent, "sequence-number": 1,
                "timestamp-ms": now_ms() + id,
                "manifest-list": format!("{location}/metadata/snap-{id}.avro"),
                "summary": { "operation": "append" }, "schema-id": 0 } },
            { "action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": id }
        ]
    })
}

/// POSTs `body` with an Idempotency-Key; the future owns what it needs, so it can be spawned.
fn post_with_key(
    c: &TestCatalog,
    path: &str,
    key: &str,
    body: &Value,
) -> impl std::future::Future<Output = (u16, String)> + Send + 'static {
    let mut req = c
        .http
        .post(format!("{}{path}", c.base))
        .header("Idempotency-Key", key)
        .json(body);
    if let Some(token) = &c.token {
        req = req.bearer_auth(token);
    }
    async move {
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

/// One text per stored Idempotency-Key row: `expr` over `lake_catalog.rest_idempotency_keys`.
async fn idempotency_rows(c: &TestCatalog, expr: &str) -> Vec<String> {
    sql_client(&c.database_url)
        .await
        .query(
            &format!("SELECT {expr} FROM lake_catalog.rest_idempotency_keys"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_replayed_commit_gets_the_same_response_and_no_second_snapshot() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    let t = c.create_table("ns", "t").await;
    let location = t["metadata"]["location"].as_str().unwrap();
    let commit = append_commit(location, 1, None);
    let key = "0190b9a8-7a3e-7000-8000-00000000c0de";
    let path = "/v1/namespaces/ns/tables/t";
    // Two at once (the second arrives while the first runs), then a late retry.
    let (first, second) = tokio::join!(
        post_with_key(&c, path, key, &commit),
        post_with_key(&c, path, key, &commit)
    );
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(
        second, first,
        "a concurrent duplicate gets the same outcome"
    );
    let third = post_with_key(&c, path, key, &commit).await;
    assert_eq!(third, first, "a retry gets the identical response");
    let (_, loaded) = c.get(path).await;
    assert_eq!(loaded["metadata"]["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(
        loaded["metadata"]["snapshot-log"].as_array().unwrap().len(),
        1
    );
    let first: Value = serde_json::from_str(&first.1).unwrap();
    assert_eq!(loaded["metadata-location"], first["metadata-location"]);
    // Without the key, the same request is a new commit whose requirement fails.
    assert_error(c.post(path, commit).await, 409, "CommitFailedException");

    // A terminal 4xx outcome is recorded too: the retry does not run again
    // even though it would now succeed.
    let create = json!({ "namespace": ["later"], "properties": {} });
    let ns_key = "0190b9a8-7a3e-7000-8000-00000000beef";
    let (status, _) = post_with_key(
        &c,
        "/v1/namespaces/later/properties",
        ns_key,
        &json!({ "updates": { "a": "b" } }),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(c.post("/v1/namespaces", create).await.0, 200);
    let (status, body) = post_with_key(
        &c,
        "/v1/namespaces/later/properties",
        ns_key,
        &json!({ "updates": { "a": "b" } }),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (_, ns) = c.get("/v1/namespaces/later").await;
    assert_eq!(ns["properties"], json!({}));
}

#[tokio::test]
async fn idempotency_keys_are_bound_to_the_caller() {
    std::env::set_var("REST_CATALOG_TOKENS", "token-of-alice,token-of-bob");
    let mut c = start_with_auth(&["--auth", "token"], &[]).await;
    std::env::remove_var("REST_CATALOG_TOKENS");
    let key = "0190b9a8-7a3e-7000-8000-0000000a11ce";
    let body = json!({ "namespace": ["shared"] });
    c.token = Some("token-of-alice".into());
    assert_eq!(post_with_key(&c, "/v1/namespaces", key, &body).await.0, 200);
    assert_eq!(post_with_key(&c, "/v1/namespaces", key, &body).await.0, 200);
    c.token = Some("token-of-bob".into());
    let (status, text) = post_with_key(&c, "/v1/namespaces", key, &body).await;
    assert_eq!(
        status, 409,
        "another caller's key is not replayed to bob: {text}"
    );
    let keys = idempotency_rows(&c, "idempotency_key").await;
    assert!(
        keys.iter().all(|k| !k.contains("token-of")),
        "no token is stored: {keys:?}"
    );
}

#[tokio::test]
async fn etags_depend_on_the_snapshot_mode() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    c.create_table("ns", "t").await;
    let url = format!("{}/v1/namespaces/ns/tables/t", c.base);
    let load = |query: &'static str, tag: Option<String>| {
        let mut req = c.http.get(format!("{url}{query}"));
        if let Some(tag) = tag {
            req = req.header("If-None-Match", tag);
        }
        req.send()
    };
    let refs = load("?snapshots=refs", None).await.unwrap();
    let refs_tag = refs.headers()["etag"].to_str().unwrap().to_string();
    let all = load("", None).await.unwrap();
    let all_tag = all.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(refs_tag, all_tag);
    assert_eq!(
        load("", Some(refs_tag.clone())).await.unwrap().status(),
        200,
        "the refs representation's tag does not validate the full one"
    );
    assert_eq!(
        load("?snapshots=all", Some(refs_tag.clone()))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        load("?snapshots=refs", Some(refs_tag.clone()))
            .await
            .unwrap()
            .status(),
        304
    );
    assert_eq!(
        load("", Some(format!("W/{all_tag}")))
            .await
            .unwrap()
            .status(),
        304,
        "weak tags are accepted"
    );
    assert_eq!(
        load("", Some(format!("\"other\", {all_tag}")))
            .await
            .unwrap()
            .status(),
        304,
        "a list of tags is accepted"
    );
    assert_error(
        c.get("/v1/namespaces/ns/tables/t?snapshots=some").await,
        400,
        "BadRequestException",
    );
}

#[tokio::test]
async fn vended_credentials_only_go_to_loads_and_creates_that_ask() {
    let secret = "vended-secret-7f3a";
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIAVENDTEST");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", secret);
    // Nothing listens at the endpoint: staged creates never touch storage.
    let c = start_with_warehouse(
        Some("s3://bucket/wh"),
        &["--auth", "none"],
        &[
            "--s3-region",
            "us-east-1",
            "--s3-endpoint",
            "http://127.0.0.1:9",
            "--s3-url-style",
            "path",
            "--s3-use-ssl",
            "false",
            "--vend-credentials",
        ],
    )
    .await;
    let (status, config) = c.get("/v1/config").await;
    assert_eq!(status, 200);
    assert!(!config.to_string().contains(secret), "{config}");
    assert_eq!(config["defaults"]["s3.endpoint"], "http://127.0.0.1:9");
    c.create_namespace("ns").await;

    let mut staged = table_request("t");
    staged["stage-create"] = json!(true);
    let (status, plain) = c.post("/v1/namespaces/ns/tables", staged.clone()).await;
    assert_eq!(status, 200, "{plain}");
    assert!(
        !plain.to_string().contains(secret),
        "not asked for: {plain}"
    );
    assert!(plain.get("storage-credentials").is_none());

    let send = |delegate: bool| {
        let mut req = c
            .http
            .post(format!("{}/v1/namespaces/ns/tables", c.base))
            .header("Idempotency-Key", "0190b9a8-7a3e-7000-8000-0000000c7ed5")
            .json(&staged);
        if delegate {
            req = req.header("X-Iceberg-Access-Delegation", "vended-credentials");
        }
        req.send()
    };
    for attempt in ["first", "replay"] {
        let resp = send(true).await.unwrap();
        assert_eq!(resp.status(), 200, "{attempt}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["config"]["s3.secret-access-key"], secret, "{attempt}");
        assert_eq!(body["config"]["s3.endpoint"], "http://127.0.0.1:9");
        let creds = &body["storage-credentials"][0];
        assert_eq!(creds["prefix"], "s3://bucket/wh/ns/t", "{attempt}");
        assert_eq!(creds["config"]["s3.access-key-id"], "AKIAVENDTEST");
    }
    let replay_without: Value = send(false).await.unwrap().json().await.unwrap();
    assert!(!replay_without.to_string().contains(secret));

    let stored = idempotency_rows(&c, "idempotency_key || response_body").await;
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(secret), "never persisted: {stored:?}");
    assert!(!stored[0].contains("AKIAVENDTEST"));
}

#[tokio::test]
async fn rejections_use_the_error_model() {
    let c = start(&[]).await;
    // 405, keeping the Allow header.
    let resp = c
        .http
        .put(format!("{}/v1/namespaces", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert!(resp.headers().contains_key("allow"));
    let body: Value = resp.json().await.unwrap();
    assert_error((405, body), 405, "MethodNotAllowedException");
    // A path segment that is not UTF-8.
    assert_error(
        c.get("/v1/namespaces/%FF").await,
        400,
        "BadRequestException",
    );
    // A body larger than the limit without a Content-Length (chunked).
    let small = start(&["--max-body-bytes", "1024"]).await;
    let chunks = futures::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 512]))),
    );
    let resp = small
        .http
        .post(format!("{}/v1/namespaces", small.base))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_error((status, body), 413, "PayloadTooLargeException");
    // The token endpoint answers in OAuth's shape, also to a wrong content type.
    let resp = c
        .http
        .post(format!("{}/v1/oauth/tokens", c.base))
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
}

#[tokio::test]
async fn tables_and_views_are_listed_in_pages() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    for name in ["c", "a", "b"] {
        c.create_table("ns", name).await;
        let (status, body) = c
            .post("/v1/namespaces/ns/views", view_request(&format!("v{name}")))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    for (kind, expected) in [("tables", ["a", "b", "c"]), ("views", ["va", "vb", "vc"])] {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let query = match &token {
                Some(t) => format!("?pageSize=2&pageToken={t}"),
                None => "?pageSize=2".to_string(),
            };
            let (status, page) = c.get(&format!("/v1/namespaces/ns/{kind}{query}")).await;
            assert_eq!(status, 200, "{page}");
            let names: Vec<String> = page["identifiers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_string())
                .collect();
            assert!(names.len() <= 2, "{page}");
            seen.extend(names);
            match page["next-page-token"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{kind}");
        let (_, all) = c.get(&format!("/v1/namespaces/ns/{kind}")).await;
        assert_eq!(all["identifiers"].as_array().unwrap().len(), 3);
        assert!(all.get("next-page-token").is_none());
    }
}

#[tokio::test]
async fn metrics_reports_are_accepted() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    c.create_table("ns", "t").await;
    let report = json!({
        "report-type": "commit-report", "table-name": "ns.t", "snapshot-id": 1,
        "sequence-number": 1, "operation": "append", "metrics": {}
    });
    let (status, body) = c
        .post("/v1/namespaces/ns/tables/t/metrics", report.clone())
        .await;
    assert_eq!(status, 204, "{body}");
    assert_error(
        c.post("/v1/namespaces/ns/tables/missing/metrics", report)
            .await,
        404,
        "NoSuchTableException",
    );
}

#[test]
fn the_server_refuses_to_start_without_an_auth_choice() {
    std::env::remove_var("REST_CATALOG_AUTH");
    let without = <rest_catalog::Args as clap::Parser>::try_parse_from([
        "rest_catalog",
        "--database-url",
        "postgres://postgres@127.0.0.1/postgres",
        "--warehouse",
        "/tmp/w",
    ]);
    let err = without.unwrap_err().to_string();
    assert!(err.contains("--auth"), "{err}");
}

#[tokio::test]
async fn a_duplicate_of_a_request_still_running_is_never_a_conflict() {
    let c = start(&[]).await;
    c.create_namespace("busy").await;
    let t = c.create_table("busy", "t").await;
    let location = t["metadata"]["location"].as_str().unwrap();
    let commit = append_commit(location, 1, None);
    let commit_path = "/v1/namespaces/busy/tables/t";
    let props_path = "/v1/namespaces/busy/properties";
    let props = json!({ "updates": { "owner": "ops" } });
    let (commit_key, props_key) = (
        "0190b9a8-7a3e-7000-8000-0000000f1e57",
        "0190b9a8-7a3e-7000-8000-0000000f1e58",
    );
    // Another session holds the rows both requests must change, so their first
    // attempts stay in flight for longer than a duplicate waits.
    let db = sql_client(&c.database_url).await;
    db.batch_execute(
        "BEGIN;
         SELECT 1 FROM lake_catalog.iceberg_tables WHERE table_name = 't' FOR UPDATE;
         LOCK TABLE lake_catalog.iceberg_namespace_properties IN EXCLUSIVE MODE;",
    )
    .await
    .unwrap();
    let first_commit = tokio::spawn(post_with_key(&c, commit_path, commit_key, &commit));
    let first_props = tokio::spawn(post_with_key(&c, props_path, props_key, &props));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let (commit_dup, props_dup) = tokio::join!(
        post_with_key(&c, commit_path, commit_key, &commit),
        post_with_key(&c, props_path, props_key, &props)
    );
    // The commit's outcome is not known yet: never 409, which a client would take
    // as a refusal and clean up the files the first attempt is committing.
    let body: Value = serde_json::from_str(&commit_dup.1).unwrap();
    assert_error((commit_dup.0, body), 500, "CommitStateUnknownException");
    let body: Value = serde_json::from_str(&props_dup.1).unwrap();
    assert_error((props_dup.0, body), 503, "ServiceUnavailableException");

    db.batch_execute("ROLLBACK").await.unwrap();
    let first_commit = first_commit.await.unwrap();
    let first_props = first_props.await.unwrap();
    assert_eq!(first_commit.0, 200, "{}", first_commit.1);
    assert_eq!(first_props.0, 200, "{}", first_props.1);
    // Now that they finished, a retry gets their outcome.
    assert_eq!(
        post_with_key(&c, commit_path, commit_key, &commit).await,
        first_commit
    );
    assert_eq!(
        post_with_key(&c, props_path, props_key, &props).await,
        first_props
    );
    let (_, loaded) = c.get(commit_path).await;
    assert_eq!(loaded["metadata"]["snapshots"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused() {
    let c = start(&[]).await;
    let key = "0190b9a8-7a3e-7000-8000-00000000a11e";
    let (status, _) = post_with_key(
        &c,
        "/v1/namespaces",
        key,
        &json!({ "namespace": ["first"] }),
    )
    .await;
    assert_eq!(status, 200);
    // The same key with another body is not a retry: neither replayed nor run.
    let (status, body) = post_with_key(
        &c,
        "/v1/namespaces",
        key,
        &json!({ "namespace": ["second"] }),
    )
    .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_error((status, body), 422, "UnprocessableEntityException");
    assert_eq!(c.head("/v1/namespaces/second").await, 404);
    // The real retry still gets its outcome.
    let (status, _) = post_with_key(
        &c,
        "/v1/namespaces",
        key,
        &json!({ "namespace": ["first"] }),
    )
    .await;
    assert_eq!(status, 200);
}

/// Asserts a 400 `BadRequestException` whose message contains `names`.
fn assert_bad_request(actual: (u16, Value), names: &str) {
    let message = actual.1["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_error(actual, 400, "BadRequestException");
    assert!(message.contains(names), "{message:?} should name {names:?}");
}

#[tokio::test]
async fn client_input_the_catalog_cannot_store_is_a_bad_request() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    let long = "t".repeat(10_000);
    // NUL bytes, in paths, bodies and queries.
    assert_bad_request(c.get("/v1/namespaces/a%00b").await, "NUL");
    assert_bad_request(c.get("/v1/namespaces/ns/tables/a%00b").await, "NUL");
    assert_bad_request(c.delete("/v1/namespaces/ns/views/a%00b").await, "NUL");
    assert_bad_request(
        c.post("/v1/namespaces", json!({ "namespace": ["a\u{0}b"] }))
            .await,
        "NUL",
    );
    assert_bad_request(
        c.post(
            "/v1/namespaces",
            json!({ "namespace": ["p"], "properties": { "k\u{0}": "v" } }),
        )
        .await,
        "NUL",
    );
    assert_bad_request(
        c.post(
            "/v1/namespaces/ns/properties",
            json!({ "updates": { "k": "v\u{0}" } }),
        )
        .await,
        "NUL",
    );
    assert_bad_request(
        c.get("/v1/namespaces/ns/tables?pageToken=a%00").await,
        "NUL",
    );
    assert_bad_request(
        c.post("/v1/namespaces/ns/tables", table_request("a\u{0}b"))
            .await,
        "NUL",
    );
    let mut located = table_request("located");
    located["location"] = json!(format!("{}/ns/a\u{0}b", c.warehouse.path().display()));
    assert_bad_request(c.post("/v1/namespaces/ns/tables", located).await, "NUL");
    assert_bad_request(
        c.post(
            "/v1/tables/rename",
            json!({ "source": { "namespace": ["ns"], "name": "t" },
                    "destination": { "namespace": ["ns"], "name": "t\u{0}" } }),
        )
        .await,
        "NUL",
    );
    // Names longer than any file system's segment or the catalog's columns.
    assert_bad_request(
        c.post("/v1/namespaces/ns/tables", table_request(&long))
            .await,
        "10000 bytes",
    );
    assert_bad_request(
        c.post("/v1/namespaces/ns/views", view_request(&long)).await,
        "10000 bytes",
    );
    assert_bad_request(
        c.get(&format!("/v1/namespaces/ns/tables/{long}")).await,
        "10000 bytes",
    );
    assert_bad_request(
        c.post("/v1/namespaces", json!({ "namespace": [long] }))
            .await,
        "10000 bytes",
    );
    let mut deep = table_request("deep");
    deep["location"] = json!(format!(
        "{}/ns/{}",
        c.warehouse.path().display(),
        "d".repeat(300)
    ));
    assert_bad_request(c.post("/v1/namespaces/ns/tables", deep).await, "segment");
    // Nothing was created along the way.
    let (_, tables) = c.get("/v1/namespaces/ns/tables").await;
    assert_eq!(tables["identifiers"], json!([]), "{tables}");
}

#[tokio::test]
async fn server_error_bodies_name_the_request_not_the_cause() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    // A catalog row whose metadata file is not there (written by another engine
    // that lost the file): loading it is the server's failure, not the client's.
    let missing = format!(
        "{}/ns/t/metadata/00000-gone.metadata.json",
        c.warehouse.path().display()
    );
    sql_client(&c.database_url)
        .await
        .execute(
            "INSERT INTO lake_catalog.iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, iceberg_type)
             VALUES ($1, 'ns', 't', $2, 'TABLE')",
            &[&pg_lake_common::wiring::DEFAULT_CATALOG_NAME, &missing],
        )
        .await
        .unwrap();
    let resp = c
        .http
        .get(format!("{}/v1/namespaces/ns/tables/t", c.base))
        .header("x-request-id", "probe-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()["x-request-id"], "probe-42");
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(body["error"]["type"], "InternalServerError", "{body}");
    assert!(message.contains("request id probe-42"), "{message}");
    let warehouse = c.warehouse.path().to_str().unwrap();
    for internal in [warehouse, "No such file", "object", "metadata.json"] {
        assert!(
            !message.contains(internal),
            "{message} exposes {internal:?}"
        );
    }
    // Without a usable id of the client's, the server makes one.
    let resp = c
        .http
        .get(format!("{}/v1/namespaces/ns/tables/t", c.base))
        .header("x-request-id", "has spaces")
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "{id}");
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&id),
        "{body}"
    );
}

#[tokio::test]
async fn page_sizes_and_decimals_out_of_range_are_bad_requests() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    c.create_table("ns", "t").await;
    for path in [
        "/v1/namespaces?pageSize=0",
        "/v1/namespaces/ns/tables?pageSize=0",
        "/v1/namespaces/ns/views?pageSize=0",
    ] {
        assert_bad_request(c.get(path).await, "pageSize");
    }
    assert_eq!(c.get("/v1/namespaces/ns/tables?pageSize=1").await.0, 200);
    let with_type = |name: &str, t: &str| {
        let mut req = table_request(name);
        req["schema"]["fields"][1]["type"] = json!(t);
        req
    };
    for bad in [
        "decimal(99,200)",
        "decimal(39,0)",
        "decimal(0,0)",
        "decimal(10,11)",
    ] {
        assert_bad_request(
            c.post("/v1/namespaces/ns/tables", with_type("d", bad))
                .await,
            "decimal",
        );
    }
    let (status, body) = c
        .post("/v1/namespaces/ns/tables", with_type("d", "decimal(38,38)"))
        .await;
    assert_eq!(status, 200, "{body}");
    // Schemas added by a commit are checked too.
    let mut commit = add_column_commit(json!([]));
    commit["updates"][0]["schema"]["fields"][2]["type"] = json!("decimal(99,200)");
    assert_bad_request(
        c.post("/v1/namespaces/ns/tables/t", commit).await,
        "decimal",
    );
}

#[tokio::test]
async fn metrics_labels_stay_bounded_whatever_the_method() {
    let c = start(&[]).await;
    let lines = |text: &Value| text.as_str().unwrap().lines().count();
    // Two scrapes first, so that /metrics' own series exist.
    c.get("/metrics").await;
    let before = lines(&c.get("/metrics").await.1);
    for i in 0..500 {
        let method = reqwest::Method::from_bytes(format!("M{i:04}X").as_bytes()).unwrap();
        let (status, _) = c.call(method, "/v1/namespaces", None).await;
        assert_eq!(status, 405);
    }
    let text = c.get("/metrics").await.1;
    let after = lines(&text);
    assert!(
        after - before <= 40,
        "500 requests with unknown methods grew /metrics from {before} to {after} lines"
    );
    assert!(text.as_str().unwrap().contains("method=\"other\""));
    assert!(!text.as_str().unwrap().contains("M0001X"));
}

#[tokio::test]
async fn the_token_endpoint_is_rate_limited_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients");
    std::fs::write(&clients, "spark:s3cret\ntrino:s3cret2\n").unwrap();
    let auth = [
        "--auth",
        "token",
        "--oauth-clients-file",
        clients.to_str().unwrap(),
    ];
    let c = start_with_auth(&auth, &[]).await;
    let token_url = format!("{}/v1/oauth/tokens", c.base);
    let request = |id: &'static str, secret: &'static str| {
        c.http.post(&token_url).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
    };
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let resp = request("spark", "guess").send().await.unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            let retry_after: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&retry_after), "{retry_after}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        }
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429, "{statuses:?}");
    // Even the right secret waits now; another client does not.
    assert_eq!(
        request("spark", "s3cret").send().await.unwrap().status(),
        429
    );
    assert_eq!(
        request("trino", "s3cret2").send().await.unwrap().status(),
        200
    );
}
