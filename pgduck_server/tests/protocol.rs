//! pgduck_server driven by tokio-postgres and by raw protocol bytes.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{simple_rows, Server};
use futures::{StreamExt, TryStreamExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::SimpleQueryMessage;

/// Every value in Postgres text form, as psql would print it.
#[tokio::test]
async fn text_output_matches_postgres_for_each_type() {
    let server = Server::start();
    let client = server.connect().await;
    let cases: &[(&str, &str)] = &[
        ("true", "t"),
        ("false::boolean", "f"),
        ("(-128)::tinyint", "-128"),
        ("32767::smallint", "32767"),
        ("(-2147483648)::integer", "-2147483648"),
        ("9223372036854775807::bigint", "9223372036854775807"),
        (
            "170141183460469231731687303715884105727::hugeint",
            "170141183460469231731687303715884105727",
        ),
        ("255::utinyint", "255"),
        ("65535::usmallint", "65535"),
        ("4294967295::uinteger", "4294967295"),
        ("18446744073709551615::ubigint", "18446744073709551615"),
        ("1.5::float", "1.5"),
        ("'inf'::double", "Infinity"),
        ("'nan'::double", "NaN"),
        ("0.1::double", "0.1"),
        ("123.4500::decimal(10,4)", "123.4500"),
        ("(-0.000000001)::decimal(38,9)", "-0.000000001"),
        (
            "99999999999999999999999999999.999999999::decimal(38,9)",
            "99999999999999999999999999999.999999999",
        ),
        ("'héllo'::varchar", "héllo"),
        ("'\\xDE\\xAD'::blob", "\\xdead"),
        ("date '2024-02-29'", "2024-02-29"),
        (
            "date '0044-03-15' - interval 100 year",
            "0057-03-15 00:00:00 BC",
        ),
        ("time '13:45:01.25'", "13:45:01.25"),
        (
            "timestamp '2024-01-02 03:04:05.000006'",
            "2024-01-02 03:04:05.000006",
        ),
        (
            "CAST(date '0044-03-15' - interval 100 year AS timestamptz)",
            "0057-03-15 00:00:00+00 BC",
        ),
        (
            "timestamptz '2024-01-02 03:04:05+02'",
            "2024-01-02 01:04:05+00",
        ),
        ("'infinity'::timestamp", "infinity"),
        (
            "interval '1 year 2 months 3 days 04:05:06.5'",
            "1 year 2 mons 3 days 04:05:06.5",
        ),
        ("interval '-1 day'", "-1 days"),
        (
            "'6a1f1e3c-0a3b-4b7a-9c55-3c8f3b2b8a11'::uuid",
            "6a1f1e3c-0a3b-4b7a-9c55-3c8f3b2b8a11",
        ),
        ("'{\"a\": [1, 2]}'::json", "{\"a\": [1, 2]}"),
        ("[1, NULL, 3]", "{1,NULL,3}"),
        (
            "['a b', '', 'q\"x', NULL]::varchar[]",
            "{\"a b\",\"\",\"q\\\"x\",NULL}",
        ),
        ("[[1, 2], [3, 4]]", "{{1,2},{3,4}}"),
        ("{'x': 1, 'y': 'two words'}", "(1,\"two words\")"),
        ("{'x': NULL, 'y': 'a'}", "(,a)"),
        ("map([1, 2], ['a', 'b'])", "{1=a, 2=b}"),
    ];
    for (expr, expected) in cases {
        let msgs = client
            .simple_query(&format!("SELECT {expr}"))
            .await
            .unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(
            simple_rows(&msgs)[0][0].as_deref(),
            Some(*expected),
            "text of {expr}"
        );
    }
    let msgs = client
        .simple_query("SELECT NULL::integer, NULL::varchar")
        .await
        .unwrap();
    assert_eq!(simple_rows(&msgs), vec![vec![None, None]]);
}

/// tokio-postgres asks for binary results: each type decodes to the right value
/// and arrives with the right OID.
#[tokio::test]
async fn binary_output_decodes_with_the_right_types() {
    let server = Server::start();
    let client = server.connect().await;
    let row = client
        .query_one(
            "SELECT true, 7::smallint, 8::integer, 9::bigint, 1.25::float, 2.5::double, \
             'txt', '\\x01\\x02'::blob, date '2024-03-01', time '01:02:03.5', \
             timestamp '2024-03-01 12:00:00.25', timestamptz '2024-03-01 12:00:00+00', \
             '6a1f1e3c-0a3b-4b7a-9c55-3c8f3b2b8a11'::uuid, '{\"k\": 1}'::json, \
             12345.678::decimal(10,3), [1, 2, NULL]::integer[], ['x', 'y'], 200::utinyint",
            &[],
        )
        .await
        .unwrap();
    let types: Vec<Type> = row.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        vec![
            Type::BOOL,
            Type::INT2,
            Type::INT4,
            Type::INT8,
            Type::FLOAT4,
            Type::FLOAT8,
            Type::TEXT,
            Type::BYTEA,
            Type::DATE,
            Type::TIME,
            Type::TIMESTAMP,
            Type::TIMESTAMPTZ,
            Type::UUID,
            Type::JSON,
            Type::NUMERIC,
            Type::INT4_ARRAY,
            Type::TEXT_ARRAY,
            Type::INT2
        ]
    );
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, i16>(1), 7);
    assert_eq!(row.get::<_, i32>(2), 8);
    assert_eq!(row.get::<_, i64>(3), 9);
    assert_eq!(row.get::<_, f32>(4), 1.25);
    assert_eq!(row.get::<_, f64>(5), 2.5);
    assert_eq!(row.get::<_, &str>(6), "txt");
    assert_eq!(row.get::<_, Vec<u8>>(7), vec![1, 2]);
    assert_eq!(
        row.get::<_, chrono::NaiveDate>(8),
        chrono::NaiveDate::from_ymd_opt(2024, 3, 1).unwrap()
    );
    assert_eq!(
        row.get::<_, chrono::NaiveTime>(9),
        chrono::NaiveTime::from_hms_milli_opt(1, 2, 3, 500).unwrap()
    );
    assert_eq!(
        row.get::<_, chrono::NaiveDateTime>(10).to_string(),
        "2024-03-01 12:00:00.250"
    );
    assert_eq!(
        row.get::<_, chrono::DateTime<chrono::Utc>>(11).to_rfc3339(),
        "2024-03-01T12:00:00+00:00"
    );
    assert_eq!(
        row.get::<_, uuid::Uuid>(12).to_string(),
        "6a1f1e3c-0a3b-4b7a-9c55-3c8f3b2b8a11"
    );
    assert_eq!(
        row.get::<_, serde_json::Value>(13),
        serde_json::json!({"k": 1})
    );
    assert_eq!(
        row.get::<_, rust_decimal::Decimal>(14).to_string(),
        "12345.678"
    );
    assert_eq!(
        row.get::<_, Vec<Option<i32>>>(15),
        vec![Some(1), Some(2), None]
    );
    assert_eq!(
        row.get::<_, Vec<String>>(16),
        vec!["x".to_string(), "y".to_string()]
    );
    assert_eq!(row.get::<_, i16>(17), 200);

    let big = client
        .query_one(
            "SELECT (-9999999999999999999.999999999)::decimal(38,9)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        big.get::<_, rust_decimal::Decimal>(0).to_string(),
        "-9999999999999999999.999999999"
    );
    let interval = client
        .query_one("SELECT interval '1 month 2 days 3 seconds'", &[])
        .await
        .unwrap();
    assert_eq!(interval.get::<_, RawValue>(0).0, {
        let mut v = 3_000_000i64.to_be_bytes().to_vec();
        v.extend(2i32.to_be_bytes());
        v.extend(1i32.to_be_bytes());
        v
    });
}

/// Any value's raw binary bytes.
struct RawValue(Vec<u8>);

impl<'a> FromSql<'a> for RawValue {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

#[tokio::test]
async fn parameters_bind_and_prepared_statements_are_reused() {
    let server = Server::start();
    let mut client = server.connect().await;
    client
        .batch_execute("CREATE TABLE kv (k INTEGER, v VARCHAR, ts TIMESTAMP)")
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO kv VALUES ($1, $2, $3)")
        .await
        .unwrap();
    assert_eq!(insert.params(), &[Type::INT4, Type::TEXT, Type::TIMESTAMP]);
    let ts = chrono::NaiveDate::from_ymd_opt(2024, 5, 6)
        .unwrap()
        .and_hms_opt(7, 8, 9)
        .unwrap();
    for i in 0..20i32 {
        let n = client
            .execute(&insert, &[&i, &format!("v{i}"), &ts])
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let select = client
        .prepare("SELECT v, ts FROM kv WHERE k >= $1 AND k < $2 ORDER BY k")
        .await
        .unwrap();
    let rows = client.query(&select, &[&5i32, &8i32]).await.unwrap();
    let got: Vec<(String, chrono::NaiveDateTime)> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        (5..8).map(|i| (format!("v{i}"), ts)).collect::<Vec<_>>()
    );
    // Reuse with other values.
    assert_eq!(
        client.query(&select, &[&0i32, &20i32]).await.unwrap().len(),
        20
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM kv WHERE v = $1", &[&"v3"])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // Portal suspension: a cursor-style fetch of 3 rows at a time.
    let txn = client.transaction().await;
    assert!(txn.is_ok(), "BEGIN through the extended protocol");
    let txn = txn.unwrap();
    let portal = txn.bind("SELECT k FROM kv ORDER BY k", &[]).await.unwrap();
    let first = txn.query_portal(&portal, 3).await.unwrap();
    let second = txn.query_portal(&portal, 3).await.unwrap();
    assert_eq!(
        first.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(
        second
            .iter()
            .map(|r| r.get::<_, i32>(0))
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    txn.commit().await.unwrap();
}

#[tokio::test]
async fn errors_carry_a_sqlstate_and_the_session_keeps_working() {
    let server = Server::start();
    let client = server.connect().await;
    let cases: &[(&str, SqlState)] = &[
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT * FROM no_such_table", SqlState::UNDEFINED_TABLE),
        (
            "SELECT no_such_column FROM (SELECT 1 AS a)",
            SqlState::UNDEFINED_COLUMN,
        ),
        (
            "SELECT 'abc'::integer",
            SqlState::INVALID_TEXT_REPRESENTATION,
        ),
        (
            "SELECT * FROM read_parquet('/nonexistent/file.parquet')",
            SqlState::IO_ERROR,
        ),
    ];
    for (sql, state) in cases {
        let err = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(err.code(), Some(state), "{sql}: {err:?}");
        let err = client.query(*sql, &[]).await.expect_err(sql);
        assert_eq!(err.code(), Some(state), "extended {sql}: {err:?}");
        let ok = client.simple_query("SELECT 42").await.unwrap();
        assert_eq!(simple_rows(&ok), vec![vec![Some("42".into())]]);
    }
    // Several statements in one message: results up to the error, nothing after it.
    client
        .batch_execute("CREATE TABLE seen (x INTEGER)")
        .await
        .unwrap();
    let err = client
        .simple_query(
            "INSERT INTO seen VALUES (1); SELECT 1/0::integer + 'x'; INSERT INTO seen VALUES (2)",
        )
        .await
        .unwrap_err();
    assert!(err.code().is_some());
    let rows = client
        .simple_query("SELECT x FROM seen ORDER BY x")
        .await
        .unwrap();
    assert_eq!(simple_rows(&rows), vec![vec![Some("1".into())]]);
    // A failed statement inside a transaction needs a ROLLBACK, like Postgres.
    client.batch_execute("BEGIN").await.unwrap();
    assert!(client.simple_query("SELECT * FROM nope").await.is_err());
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        client
            .query_one("SELECT 1::integer", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    // A Parse of several statements is refused like Postgres does.
    let err = client.prepare("SELECT 1; SELECT 2").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::SYNTAX_ERROR));
}

/// Statements are cached per session; a cached one must see later schema changes.
#[tokio::test]
async fn a_repeated_statement_sees_schema_changes() {
    let server = Server::start();
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE shape (a INTEGER); INSERT INTO shape VALUES (1)")
        .await
        .unwrap();
    let rows = client.simple_query("SELECT * FROM shape").await.unwrap();
    assert_eq!(simple_rows(&rows), vec![vec![Some("1".into())]]);
    client
        .batch_execute("DROP TABLE shape; CREATE TABLE shape (a VARCHAR, b INTEGER); INSERT INTO shape VALUES ('x', 2)")
        .await
        .unwrap();
    let rows = client.simple_query("SELECT * FROM shape").await.unwrap();
    assert_eq!(
        simple_rows(&rows),
        vec![vec![Some("x".into()), Some("2".into())]]
    );
    client.batch_execute("DROP TABLE shape").await.unwrap();
    assert_eq!(
        client
            .simple_query("SELECT * FROM shape")
            .await
            .unwrap_err()
            .code(),
        Some(&SqlState::UNDEFINED_TABLE)
    );
    // A temp table recreated with another shape, filled by a repeated INSERT.
    for columns in [
        "a INTEGER, b INTEGER",
        "a INTEGER",
        "a INTEGER, b INTEGER, c INTEGER",
    ] {
        let n = columns.split(',').count();
        client
            .batch_execute(&format!("CREATE OR REPLACE TEMP TABLE staging ({columns})"))
            .await
            .unwrap();
        let values = vec!["1"; n].join(", ");
        client
            .simple_query(&format!("INSERT INTO staging VALUES ({values})"))
            .await
            .unwrap();
        client
            .simple_query("INSERT INTO staging SELECT * FROM staging")
            .await
            .unwrap();
        let rows = client
            .simple_query("SELECT count(*) FROM staging")
            .await
            .unwrap();
        assert_eq!(
            simple_rows(&rows),
            vec![vec![Some("2".into())]],
            "{columns}"
        );
    }
}

#[tokio::test]
async fn several_statements_in_one_simple_query_each_answer() {
    let server = Server::start();
    let client = server.connect().await;
    let msgs = client
        .simple_query("CREATE TABLE m (a INTEGER); INSERT INTO m VALUES (1), (2); SELECT sum(a) FROM m; DROP TABLE m")
        .await
        .unwrap();
    let completions: Vec<u64> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(completions, vec![0, 2, 1, 0]);
    assert_eq!(simple_rows(&msgs), vec![vec![Some("3".into())]]);
}

#[tokio::test]
async fn transmit_streams_copy_out_text() {
    let server = Server::start();
    let client = server.connect().await;
    let stream = client
        .copy_out("transmit SELECT i, 'a\tb' AS s, NULL AS n, [i, i] AS l FROM range(3) t(i)")
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let text: String = chunks
        .iter()
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    assert_eq!(
        text,
        "0\ta\\tb\t\\N\t{0,0}\n1\ta\\tb\t\\N\t{1,1}\n2\ta\\tb\t\\N\t{2,2}\n"
    );

    // A large result arrives in many chunks, not one.
    let stream = client
        .copy_out("TRANSMIT SELECT i FROM range(1000000) t(i)")
        .await
        .unwrap();
    let (chunks, bytes) = stream
        .fold((0usize, 0usize), |(n, b), c| async move {
            (n + 1, b + c.unwrap().len())
        })
        .await;
    assert!(
        chunks > 100,
        "expected streaming in batches, got {chunks} chunks"
    );
    assert_eq!(
        bytes,
        (0..1_000_000)
            .map(|i: i32| i.to_string().len() + 1)
            .sum::<usize>()
    );

    // An error in a TRANSMIT query is an ordinary error, and the session survives.
    let err = client
        .copy_out("TRANSMIT SELECT * FROM missing_table")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE));
    assert_eq!(
        client
            .query_one("SELECT 5::integer", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        5
    );
}

#[tokio::test]
async fn copy_from_stdin_loads_through_a_spool_file() {
    let server = Server::start();
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE loaded (id INTEGER, name VARCHAR)")
        .await
        .unwrap();
    let sink = client
        .copy_in("COPY loaded FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    for chunk in 0..10 {
        let rows: String = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| format!("{i},\"name {i}\"\n"))
            .collect();
        futures::SinkExt::send(&mut sink, bytes::Bytes::from(rows))
            .await
            .unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 10_000);
    let rows = client
        .simple_query("SELECT count(*), max(name) FROM loaded")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&rows),
        vec![vec![Some("10000".into()), Some("name 9999".into())]]
    );
    // Bad data fails the COPY, loads nothing, and the session goes on.
    let sink = client
        .copy_in("COPY loaded FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    futures::SinkExt::send(
        &mut sink,
        bytes::Bytes::from_static(b"1,ok\nnot-a-number,x\n"),
    )
    .await
    .unwrap();
    assert!(sink.finish().await.is_err());
    let rows = client
        .simple_query("SELECT count(*) FROM loaded")
        .await
        .unwrap();
    assert_eq!(simple_rows(&rows), vec![vec![Some("10000".into())]]);
    // Nothing is left in the spool directory.
    let spooled: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("copy-in-{}-", server.child.id()))
        })
        .collect();
    assert!(spooled.is_empty(), "spool files left behind: {spooled:?}");
}

#[tokio::test]
async fn cancel_interrupts_a_long_query() {
    let server = Server::start();
    let client = server.connect().await;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let started = Instant::now();
    let err = client
        .simple_query(
            "SELECT count(*) FROM range(10000000000) a(x), range(1000) b(y) WHERE x * y = -1",
        )
        .await
        .unwrap_err();
    canceller.await.unwrap();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        simple_rows(&client.simple_query("SELECT 1").await.unwrap()),
        vec![vec![Some("1".into())]]
    );
}

/// Postgres ignores a cancel that arrives between statements; so must pgduck_server,
/// or the next statement fails with a stale interrupt.
#[tokio::test]
async fn a_cancel_between_statements_is_ignored() {
    let server = Server::start();
    let client = server.connect().await;
    for _ in 0..5 {
        client.simple_query("SELECT 1").await.unwrap();
        client
            .cancel_token()
            .cancel_query(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rows = client
            .simple_query("SELECT count(*) FROM range(100000)")
            .await
            .unwrap();
        assert_eq!(simple_rows(&rows), vec![vec![Some("100000".into())]]);
    }
    // A cancel that races the end of a streamed result (a reader that stopped early, as
    // a LIMIT in Postgres does) must not leak into the next statement either.
    for _ in 0..5 {
        let mut stream = Box::pin(
            client
                .copy_out("TRANSMIT SELECT i FROM range(300000) t(i)")
                .await
                .unwrap(),
        );
        stream.next().await.unwrap().unwrap();
        client
            .cancel_token()
            .cancel_query(tokio_postgres::NoTls)
            .await
            .unwrap();
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                break;
            }
        }
        let rows = client
            .simple_query("SELECT count(*) FROM range(100000)")
            .await
            .unwrap();
        assert_eq!(simple_rows(&rows), vec![vec![Some("100000".into())]]);
    }
}

#[tokio::test]
async fn fifty_concurrent_sessions() {
    let server = Server::start();
    let mut tasks = Vec::new();
    for i in 0..50i64 {
        let config = server.config();
        tasks.push(tokio::spawn(async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client
                .batch_execute(&format!(
                    "CREATE TEMP TABLE mine AS SELECT {i}::BIGINT AS v"
                ))
                .await
                .unwrap();
            let mut total = 0i64;
            for _ in 0..5 {
                let row = client
                    .query_one("SELECT sum(v) + count(*) FROM mine, range(1000)", &[])
                    .await
                    .unwrap();
                total = row.get::<_, rust_decimal::Decimal>(0).try_into().unwrap();
            }
            assert_eq!(total, i * 1000 + 1000);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn setting(c: &tokio_postgres::Client, name: &str) -> String {
    let r = c
        .simple_query(&format!("SELECT current_setting('{name}')"))
        .await
        .unwrap();
    simple_rows(&r)[0][0].clone().unwrap()
}

#[tokio::test]
async fn set_stays_in_its_session_and_set_global_changes_the_process() {
    let server = Server::start();
    let a = server.connect().await;
    let b = server.connect().await;
    a.batch_execute("SET TimeZone = 'Asia/Tokyo'")
        .await
        .unwrap();
    assert_eq!(setting(&a, "TimeZone").await, "Asia/Tokyo");
    assert_eq!(setting(&b, "TimeZone").await, "UTC");
    // Timestamps with time zone still reach clients as the same instant.
    let ts = a
        .simple_query("SELECT timestamptz '2024-01-01 00:00:00+00'")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&ts)[0][0].as_deref(),
        Some("2024-01-01 00:00:00+00")
    );
    b.batch_execute("SET GLOBAL default_order = 'DESC'")
        .await
        .unwrap();
    assert_eq!(setting(&a, "default_order").await.to_lowercase(), "desc");
    let c = server.connect().await;
    assert_eq!(setting(&c, "default_order").await.to_lowercase(), "desc");
}

// ---- raw protocol: bad input and vanishing clients ----

fn startup_packet() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(196_608i32.to_be_bytes());
    for s in ["user", "raw", "database", "raw"] {
        body.extend(s.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

fn query_packet(sql: &str) -> Vec<u8> {
    let mut p = vec![b'Q'];
    p.extend(((sql.len() + 5) as i32).to_be_bytes());
    p.extend(sql.as_bytes());
    p.push(0);
    p
}

/// Reads until ReadyForQuery ('Z') and returns every message type seen.
fn read_until_ready(s: &mut UnixStream) -> Vec<u8> {
    let mut types = Vec::new();
    loop {
        let mut head = [0u8; 5];
        if s.read_exact(&mut head).is_err() {
            return types;
        }
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).unwrap();
        types.push(head[0]);
        if head[0] == b'Z' {
            return types;
        }
    }
}

/// Messages up to and including ReadyForQuery, as (type, body).
fn read_messages_until_ready(s: &mut UnixStream) -> Vec<(u8, Vec<u8>)> {
    let mut messages = Vec::new();
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).unwrap();
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).unwrap();
        messages.push((head[0], body));
        if head[0] == b'Z' {
            return messages;
        }
    }
}

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]; // 80877103
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]; // 80877104

/// A client may ask for SSL or GSS encryption before the start-up packet on the unix
/// socket too (libpq does not, other drivers may): as Postgres does, and as on TCP,
/// each request is answered with a single `N` and start-up goes on in plain text.
#[test]
fn encryption_requests_on_the_unix_socket_are_refused_and_startup_goes_on() {
    let server = Server::start();
    let cases: [&[[u8; 8]]; 4] = [
        &[SSL_REQUEST],
        &[GSSENC_REQUEST],
        &[GSSENC_REQUEST, SSL_REQUEST],
        &[SSL_REQUEST, GSSENC_REQUEST],
    ];
    for requests in cases {
        let mut s = UnixStream::connect(server.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for request in requests {
            s.write_all(request).unwrap();
            let mut answer = [0u8; 1];
            s.read_exact(&mut answer)
                .unwrap_or_else(|e| panic!("answer to {request:?} in {requests:?}: {e}"));
            assert_eq!(&answer, b"N", "answer to {request:?} in {requests:?}");
        }
        s.write_all(&startup_packet()).unwrap();
        let types = read_until_ready(&mut s);
        assert!(
            types.contains(&b'R') && types.contains(&b'K') && !types.contains(&b'E'),
            "start-up after {requests:?}: {types:?}"
        );
        s.write_all(&query_packet("SELECT 41 + 1")).unwrap();
        let messages = read_messages_until_ready(&mut s);
        let types: Vec<u8> = messages.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, vec![b'T', b'D', b'C', b'Z'], "after {requests:?}");
        // DataRow: 1 column, 2 bytes, "42".
        assert_eq!(
            messages[1].1, b"\x00\x01\x00\x00\x00\x0242",
            "after {requests:?}"
        );
    }

    // A request split across writes is still one request.
    let mut s = UnixStream::connect(server.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&SSL_REQUEST[..2]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(&SSL_REQUEST[2..]).unwrap();
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"N");
    s.write_all(&startup_packet()).unwrap();
    assert!(read_until_ready(&mut s).contains(&b'K'));

    // A client that goes away in the middle of a request is let go: the server
    // closes the connection rather than wait for the rest.
    let mut s = UnixStream::connect(server.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&SSL_REQUEST[..2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("the server closes the connection");
    assert!(rest.is_empty(), "{rest:?}");
}

fn raw_connect(server: &Server) -> UnixStream {
    let mut s = UnixStream::connect(server.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&startup_packet()).unwrap();
    let types = read_until_ready(&mut s);
    assert!(
        types.contains(&b'R') && types.contains(&b'K'),
        "auth ok and key data: {types:?}"
    );
    assert!(
        types.iter().filter(|t| **t == b'S').count() >= 5,
        "parameter statuses: {types:?}"
    );
    s
}

async fn assert_serves(server: &Server) {
    let client = server.connect().await;
    let rows = client.simple_query("SELECT 'still here'").await.unwrap();
    assert_eq!(simple_rows(&rows), vec![vec![Some("still here".into())]]);
}

#[tokio::test]
async fn bad_input_closes_or_answers_only_that_session() {
    let mut server = Server::start();
    // Garbage instead of a start-up packet.
    {
        let mut s = UnixStream::connect(server.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"\x00\x00\x00\x10GARBAGEGARBAGE!!").unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
    // A start-up packet claiming a huge length.
    {
        let mut s = UnixStream::connect(server.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&0x7fff_fff0i32.to_be_bytes()).unwrap();
        s.write_all(&196_608i32.to_be_bytes()).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
    // After start-up: an unknown message type.
    {
        let mut s = raw_connect(&server);
        s.write_all(&[b'@', 0, 0, 0, 4]).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(
            buf.is_empty() || buf[0] == b'E',
            "unknown message answered with an error or a close"
        );
    }
    // An oversized query message.
    {
        let mut s = raw_connect(&server);
        let mut p = vec![b'Q'];
        p.extend(0x7fff_fff0i32.to_be_bytes());
        p.extend(b"SELECT 1");
        let _ = s.write_all(&p);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
    // A message cut short, then the client vanishes.
    {
        let mut s = raw_connect(&server);
        s.write_all(&[b'Q', 0, 0, 0, 100, b'S']).unwrap();
    }
    // A normal query on a raw connection still works.
    {
        let mut s = raw_connect(&server);
        s.write_all(&query_packet("SELECT 1")).unwrap();
        let types = read_until_ready(&mut s);
        assert_eq!(types, vec![b'T', b'D', b'C', b'Z']);
    }
    assert_serves(&server).await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server survived every bad session"
    );
}

#[tokio::test]
async fn a_client_killed_mid_stream_does_not_disturb_others() {
    // Two slots: `other` holds one, so every new connection below needs the slot the
    // previous, killed client held — a leaked session would lock them out.
    let server = Server::start_with(&["--max_clients", "2"], &[]);
    let other = server.connect().await;
    for _ in 0..3 {
        let mut s = raw_connect_retrying(&server);
        s.write_all(&query_packet(
            "TRANSMIT SELECT i, repeat('x', 100) FROM range(50000000) t(i)",
        ))
        .unwrap();
        let mut buf = vec![0u8; 1 << 16];
        s.read_exact(&mut buf).unwrap();
        drop(s); // vanish while the server is streaming
        let rows = other
            .simple_query("SELECT count(*) FROM range(1000)")
            .await
            .unwrap();
        assert_eq!(simple_rows(&rows), vec![vec![Some("1000".into())]]);
    }
    drop(raw_connect_retrying(&server));
}

/// Connects once the server has released an abandoned session's slot.
fn raw_connect_retrying(server: &Server) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = UnixStream::connect(server.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&startup_packet()).unwrap();
        let types = read_until_ready(&mut s);
        if types.contains(&b'K') && !types.contains(&b'E') {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "a killed client's session was never released"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- process lifecycle ----

#[tokio::test]
async fn a_second_server_on_the_same_socket_is_refused() {
    let server = Server::start();
    let out = std::process::Command::new(common::binary())
        .args([
            "--unix_socket_directory",
            server.dir.to_str().unwrap(),
            "--port",
            &server.port.to_string(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another pgduck_server") && stderr.contains(&server.child.id().to_string()),
        "{stderr}"
    );
    assert_serves(&server).await;
}

#[tokio::test]
async fn sigterm_cancels_queries_and_removes_socket_and_pidfile() {
    let pidfile = std::env::temp_dir().join(format!("pgduck-pid-{}", std::process::id()));
    let mut server = Server::start_with(&["--pidfile", pidfile.to_str().unwrap()], &[]);
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, server.child.id());
    let client = server.connect().await;
    let long = tokio::spawn(async move {
        client
            .simple_query(
                "SELECT count(*) FROM range(10000000000) a(x), range(1000) b(y) WHERE x*y = -1",
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(long.await.unwrap().is_err());
    assert!(!common::exists(&server.socket()), "socket removed");
    assert!(!common::exists(&pidfile), "pidfile removed");
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced() {
    let first = Server::start();
    let (dir, port) = (first.dir.clone(), first.port);
    let mut first = first;
    common::signal(first.child.id(), "KILL");
    first.child.wait().unwrap();
    assert!(
        common::exists(&first.socket()),
        "SIGKILL leaves the socket behind"
    );
    let mut second = std::process::Command::new(common::binary())
        .args([
            "--unix_socket_directory",
            dir.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut config = tokio_postgres::Config::new();
    config.host_path(&dir).port(port).user("t");
    loop {
        if let Ok((c, conn)) = config.connect(tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            assert!(c.simple_query("SELECT 1").await.is_ok());
            break;
        }
        assert!(Instant::now() < deadline, "second server never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn check_cli_params_only_validates_and_exits() {
    let ok = std::process::Command::new(common::binary())
        .args(["--check_cli_params_only", "--memory_limit", "1GB"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let bad = std::process::Command::new(common::binary())
        .args(["--check_cli_params_only", "--memory_limit", "lots"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--memory_limit"));
    let help = std::process::Command::new(common::binary())
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--unix_socket_directory",
        "--port",
        "--max_clients",
        "--memory_limit",
        "--cache_dir",
        "--extensions_dir",
        "--init_file_path",
        "--duckdb_database_file_path",
        "--pidfile",
        "--check_cli_params_only",
        "--listen_address",
    ] {
        assert!(text.contains(flag), "--help lists {flag}");
    }
}

#[tokio::test]
async fn tcp_listener_requires_the_password_and_refuses_ssl() {
    let server = Server::start_with(
        &["--listen_address", "127.0.0.1"],
        &[("PGDUCK_PASSWORD", "hunter2")],
    );
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(server.port)
        .user("app")
        .password("wrong");
    let err = config
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("wrong password refused");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD));
    config.password("hunter2");
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(
        client
            .query_one("SELECT 3::integer", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        3
    );
    // SSLRequest and GSSENCRequest are answered 'N' and the session can continue in
    // plain text: the server asks for the password.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for request in [SSL_REQUEST, GSSENC_REQUEST] {
        s.write_all(&request).unwrap();
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"N", "answer to {request:?}");
    }
    s.write_all(&startup_packet()).unwrap();
    let mut auth = [0u8; 9];
    s.read_exact(&mut auth).unwrap();
    assert_eq!(auth[0], b'R', "authentication request");
    assert_eq!(i32::from_be_bytes(auth[5..9].try_into().unwrap()), 5, "MD5");
    // The password never appears in the process arguments.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("hunter2"));
}

#[tokio::test]
async fn max_clients_refuses_extra_sessions() {
    let server = Server::start_with(&["--max_clients", "2"], &[]);
    let _a = server.connect().await;
    let _b = server.connect().await;
    let err = server
        .config()
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("third refused");
    assert_eq!(err.code(), Some(&SqlState::TOO_MANY_CONNECTIONS));
    drop(_a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _c = server.connect().await;
}

#[tokio::test]
async fn init_file_runs_before_clients_and_database_file_persists() {
    let dir = std::env::temp_dir().join(format!("pgduck-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let init = dir.join("init.sql");
    std::fs::write(
        &init,
        "CREATE TABLE IF NOT EXISTS boot AS SELECT 'ready' AS state;",
    )
    .unwrap();
    let db = dir.join("state.duckdb");
    let args = [
        "--init_file_path",
        init.to_str().unwrap(),
        "--duckdb_database_file_path",
        db.to_str().unwrap(),
    ];
    {
        let server = Server::start_with(&args, &[]);
        let client = server.connect().await;
        client
            .batch_execute("INSERT INTO boot VALUES ('kept')")
            .await
            .unwrap();
    }
    let server = Server::start_with(&args, &[]);
    let client = server.connect().await;
    let rows = client
        .simple_query("SELECT state FROM boot ORDER BY state")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&rows),
        vec![vec![Some("kept".into())], vec![Some("ready".into())]]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The cache directory may disappear under a running server (a cleaner, a new volume):
/// COPY FROM STDIN, COPY TO STDOUT and uploads recreate what they need in it.
#[tokio::test]
async fn a_cache_directory_removed_under_the_server_is_recreated() {
    let cache = std::env::temp_dir().join(format!("pgduck-gone-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let server = Server::start_with(&["--cache_dir", cache.to_str().unwrap()], &[]);
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE gone (id INTEGER)")
        .await
        .unwrap();
    std::fs::remove_dir_all(&cache).unwrap();
    let sink = client
        .copy_in("COPY gone FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    futures::SinkExt::send(&mut sink, bytes::Bytes::from_static(b"1\n2\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    std::fs::remove_dir_all(&cache).unwrap();
    let stream = client
        .copy_out("COPY (SELECT id FROM gone ORDER BY id) TO STDOUT (FORMAT csv, HEADER false)")
        .await
        .unwrap();
    use futures::TryStreamExt;
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    assert_eq!(chunks.concat(), b"1\n2\n".to_vec());
    // The session is still in step after all that.
    let rows = client.simple_query("SELECT count(*) FROM gone").await.unwrap();
    assert_eq!(simple_rows(&rows), vec![vec![Some("2".into())]]);
    drop(client);
    let _ = std::fs::remove_dir_all(&cache);
}

/// `--unix_socket_directory @name` listens on the Linux abstract socket
/// `name/.s.PGSQL.<port>`, as libpq reads `host=@name`: no file anywhere, and a second
/// server on the same name refuses to start.
#[tokio::test]
async fn serves_on_a_linux_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    use std::process::{Command, Stdio};
    let name = format!("pgduck-abstract-{}", std::process::id());
    let port = "5399";
    let args = |cmd: &mut Command| {
        cmd.args(["--unix_socket_directory", &format!("@{name}"), "--port", port]);
        if let Ok(ext) = std::env::var("PG_LAKE_DUCKDB_EXTENSIONS") {
            cmd.arg("--extensions_dir").arg(ext);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    };
    let mut cmd = Command::new(common::binary());
    args(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(
        format!("{name}/.s.PGSQL.{port}").as_bytes(),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let stream = loop {
        match std::os::unix::net::UnixStream::connect_addr(&addr) {
            Ok(s) => break s,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "no abstract socket: {e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    };
    stream.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(stream).unwrap();
    let (client, conn) = tokio_postgres::Config::new()
        .user("test")
        .dbname("test")
        .connect_raw(stream, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client.simple_query("SELECT 42").await.unwrap();
    assert_eq!(simple_rows(&rows), vec![vec![Some("42".into())]]);
    let mut second = Command::new(common::binary());
    args(&mut second);
    let status = second.status().unwrap();
    assert_eq!(status.code(), Some(1), "a second server on a live abstract socket must refuse");
    drop(client);
    child.kill().unwrap();
    child.wait().unwrap();
}
