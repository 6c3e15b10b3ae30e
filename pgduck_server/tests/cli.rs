//! The command line as the original pgduck_server's: short flags, the last of a repeated
//! flag, accepted compatibility flags, exit status 1 on bad arguments, the summary of
//! --check_cli_params_only; and a start-up packet without `user`.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> Output {
    Command::new(common::binary()).args(args).output().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pgduck-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A server started with `args` only (plus the extensions directory), serving `socket`.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], socket: &std::path::Path) -> Spawned {
    let mut cmd = Command::new(common::binary());
    if let Ok(ext) = std::env::var("PG_LAKE_DUCKDB_EXTENSIONS") {
        cmd.arg("--extensions_dir").arg(ext);
    }
    let child = cmd
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut spawned = Spawned(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(socket).is_err() {
        if let Some(status) = spawned.0.try_wait().unwrap() {
            panic!("pgduck_server exited with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "no socket at {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    spawned
}

async fn select_one(dir: &std::path::Path, port: u16) -> i32 {
    let (client, conn) = tokio_postgres::Config::new()
        .host_path(dir)
        .port(port)
        .user("u")
        .dbname("d")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .query_one("SELECT 1::integer", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn short_flags_and_the_last_of_a_repeated_flag_start_a_server() {
    let dir = temp_dir("short");
    let (unused, port) = (free_port(), free_port());
    let (unused, port) = (unused.to_string(), port.to_string());
    let socket = dir.join(format!(".s.PGSQL.{port}"));
    let server = spawn(
        &[
            "-U",
            "/nonexistent-first",
            "-U",
            dir.to_str().unwrap(),
            "-P",
            &unused,
            "-P",
            &port,
            "-v",
            "-d",
            "--cache_on_write_max_size",
            "1000",
            "--no_extension_install",
        ],
        &socket,
    );
    assert!(!dir.join(format!(".s.PGSQL.{unused}")).exists());
    assert_eq!(select_one(&dir, port.parse().unwrap()).await, 1);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_cli_params_only_prints_the_configuration() {
    let missing = std::env::temp_dir().join(format!("pgduck-cli-{}-not-yet", std::process::id()));
    let out = run(&[
        "--check_cli_params_only",
        "-U",
        missing.to_str().unwrap(),
        "--port",
        "7000",
        "-P",
        "7001",
        "--memory_limit",
        "1GB",
        "--cache_on_write_max_size",
        "0",
        "--no_extension_install",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        &format!("unix_socket_directory: {}", missing.display()),
        "port: 7001",
        "memory_limit: 1GB",
        "cache_on_write_max_size: 0",
        "no_extension_install: true",
        "does not exist yet",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert!(!text.contains("port: 7000"));
    assert!(!missing.exists(), "checking creates nothing");
    // Without the check, a missing socket directory is an error.
    let out = run(&["-U", missing.to_str().unwrap(), "--port", "7002"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
}

#[test]
fn bad_arguments_exit_1_with_a_message() {
    for (args, says) in [
        (&["--no_such_flag"][..], "--no_such_flag"),
        (&["--port", "x"][..], "--port"),
        (&["-P", "70000"][..], "70000"),
        (
            &["--cache_on_write_max_size", "-5"][..],
            "cache_on_write_max_size",
        ),
        (
            &["--check_cli_params_only", "--memory_limit", "lots"][..],
            "--memory_limit",
        ),
        (
            &["--check_cli_params_only", "-U", "/etc/passwd"][..],
            "not a directory",
        ),
        (&["--port"][..], "--port"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "-U, --unix_socket_directory",
        "-P, --port",
        "-v, --verbose",
        "-d, --debug",
        "--cache_on_write_max_size",
        "--no_extension_install",
    ] {
        assert!(text.contains(flag), "--help lists {flag}: {text}");
    }
}

/// Reads messages until ReadyForQuery; returns their type bytes.
fn read_until_ready(s: &mut UnixStream) -> Vec<u8> {
    let mut kinds = Vec::new();
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).unwrap();
        let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).unwrap();
        kinds.push(head[0]);
        if head[0] == b'Z' {
            return kinds;
        }
    }
}

#[test]
fn a_startup_packet_without_user_is_served() {
    let server = common::Server::start();
    let mut s = UnixStream::connect(server.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut body = 196608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"database\0d\0\0");
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(body);
    s.write_all(&packet).unwrap();
    let kinds = read_until_ready(&mut s);
    assert_eq!(kinds.first(), Some(&b'R'), "{kinds:?}");
    assert!(!kinds.contains(&b'E'), "{kinds:?}");
    let sql = b"SELECT 1\0";
    let mut q = vec![b'Q'];
    q.extend(((sql.len() + 4) as u32).to_be_bytes());
    q.extend(sql);
    s.write_all(&q).unwrap();
    let kinds = read_until_ready(&mut s);
    assert_eq!(kinds, vec![b'T', b'D', b'C', b'Z']);
}
