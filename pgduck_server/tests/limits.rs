//! Nested data at the sizes that used to crash pgduck_server or take all memory: every
//! answer is a result or a clean error, the server stays up, other sessions carry on.

mod common;

use std::path::Path;

use common::Server;

/// `{"a":{"a":…"xy"…}}` nested `depth` levels, one line of newline-delimited JSON.
fn write_nested_json(dir: &Path, depth: usize) -> String {
    let path = dir.join(format!("nested-{depth}.json"));
    let json = format!("{}\"xy\"{}\n", "{\"a\":".repeat(depth), "}".repeat(depth));
    std::fs::write(&path, json).unwrap();
    path.to_string_lossy().into_owned()
}

/// The peak resident memory of a process, from /proc (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

/// The error a COPY-out reply (TRANSMIT) ends with.
async fn copy_out_error(client: &tokio_postgres::Client, sql: &str) -> tokio_postgres::Error {
    use futures::StreamExt;
    let stream = match client.copy_out(sql).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        if let Err(e) = chunk {
            return e;
        }
    }
    panic!("{sql} succeeded");
}

fn assert_running(server: &mut Server) {
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "pgduck_server exited"
    );
}

#[tokio::test]
async fn deeply_nested_json_is_read_or_refused_without_a_crash() {
    let mut server = Server::start();
    // Opened before, used after: a crash would take this session's engine with it.
    let bystander = server.connect().await;
    for depth in [1_000, 5_000] {
        let path = write_nested_json(&server.dir, depth);
        let client = server.connect().await;
        // DuckDB's own text form: structure detection at bind time, then the transform
        // on DuckDB's workers, both recursing once per level.
        let row = client
            .query_one(
                &format!("SELECT length(a::varchar)::bigint FROM read_json('{path}')"),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("depth {depth}: {e:?}"));
        assert!(row.get::<_, i64>(0) > depth as i64, "depth {depth}");
        // Ours: the record literal is refused beyond MAX_NESTING levels.
        if depth > 1_000 {
            let err = client
                .simple_query(&format!("SELECT a FROM read_json('{path}')"))
                .await
                .expect_err("5,000 levels of records cannot be sent");
            assert_eq!(err.code().unwrap().code(), "54001", "{err:?}");
        }
        assert_running(&mut server);
        let one: i32 = bystander.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }
}

#[tokio::test]
async fn nested_records_are_capped_at_a_gigabyte_and_memory_stays_bounded() {
    let mut server = Server::start();
    let client = server.connect().await;
    // 160 bytes of JSON, 26 levels: quotes double at each level of record literal.
    let path = write_nested_json(&server.dir, 26);
    let rows = client
        .simple_query(&format!("SELECT a FROM read_json('{path}')"))
        .await
        .unwrap();
    let value = match &rows[1] {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).unwrap().len(),
        other => panic!("{other:?}"),
    };
    assert!(value > 30_000_000, "{value} bytes at depth 26");

    // 100 levels would be 2^99 bytes: refused once the value passes 1 GB, for rows and
    // for TRANSMIT's COPY text.
    let path = write_nested_json(&server.dir, 100);
    for transmit in [false, true] {
        let sql = format!("SELECT a FROM read_json('{path}')");
        let err = if transmit {
            copy_out_error(&client, &format!("TRANSMIT {sql}")).await
        } else {
            client.simple_query(&sql).await.expect_err(&sql)
        };
        let db = err.as_db_error().expect("an ErrorResponse");
        assert_eq!(db.code().code(), "54000", "{sql}: {db:?}");
        assert!(db.message().contains("\"a\""), "{}", db.message());
        let peak = peak_rss(server.child.id());
        // Before the cap this took 23 GB; the largest buffers are one 1 GB value and
        // the level inside it.
        assert!(
            peak < 2 << 30,
            "peak RSS {peak} bytes after {sql} (TRANSMIT: {transmit})"
        );
    }
    assert_running(&mut server);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}
