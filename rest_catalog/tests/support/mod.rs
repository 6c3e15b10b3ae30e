//! Test support: one real Postgres cluster per test binary (fresh database per
//! test) and an in-process catalog server bound to 127.0.0.1.

#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use clap::Parser;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    pub port: u16,
    _dir: PathBuf,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a Postgres binary as the `postgres` OS user when we are root (initdb refuses root).
fn pg_command(program: &str) -> Command {
    let path = format!("{PG_BIN}/{program}");
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rest-catalog-pg-")
            .tempdir()
            .unwrap()
            .keep();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:postgres", dir.to_str().unwrap()]);
                    c
                },
                "chown",
            );
        }
        let data = dir.join("data");
        let mut initdb = pg_command("initdb");
        initdb.args([
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(initdb, "initdb");
        let port = free_port();
        let mut start = pg_command("pg_ctl");
        start.args([
            "-D",
            data.to_str().unwrap(),
            "-l",
            dir.join("log").to_str().unwrap(),
            "-w",
            "-o",
            &format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                dir.display()
            ),
            "start",
        ]);
        run(start, "pg_ctl start");
        spawn_reaper(&data, &dir);
        Self { port, _dir: dir }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// Stops the cluster and removes its directory once this test process is gone
/// (a static is never dropped).
fn spawn_reaper(data: &Path, dir: &Path) {
    let stop = if is_root() {
        format!(
            "runuser -u postgres -- {PG_BIN}/pg_ctl -D {} stop -m immediate",
            data.display()
        )
    } else {
        format!("{PG_BIN}/pg_ctl -D {} stop -m immediate", data.display())
    };
    let script = format!(
        "while [ -d /proc/{pid} ]; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    use std::os::unix::process::CommandExt;
    // Never waited for: it is meant to outlive this process.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn the Postgres reaper");
}

pub fn postgres() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(Postgres::start)
}

/// A new, empty database; returns its URL.
pub async fn fresh_database() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let pg = postgres();
    let name = format!(
        "t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let (client, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    pg.url(&name)
}

pub async fn sql_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

pub struct TestCatalog {
    pub base: String,
    pub database_url: String,
    pub warehouse: tempfile::TempDir,
    pub http: reqwest::Client,
    pub token: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<rest_catalog::Result<()>>>,
}

/// Starts a catalog on a fresh database with `--auth none` plus `extra` flags.
pub async fn start(extra: &[&str]) -> TestCatalog {
    start_with_auth(&["--auth", "none"], extra).await
}

pub async fn start_with_auth(auth: &[&str], extra: &[&str]) -> TestCatalog {
    start_with_warehouse(None, auth, extra).await
}

/// Starts a catalog whose warehouse is `warehouse` (a temporary directory when `None`).
pub async fn start_with_warehouse(
    warehouse_uri: Option<&str>,
    auth: &[&str],
    extra: &[&str],
) -> TestCatalog {
    let database_url = fresh_database().await;
    let warehouse = tempfile::tempdir().unwrap();
    let mut argv = vec![
        "rest_catalog".to_string(),
        "--database-url".into(),
        database_url.clone(),
        "--warehouse".into(),
        warehouse_uri
            .unwrap_or(warehouse.path().to_str().unwrap())
            .into(),
    ];
    argv.extend(auth.iter().chain(extra).map(|s| s.to_string()));
    let args = rest_catalog::Args::try_parse_from(argv).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(rest_catalog::serve(args, listener, async {
        let _ = rx.await;
    }));
    let catalog = TestCatalog {
        base,
        database_url,
        warehouse,
        http: reqwest::Client::new(),
        token: None,
        shutdown: Some(tx),
        task: Some(task),
    };
    let ready = catalog
        .http
        .get(format!("{}/readyz", catalog.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    catalog
}

impl TestCatalog {
    /// Sends a request; returns the status and the JSON body (Null when empty).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    pub async fn head(&self, path: &str) -> u16 {
        self.call(Method::HEAD, path, None).await.0
    }

    pub async fn create_namespace(&self, ns: &str) {
        let (status, body) = self
            .post("/v1/namespaces", serde_json::json!({ "namespace": [ns] }))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn create_table(&self, ns: &str, name: &str) -> Value {
        let (status, body) = self
            .post(&format!("/v1/namespaces/{ns}/tables"), table_request(name))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestCatalog {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn table_request(name: &str) -> Value {
    serde_json::json!({
        "name": name,
        "schema": {
            "type": "struct",
            "schema-id": 0,
            "fields": [
                { "id": 1, "name": "id", "required": true, "type": "long" },
                { "id": 2, "name": "v", "required": false, "type": "string" }
            ]
        },
        "partition-spec": { "spec-id": 0, "fields": [ { "source-id": 1, "field-id": 1000, "name": "id_bucket", "transform": "bucket[4]" } ] }
    })
}

/// Asserts an Iceberg `ErrorModel` with this status and exception type.
pub fn assert_error(actual: (u16, Value), status: u16, kind: &str) {
    let (code, body) = actual;
    assert_eq!(code, status, "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(body["error"]["code"], status, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

// Requests and checks the API tests share.

pub fn add_column_commit(requirements: Value) -> Value {
    json!({
        "requirements": requirements,
        "updates": [
            { "action": "add-schema", "schema": { "type": "struct", "schema-id": 1, "fields": [
                { "id": 1, "name": "id", "required": true, "type": "long" },
                { "id": 2, "name": "v", "required": false, "type": "string" },
                { "id": 3, "name": "w", "required": false, "type": "int" } ] } },
            { "action": "set-current-schema", "schema-id": -1 }
        ]
    })
}

/// A request creating `name` through a staged create's commit, as PyIceberg
/// sends it (always with a set-location update).
pub fn staged_create_commit(location: &str) -> Value {
    let req = table_request("x");
    json!({
        "requirements": [ { "type": "assert-create" } ],
        "updates": [
            { "action": "upgrade-format-version", "format-version": 2 },
            { "action": "add-schema", "schema": req["schema"] },
            { "action": "set-current-schema", "schema-id": -1 },
            { "action": "set-location", "location": location }
        ]
    })
}

pub fn view_request(name: &str) -> Value {
    json!({
        "name": name,
        "schema": { "type": "struct", "schema-id": 0, "fields": [ { "id": 1, "name": "x", "required": false, "type": "long" } ] },
        "view-version": {
            "version-id": 1, "timestamp-ms": 1700000000000i64, "schema-id": 0,
            "summary": { "engine-name": "test" },
            "representations": [ { "type": "sql", "sql": "SELECT 1 AS x", "dialect": "duckdb" } ],
            "default-namespace": ["ns"]
        },
        "properties": {}
    })
}

pub async fn row_count(db: &tokio_postgres::Client, name: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM lake_catalog.iceberg_tables WHERE table_name = $1",
        &[&name],
    )
    .await
    .unwrap()
    .get(0)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A commit appending snapshot `id` to `main` of a table at `location`, as
/// PyIceberg sends it (asserting `main` is still at `parent`).
pub fn append_commit(location: &str, id: i64, parent: Option<i64>) -> Value {
    json!({
        "requirements": [ { "type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": parent } ],
        "updates": [
            { "action": "add-snapshot", "snapshot": {
                "snapshot-id": id, "parent-snapshot-id": parent, "sequence-number": 1,
                "timestamp-ms": now_ms() + id,
                "manifest-list": format!("{location}/metadata/snap-{id}.avro"),
                "summary": { "operation": "append" }, "schema-id": 0 } },
            { "action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": id }
        ]
    })
}

/// POSTs `body` with an Idempotency-Key; the future owns what it needs, so it can be spawned.
pub fn post_with_key(
    c: &TestCatalog,
    path: &str,
    key: &str,
    body: &Value,
) -> impl std::future::Future<Output = (u16, String)> + Send + 'static {
    let mut req = c
        .http
        .post(format!("{}{path}", c.base))
        .header("Idempotency-Key", key)
        .json(body);
    if let Some(token) = &c.token {
        req = req.bearer_auth(token);
    }
    async move {
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

/// One text per stored Idempotency-Key row: `expr` over `lake_catalog.rest_idempotency_keys`.
pub async fn idempotency_rows(c: &TestCatalog, expr: &str) -> Vec<String> {
    sql_client(&c.database_url)
        .await
        .query(
            &format!("SELECT {expr} FROM lake_catalog.rest_idempotency_keys"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Asserts a 400 `BadRequestException` whose message contains `names`.
pub fn assert_bad_request(actual: (u16, Value), names: &str) {
    let message = actual.1["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_error(actual, 400, "BadRequestException");
    assert!(message.contains(names), "{message:?} should name {names:?}");
}
