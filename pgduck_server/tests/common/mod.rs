//! Starts a real pgduck_server on a private socket directory for each test.
#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The rows of a simple-protocol result, as text values.
pub fn simple_rows(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

/// A TCP port nobody listens on now (the socket name uses it too, and TCP tests bind it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub dir: PathBuf,
    pub port: u16,
    pub child: Child,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pgduck_server")
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[], &[])
    }

    /// Starts the server with extra flags and environment, and waits for its socket.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Server {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let port = free_port();
        // The counter keeps directories apart even if two tests draw the same free port.
        let dir = std::env::temp_dir().join(format!(
            "pgduck-test-{}-{}-{port}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("--unix_socket_directory")
            .arg(&dir)
            .arg("--port")
            .arg(port.to_string());
        if let Ok(ext) = std::env::var("PG_LAKE_DUCKDB_EXTENSIONS") {
            cmd.arg("--extensions_dir").arg(ext);
        }
        cmd.args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn pgduck_server");
        let server = Server { dir, port, child };
        server.wait_ready();
        server
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// Waits until the socket accepts connections: the file appears at bind(), a moment
    /// before listen(), so its existence alone is not readiness.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgduck_server did not accept connections on {}",
                self.socket().display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(&self.dir)
            .port(self.port)
            .user("test")
            .dbname("test");
        c
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, conn) = self
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        self.child.wait().unwrap()
    }
}

pub fn signal(pid: u32, sig: &str) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
