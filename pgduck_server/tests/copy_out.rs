//! `COPY ... TO STDOUT` through tokio-postgres' `copy_out` (extended protocol).

mod common;

use common::Server;
use futures::TryStreamExt;
use tokio_postgres::error::SqlState;

fn cache_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pgduck-copy-out-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn leftovers(cache: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(cache.join("tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn copy_to_stdout_streams_the_file_duckdb_wrote() {
    let cache = cache_dir("stream");
    // A stale file of a killed process is removed at start-up.
    std::fs::create_dir_all(cache.join("tmp")).unwrap();
    std::fs::write(cache.join("tmp/copy-out-1-1"), b"stale").unwrap();
    let server = Server::start_with(&["--cache_dir", cache.to_str().unwrap()], &[]);
    assert_eq!(leftovers(&cache), Vec::<String>::new());
    let client = server.connect().await;

    let chunks: Vec<bytes::Bytes> = client
        .copy_out("COPY (SELECT i FROM range(500000) t(i)) TO STDOUT (FORMAT parquet)")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let data: Vec<u8> = chunks.concat();
    assert!(
        data.starts_with(b"PAR1") && data.ends_with(b"PAR1"),
        "not Parquet"
    );
    assert!(chunks.iter().all(|c| c.len() <= 1 << 20));
    assert_eq!(leftovers(&cache), Vec::<String>::new());

    // Read back by DuckDB itself, through the same server.
    let path = cache.join("back.parquet");
    std::fs::write(&path, &data).unwrap();
    let row = client
        .query_one(
            &format!(
                "SELECT count(*)::bigint, sum(i)::bigint FROM '{}'",
                path.display()
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 500_000);
    assert_eq!(row.get::<_, i64>(1), 124_999_750_000);

    let json: Vec<bytes::Bytes> = client
        .copy_out("COPY (SELECT 1 AS a, 'x' AS b) TO STDOUT (FORMAT json)")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(json.concat(), b"{\"a\":1,\"b\":\"x\"}\n");

    let err = client
        .copy_out("COPY (SELECT * FROM missing_table) TO STDOUT (FORMAT parquet)")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE));
    assert_eq!(leftovers(&cache), Vec::<String>::new());
    let five: i32 = client
        .query_one("SELECT 5::integer", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(five, 5);
    drop(server);
    let _ = std::fs::remove_dir_all(&cache);
}
