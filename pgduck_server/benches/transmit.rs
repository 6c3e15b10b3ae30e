//! Benchmark harness (not a test): bulk streaming through TRANSMIT against the same
//! query run in-process with the duckdb crate, and the round trip of `SELECT 1`.
//!
//!     cargo bench -p pgduck_server --bench transmit            # 10 M rows
//!     PGDUCK_BENCH_ROWS=1000000 cargo bench -p pgduck_server --bench transmit
//!     PGDUCK_BENCH_SERVER_ARGS="--threads 1" cargo bench ...   # extra server flags
//!
//! Prints one line per measurement; the README records the figures.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use duckdb::arrow::array::{Array, AsArray, RecordBatch};
use duckdb::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType,
};
use futures::StreamExt;

fn query(rows: u64) -> String {
    format!(
        "SELECT i AS id, i * 0.5 AS amount, 'name-' || i AS name, DATE '2020-01-01' + (i % 1000)::INTEGER AS day, \
         TIMESTAMP '2020-01-01' + to_microseconds(i) AS ts, (i % 100000)::DECIMAL(12,2) / 7 AS price \
         FROM range({rows}) t(i)"
    )
}

struct Server {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server() -> Server {
    let port = 30_000 + (std::process::id() % 10_000) as u16;
    let dir = std::env::temp_dir().join(format!("pgduck-bench-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pgduck_server"))
        .arg("--unix_socket_directory")
        .arg(&dir)
        .args(["--port", &port.to_string()])
        .args(
            std::env::var("PGDUCK_BENCH_SERVER_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sock = dir.join(format!(".s.PGSQL.{port}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    // Ready once a connect succeeds: the socket file appears at bind(), before listen().
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, dir, port }
}

/// Reads every value of every column (strings byte by byte), as the TRANSMIT client
/// reads every byte of every row: the in-process side does the same minimal work
/// with the data that the socket side does.
fn touch(batch: &RecordBatch) -> u64 {
    let mut acc = 0u64;
    for col in batch.columns() {
        acc = acc.wrapping_add(col.null_count() as u64);
        let c = col.as_ref();
        match c.data_type() {
            DataType::Int64 => {
                acc = fold(acc, c.as_primitive::<Int64Type>().values(), |v| *v as u64)
            }
            DataType::Int32 => {
                acc = fold(acc, c.as_primitive::<Int32Type>().values(), |v| *v as u64)
            }
            DataType::Float64 => {
                acc = fold(acc, c.as_primitive::<Float64Type>().values(), |v| {
                    v.to_bits()
                })
            }
            DataType::Decimal128(_, _) => {
                acc = fold(acc, c.as_primitive::<Decimal128Type>().values(), |v| {
                    *v as u64
                })
            }
            DataType::Date32 => {
                acc = fold(acc, c.as_primitive::<Date32Type>().values(), |v| *v as u64)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                acc = fold(
                    acc,
                    c.as_primitive::<TimestampMicrosecondType>().values(),
                    |v| *v as u64,
                )
            }
            DataType::Utf8 => {
                for s in c.as_string::<i32>().iter().flatten() {
                    acc = fold(acc, s.as_bytes(), |b| *b as u64);
                }
            }
            other => panic!("bench: no reader for {other}"),
        }
    }
    acc
}

/// Newlines in `data`, every byte looked at. Counting into a byte per block of 128
/// lets the compiler compare 32 bytes per instruction; a `usize` count per byte
/// (`filter().count()`) runs at a fraction of that speed and made the client, which
/// shares the two cores with the server, a visible part of the measurement.
fn count_lines(data: &[u8]) -> u64 {
    data.chunks(128)
        .map(|block| block.iter().fold(0u8, |n, &c| n + (c == b'\n') as u8) as u64)
        .sum()
}

fn fold<T>(acc: u64, values: &[T], f: impl Fn(&T) -> u64) -> u64 {
    values.iter().fold(acc, |a, v| a.wrapping_add(f(v)))
}

fn in_process(sql: &str) -> (Duration, u64) {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    conn.execute_batch("SET TimeZone = 'UTC'").unwrap();
    let start = Instant::now();
    let mut stmt = conn.prepare(sql).unwrap();
    let (rows, sum) = stmt
        .stream_arrow([])
        .unwrap()
        .fold((0u64, 0u64), |(rows, sum), b| {
            (rows + b.num_rows() as u64, sum.wrapping_add(touch(&b)))
        });
    std::hint::black_box(sum);
    (start.elapsed(), rows)
}

/// CPU seconds (user + system) a process has used so far, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tick
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rows: u64 = std::env::var("PGDUCK_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let sql = query(rows);
    // Each run times both sides back to back and keeps their ratio: on a shared
    // machine whose speed drifts, the ratio of neighbouring runs is steadier than
    // the ratio of two separately taken medians.
    let runs: usize = std::env::var("PGDUCK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5);
    let server = start_server();
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(&server.dir)
        .port(server.port)
        .user("bench");
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);

    // Warm up both paths once.
    let _ = in_process(&query(100_000));
    let warm = client
        .copy_out(&format!("TRANSMIT {}", query(100_000)))
        .await
        .unwrap();
    warm.for_each(|_| async {}).await;

    let mut local = Vec::new();
    let mut remote = Vec::new();
    let mut bytes = 0usize;
    let (me, server_pid) = (std::process::id(), server.child.id());
    let (mut local_cpu, mut server_cpu, mut client_cpu) = (0.0, 0.0, 0.0);
    for _ in 0..runs {
        let before = cpu_seconds(me);
        let (t, n) = in_process(&sql);
        local_cpu += cpu_seconds(me) - before;
        assert_eq!(n, rows);
        local.push(t);
        let (server_before, client_before) = (cpu_seconds(server_pid), cpu_seconds(me));
        let start = Instant::now();
        let stream = client.copy_out(&format!("TRANSMIT {sql}")).await.unwrap();
        let (lines, b) = stream
            .fold((0u64, 0usize), |(l, b), chunk| async move {
                let chunk = chunk.unwrap();
                (l + count_lines(&chunk), b + chunk.len())
            })
            .await;
        remote.push(start.elapsed());
        server_cpu += cpu_seconds(server_pid) - server_before;
        client_cpu += cpu_seconds(me) - client_before;
        assert_eq!(lines, rows);
        bytes = b;
    }
    let mut ratios: Vec<f64> = local
        .iter()
        .zip(&remote)
        .map(|(l, r)| r.as_secs_f64() / l.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    local.sort();
    remote.sort();
    let (l, r) = (local[runs / 2], remote[runs / 2]);
    println!("bulk: {rows} rows x 6 columns, median of {runs} runs");
    println!(
        "  in-process duckdb (arrow batches, every value read): {:>8.3} s",
        l.as_secs_f64()
    );
    println!(
        "  TRANSMIT over unix socket:                           {:>8.3} s  ({:.1} MB COPY text, {:.2} M rows/s)",
        r.as_secs_f64(),
        bytes as f64 / 1e6,
        rows as f64 / r.as_secs_f64() / 1e6
    );
    println!(
        "  CPU per run: in-process {:.2} s; TRANSMIT server {:.2} s + client {:.2} s",
        local_cpu / runs as f64,
        server_cpu / runs as f64,
        client_cpu / runs as f64
    );
    println!(
        "  ratio TRANSMIT / in-process, median of the runs:     {:>8.2}x  (runs {})",
        ratios[runs / 2],
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );

    let mut lat = Vec::with_capacity(10_000);
    for i in 0..11_000 {
        let start = Instant::now();
        client.simple_query("SELECT 1").await.unwrap();
        if i >= 1_000 {
            lat.push(start.elapsed());
        }
    }
    lat.sort();
    println!(
        "SELECT 1 round trip over the socket (10000 runs): p50 {:.3} ms, p99 {:.3} ms",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );
    // The same statement in-process (prepare, execute, fetch the Arrow batch): the
    // floor the socket round trip stands on.
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let mut local = Vec::with_capacity(10_000);
    for i in 0..11_000 {
        let start = Instant::now();
        let mut stmt = conn.prepare("SELECT 1").unwrap();
        let rows: usize = stmt.stream_arrow([]).unwrap().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 1);
        if i >= 1_000 {
            local.push(start.elapsed());
        }
    }
    local.sort();
    println!(
        "SELECT 1 in-process with the duckdb crate (10000 runs): p50 {:.3} ms, p99 {:.3} ms",
        percentile(&local, 0.5).as_secs_f64() * 1e3,
        percentile(&local, 0.99).as_secs_f64() * 1e3
    );
}
