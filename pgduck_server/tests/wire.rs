//! Protocol edges answered as Postgres answers them: start-up packets of other protocol
//! versions, Bind messages with wrong counts or format codes, oversized queries,
//! untyped parameters, and error fields.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::Server;

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![kind];
    p.extend(((body.len() + 4) as i32).to_be_bytes());
    p.extend(body);
    p
}

fn startup(major: u16, minor: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(major.to_be_bytes());
    body.extend(minor.to_be_bytes());
    body.extend(b"user\0raw\0database\0raw\0\0");
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

fn read_message(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).ok()?;
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).ok()?;
    Some((head[0], body))
}

/// Messages up to ReadyForQuery (or the end of the connection).
fn read_until_ready(s: &mut UnixStream) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(m) = read_message(s) {
        let ready = m.0 == b'Z';
        out.push(m);
        if ready {
            break;
        }
    }
    out
}

/// An ErrorResponse's fields by tag.
fn error_field(body: &[u8], tag: u8) -> Option<String> {
    body.split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .find(|f| f[0] == tag)
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
}

fn connect(server: &Server) -> UnixStream {
    let mut s = UnixStream::connect(server.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&startup(3, 0)).unwrap();
    assert_eq!(read_until_ready(&mut s).last().unwrap().0, b'Z');
    s
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn parse(sql: &str) -> Vec<u8> {
    let mut body = cstr("");
    body.extend(cstr(sql));
    body.extend(0i16.to_be_bytes());
    packet(b'P', &body)
}

fn bind(param_formats: &[i16], params: &[&str], result_formats: &[i16]) -> Vec<u8> {
    let mut body = cstr("");
    body.extend(cstr(""));
    body.extend((param_formats.len() as i16).to_be_bytes());
    for f in param_formats {
        body.extend(f.to_be_bytes());
    }
    body.extend((params.len() as i16).to_be_bytes());
    for p in params {
        body.extend((p.len() as i32).to_be_bytes());
        body.extend(p.as_bytes());
    }
    body.extend((result_formats.len() as i16).to_be_bytes());
    for f in result_formats {
        body.extend(f.to_be_bytes());
    }
    packet(b'B', &body)
}

fn execute_sync() -> Vec<u8> {
    let mut body = cstr("");
    body.extend(0i32.to_be_bytes());
    let mut p = packet(b'E', &body);
    p.extend(packet(b'S', &[]));
    p
}

/// Parse + Bind + Execute + Sync; the ErrorResponse's (code, message), if any.
fn extended(s: &mut UnixStream, sql: &str, bind_message: Vec<u8>) -> Option<(String, String)> {
    let mut msg = parse(sql);
    msg.extend(bind_message);
    msg.extend(execute_sync());
    s.write_all(&msg).unwrap();
    let replies = read_until_ready(s);
    assert_eq!(replies.last().map(|m| m.0), Some(b'Z'), "{replies:?}");
    replies.iter().find(|m| m.0 == b'E').map(|(_, body)| {
        (
            error_field(body, b'C').unwrap(),
            error_field(body, b'M').unwrap(),
        )
    })
}

#[test]
fn other_protocol_versions_get_postgres_fatal_error() {
    let server = Server::start();
    for (major, minor) in [(1, 0), (2, 0), (99, 0)] {
        let mut s = UnixStream::connect(server.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&startup(major, minor)).unwrap();
        let (kind, body) = read_message(&mut s).expect("an answer before the close");
        assert_eq!(kind, b'E');
        assert_eq!(error_field(&body, b'S').as_deref(), Some("FATAL"));
        assert_eq!(error_field(&body, b'C').as_deref(), Some("0A000"));
        assert_eq!(
            error_field(&body, b'M').unwrap(),
            format!("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.2")
        );
        assert!(read_message(&mut s).is_none(), "connection closed");
    }
    connect(&server);
}

#[test]
fn bind_counts_and_format_codes_are_checked_as_postgres_does() {
    let server = Server::start();
    let mut s = connect(&server);
    let sql = "SELECT $1::int + $2::int";
    let cases: [(Vec<u8>, &str, &str); 6] = [
        (
            bind(&[], &["1"], &[]),
            "08P01",
            "bind message supplies 1 parameters, but prepared statement \"\" requires 2",
        ),
        (
            bind(&[], &["1", "2", "3"], &[]),
            "08P01",
            "bind message supplies 3 parameters, but prepared statement \"\" requires 2",
        ),
        (
            bind(&[7], &["1", "2"], &[]),
            "22023",
            "unsupported format code: 7",
        ),
        (
            bind(&[], &["1", "2"], &[2]),
            "22023",
            "unsupported format code: 2",
        ),
        (
            bind(&[0, 0, 0], &["1", "2"], &[]),
            "08P01",
            "bind message has 3 parameter formats but 2 parameters",
        ),
        (
            bind(&[], &["1", "2"], &[0, 0]),
            "08P01",
            "bind message has 2 result formats but query has 1 columns",
        ),
    ];
    for (message, code, text) in cases {
        let error = extended(&mut s, sql, message).expect(text);
        assert_eq!(error, (code.to_owned(), text.to_owned()));
    }
    // The session goes on, and a right Bind runs.
    assert_eq!(extended(&mut s, sql, bind(&[], &["1", "2"], &[])), None);
}

#[tokio::test]
async fn untyped_parameters_are_text_and_described_as_the_rows_are() {
    let server = Server::start();
    let client = server.connect().await;
    let stmt = client
        .prepare("SELECT $1 || $2 AS ab, $3 AS c")
        .await
        .unwrap();
    assert!(stmt
        .params()
        .iter()
        .all(|t| *t == tokio_postgres::types::Type::TEXT));
    assert_eq!(
        stmt.columns()[0].type_(),
        &tokio_postgres::types::Type::TEXT
    );
    assert_eq!(
        stmt.columns()[1].type_(),
        &tokio_postgres::types::Type::TEXT
    );
    let row = client.query_one(&stmt, &[&"a", &"b", &"c"]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "ab");
    assert_eq!(row.get::<_, String>(1), "c");
}

#[tokio::test]
async fn an_oversized_query_is_refused_and_the_session_goes_on() {
    let server = Server::start();
    let client = server.connect().await;
    let sql = format!("SELECT '{}'", "x".repeat(65 << 20));
    let err = client.simple_query(&sql).await.expect_err("65 MiB query");
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "54000");
    assert!(
        db.message().contains("longer than pgduck_server accepts"),
        "{}",
        db.message()
    );
    let err = client.prepare(&sql).await.expect_err("65 MiB Parse");
    assert_eq!(err.as_db_error().unwrap().code().code(), "54000");
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn errors_carry_no_detail_even_with_rust_backtrace_set() {
    let server = Server::start_with(&[], &[("RUST_BACKTRACE", "1")]);
    let client = server.connect().await;
    for sql in ["SELECT * FROM no_such_table", "SELECT 'x'::int", "SELEC 1"] {
        let err = client.simple_query(sql).await.expect_err(sql);
        let db = err.as_db_error().unwrap();
        assert_eq!(db.detail(), None, "{sql}: {db:?}");
        assert!(
            !db.message().contains("backtrace"),
            "{sql}: {}",
            db.message()
        );
    }
}
