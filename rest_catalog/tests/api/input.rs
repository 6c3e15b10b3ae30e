//! Client input the catalog cannot store or the spec forbids: always 400 naming the value.

use serde_json::json;

use crate::support::*;

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
