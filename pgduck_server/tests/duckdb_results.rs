//! DuckDB results that used to come back wrong: UHUGEINT from 2^127 up, and the rows
//! of `COPY ... TO ... (RETURN_STATS)`.

mod common;

use common::{simple_rows, Server};
use tokio_postgres::SimpleQueryMessage;

#[tokio::test]
async fn uhugeint_keeps_values_from_two_to_the_127() {
    let server = Server::start();
    let client = server.connect().await;
    let max = "340282366920938463463374607431768211455";
    let half = "170141183460469231731687303715884105728";
    let got = client
        .simple_query(&format!(
            "SELECT {max}::uhugeint, {half}::uhugeint, 7::uhugeint, NULL::uhugeint, \
             (-{half})::hugeint"
        ))
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&got),
        vec![vec![
            Some(max.to_owned()),
            Some(half.to_owned()),
            Some("7".to_owned()),
            None,
            Some(format!("-{half}")),
        ]]
    );
    // TRANSMIT's COPY text takes the same path.
    let stream = client
        .copy_out(&format!("TRANSMIT SELECT {max}::uhugeint"))
        .await
        .unwrap();
    use futures::TryStreamExt;
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    assert_eq!(chunks.concat(), format!("{max}\n").into_bytes());
}

#[tokio::test]
async fn copy_to_with_return_stats_answers_duckdbs_rows() {
    let server = Server::start();
    let client = server.connect().await;
    let path = server.dir.join("stats.parquet");
    let got = client
        .simple_query(&format!(
            "COPY (SELECT 1 AS a, 'x' AS b UNION ALL SELECT 5, 'y') TO '{}' \
             (FORMAT parquet, RETURN_STATS)",
            path.display()
        ))
        .await
        .unwrap();
    let rows = simple_rows(&got);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0].as_deref(), Some(path.to_str().unwrap()));
    assert_eq!(rows[0][1].as_deref(), Some("2"));
    let stats = rows[0][4].as_deref().unwrap();
    assert!(
        stats.contains("max=5") && stats.contains("min=1"),
        "{stats}"
    );
    match got.last() {
        Some(SimpleQueryMessage::CommandComplete(n)) => assert_eq!(*n, 1),
        other => panic!("{other:?}"),
    }
}
