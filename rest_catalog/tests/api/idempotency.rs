//! Idempotency-Key: replays, binding to the caller, requests still running, reused keys.

use serde_json::{json, Value};

use crate::support::*;

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
