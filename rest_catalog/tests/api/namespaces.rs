//! Namespaces: errors, properties, listing and nesting.

use serde_json::{json, Value};

use crate::support::*;

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
