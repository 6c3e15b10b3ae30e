//! Tables: create (also staged), register, load with ETags, vended credentials, listing, drop and purge.

use serde_json::{json, Value};

use crate::support::*;

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
