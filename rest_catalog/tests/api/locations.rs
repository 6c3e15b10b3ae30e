//! Locations: confinement to the warehouse, and purges that never delete what others keep.

use serde_json::{json, Value};

use crate::support::*;

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
