//! Object-storage credentials: what a session can read of the server's, what the
//! server logs of a client's, and what a client's `CREATE SECRET` may change for the
//! other sessions.

mod common;

use std::io::Read;

use common::Server;
use tokio_postgres::SimpleQueryMessage;

const KEY_ID: &str = "AKIAPGDUCKTEST";
const SECRET: &str = "server-secret-4f1c9e";
const TOKEN: &str = "server-session-token-77ab";
const CLIENT_SECRET: &str = "client-secret-d00d";

fn with_s3_keys(args: &[&str]) -> Server {
    Server::start_with(
        args,
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", TOKEN),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ],
    )
}

/// Every value of every row `sql` returns, as text.
async fn all_text(client: &tokio_postgres::Client, sql: &str) -> String {
    let mut text = String::new();
    for m in client.simple_query(sql).await.unwrap() {
        if let SimpleQueryMessage::Row(r) = m {
            for i in 0..r.len() {
                text.push_str(r.get(i).unwrap_or("NULL"));
                text.push('\t');
            }
            text.push('\n');
        }
    }
    text
}

#[tokio::test]
async fn sessions_cannot_read_the_servers_keys() {
    let server = with_s3_keys(&[]);
    let client = server.connect().await;
    let mut seen = String::new();
    for sql in [
        "SELECT current_setting('s3_secret_access_key'), current_setting('s3_session_token'), \
         current_setting('s3_access_key_id')",
        "SELECT * FROM duckdb_settings()",
        "SELECT * FROM duckdb_secrets()",
    ] {
        seen.push_str(&all_text(&client, sql).await);
    }
    for value in [SECRET, TOKEN] {
        assert!(
            !seen.contains(value),
            "{value} readable by a session:\n{seen}"
        );
    }
    // The keys are still in use, as the server's secret.
    let secret = all_text(
        &client,
        "SELECT name FROM which_secret('s3://lake/x.parquet', 's3')",
    )
    .await;
    assert_eq!(secret.trim(), "pg_lake_s3");
}

#[tokio::test]
async fn verbose_logs_redact_a_clients_secret() {
    logs_redact_a_clients_secret("--verbose").await;
}

/// `--debug` logs each statement as the original's does, redacted the same way.
#[tokio::test]
async fn debug_logs_statements_and_redacts_a_clients_secret() {
    logs_redact_a_clients_secret("--debug").await;
}

async fn logs_redact_a_clients_secret(flag: &str) {
    let mut server = with_s3_keys(&[flag]);
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SECRET mine (TYPE s3, KEY_ID 'k', SECRET '{CLIENT_SECRET}', SCOPE 's3://mine/')"
        ))
        .await
        .unwrap();
    let prepared = client
        .prepare(&format!(
            "CREATE OR REPLACE SECRET mine (TYPE s3, KEY_ID 'k', SECRET '{CLIENT_SECRET}', \
             SCOPE 's3://mine/')"
        ))
        .await
        .unwrap();
    client.execute(&prepared, &[]).await.unwrap();
    drop(client);
    server.terminate();
    let mut log = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("CREATE SECRET mine"),
        "statement not logged:\n{log}"
    );
    assert!(log.contains("query (extended)"), "{log}");
    for value in [CLIENT_SECRET, SECRET, TOKEN] {
        assert!(!log.contains(value), "{value} in the log:\n{log}");
    }
}

#[tokio::test]
async fn a_client_secret_cannot_replace_the_servers() {
    let server = with_s3_keys(&[]);
    let client = server.connect().await;
    let other = server.connect().await;
    for sql in [
        // What broke the extension: no endpoint, the same (default) scope.
        "CREATE SECRET mine (TYPE s3, KEY_ID 'a', SECRET 'b')".to_owned(),
        "CREATE SECRET mine (TYPE s3, KEY_ID 'a', SECRET 'b', SCOPE 's3://')".to_owned(),
        "CREATE OR REPLACE SECRET pg_lake_s3 (TYPE s3, KEY_ID 'a', SECRET 'b')".to_owned(),
        "DROP SECRET pg_lake_s3".to_owned(),
    ] {
        let err = client.batch_execute(&sql).await.expect_err(&sql);
        let db = err.as_db_error().unwrap();
        assert_eq!(db.code().code(), "42501", "{sql}: {}", db.message());
    }
    // A bucket of the client's own is allowed; it wins there only, for every session.
    client
        .batch_execute("CREATE SECRET mine (TYPE s3, KEY_ID 'a', SECRET 'b', SCOPE 's3://mine/')")
        .await
        .unwrap();
    let which = |url: &'static str| {
        let other = &other;
        async move {
            all_text(
                other,
                &format!("SELECT name FROM which_secret('{url}', 's3')"),
            )
            .await
        }
    };
    assert_eq!(which("s3://lake/x.parquet").await.trim(), "pg_lake_s3");
    assert_eq!(which("s3://mine/x.parquet").await.trim(), "mine");
}

#[tokio::test]
async fn without_server_credentials_a_client_may_add_an_unscoped_secret() {
    let server = Server::start();
    let client = server.connect().await;
    client
        .batch_execute("CREATE SECRET mine (TYPE s3, KEY_ID 'a', SECRET 'b')")
        .await
        .unwrap();
    let which = all_text(
        &client,
        "SELECT name FROM which_secret('s3://any/x.parquet', 's3')",
    )
    .await;
    assert_eq!(which.trim(), "mine");
}
