//! Table commits and multi-table transactions: requirements, the compare-and-swap, unknown outcomes.

use serde_json::{json, Value};

use crate::support::*;

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

#[tokio::test]
async fn metadata_files_follow_write_metadata_path_and_compression() {
    let c = start(&[]).await;
    c.create_namespace("ns").await;
    c.create_table("ns", "t").await;
    let folder = format!("{}/ns/t/meta-files", c.warehouse.path().display());
    let set = |properties: Value| json!({ "updates": [ { "action": "set-properties", "updates": properties } ] });
    let (status, body) = c
        .post(
            "/v1/namespaces/ns/tables/t",
            set(json!({ "write.metadata.path": folder, "write.metadata.compression-codec": "gzip" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let location = body["metadata-location"].as_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{folder}/00001-")),
        "{location}"
    );
    assert!(location.ends_with(".gz.metadata.json"), "{location}");
    let bytes = std::fs::read(&location).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "the file is gzip");
    let (status, loaded) = c.get("/v1/namespaces/ns/tables/t").await;
    assert_eq!(status, 200, "{loaded}");
    assert_eq!(loaded["metadata-location"], location.as_str());
    assert_eq!(
        loaded["metadata"]["properties"]["write.metadata.compression-codec"],
        "gzip"
    );
    let (status, body) = c
        .post("/v1/namespaces/ns/tables/t", set(json!({ "k": "v" })))
        .await;
    assert_eq!(status, 200, "{body}");
    let next = body["metadata-location"].as_str().unwrap();
    assert!(next.starts_with(&format!("{folder}/00002-")), "{next}");
    let (status, body) = c
        .post(
            "/v1/namespaces/ns/tables/t",
            set(json!({ "write.metadata.compression-codec": "zstd" })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("zstd"),
        "{body}"
    );
}
