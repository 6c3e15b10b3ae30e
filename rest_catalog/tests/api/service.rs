//! The service itself: config, prefix, body limit, migrations, rejections, server errors, metrics.

use serde_json::{json, Value};

use crate::support::*;

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
