//! DuckDB results that used to come back wrong: UHUGEINT from 2^127 up, TIMETZ without
//! its offset, and the rows of `COPY ... TO ... (RETURN_STATS)`.

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
async fn timetz_keeps_its_offset() {
    let server = Server::start();
    let client = server.connect().await;
    let sql = "SELECT '12:00:00+03'::TIMETZ AS t, 1 AS t, '23:59:59.5-05:30'::TIMETZ, \
               NULL::TIMETZ AS n ORDER BY 1";
    let expected = vec![vec![
        Some("12:00:00+03".to_owned()),
        Some("1".to_owned()),
        Some("23:59:59.5-05:30".to_owned()),
        None,
    ]];
    let got = client.simple_query(sql).await.unwrap();
    assert_eq!(simple_rows(&got), expected);
    // Column names (duplicates included) are kept.
    let names: Vec<String> = match &got[0] {
        SimpleQueryMessage::RowDescription(cols) => cols.iter().map(|c| c.name().to_owned()).collect(),
        SimpleQueryMessage::Row(row) => row.columns().iter().map(|c| c.name().to_owned()).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names[0], "t");
    assert_eq!(names[1], "t");
    assert_eq!(names[3], "n");
    // Parameters (extended protocol) and TRANSMIT take the same path.
    let row = client
        .query_one("SELECT CAST($1 AS TIMETZ) AS t", &[&"08:30:00-02"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "08:30:00-02");
    let stream = client
        .copy_out("TRANSMIT SELECT '12:00:00+03'::TIMETZ, 2")
        .await
        .unwrap();
    use futures::TryStreamExt;
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    assert_eq!(chunks.concat(), b"12:00:00+03\t2\n".to_vec());
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
