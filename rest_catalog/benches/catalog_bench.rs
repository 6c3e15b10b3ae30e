//! Benchmark harness (not a test): commits per second and loadTable p50/p99 at
//! 1 and 16 concurrent clients (16 on one hot table, and 16 on a table each),
//! against a real Postgres and a local warehouse.
//!
//! `cargo bench -p rest_catalog --bench catalog_bench`
//! (BENCH_COMMITS_PER_CLIENT, BENCH_LOADS_PER_CLIENT override the sizes.)

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Appends one snapshot, re-reading and retrying on 409; returns the retries.
async fn commit_one(http: &reqwest::Client, url: &str, snapshot_id: i64) -> u64 {
    let mut retries = 0;
    loop {
        let load: Value = http
            .get(format!("{url}?snapshots=refs"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let m = &load["metadata"];
        let parent = m["current-snapshot-id"].as_i64().filter(|id| *id != -1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let body = json!({
            "requirements": [ { "type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": parent } ],
            "updates": [
                { "action": "add-snapshot", "snapshot": {
                    "snapshot-id": snapshot_id, "parent-snapshot-id": parent,
                    "sequence-number": m["last-sequence-number"].as_i64().unwrap() + 1,
                    "timestamp-ms": now,
                    "manifest-list": format!("{}/metadata/snap-{snapshot_id}.avro", m["location"].as_str().unwrap()),
                    "summary": { "operation": "append" }, "schema-id": 0 } },
                { "action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": snapshot_id }
            ]
        });
        let status = http
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        match status {
            200 => return retries,
            409 => retries += 1,
            other => panic!("commit answered {other}"),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let commits_per_client = env_or("BENCH_COMMITS_PER_CLIENT", 25);
    let loads_per_client = env_or("BENCH_LOADS_PER_CLIENT", 200);
    let catalog = support::start(&[]).await;
    catalog.create_namespace("bench").await;
    println!(
        "clients  tables  commits  commits/s  client-retries  snapshots/table  load-p50  load-p99  loads/s"
    );
    // One hot table shared by every client, then one table per client.
    for (clients, tables) in [(1usize, 1usize), (16, 1), (16, 16)] {
        let mut urls = Vec::with_capacity(tables);
        for t in 0..tables {
            let table = format!("c{clients}_t{tables}_{t}");
            catalog.create_table("bench", &table).await;
            urls.push(format!(
                "{}/v1/namespaces/bench/tables/{table}",
                catalog.base
            ));
        }

        let started = Instant::now();
        let committers = (0..clients).map(|c| {
            let (http, url) = (reqwest::Client::new(), urls[c % tables].clone());
            tokio::spawn(async move {
                let mut retries = 0;
                for i in 0..commits_per_client {
                    retries += commit_one(&http, &url, (c * 100_000 + i + 1) as i64).await;
                }
                retries
            })
        });
        let retries: u64 = futures::future::join_all(committers)
            .await
            .into_iter()
            .map(Result::unwrap)
            .sum();
        let commit_secs = started.elapsed().as_secs_f64();
        let commits = clients * commits_per_client;

        let started = Instant::now();
        let loaders = (0..clients).map(|c| {
            let (http, url) = (reqwest::Client::new(), urls[c % tables].clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(loads_per_client);
                for _ in 0..loads_per_client {
                    let t = Instant::now();
                    let resp = http.get(&url).send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    resp.bytes().await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        });
        let mut latencies: Vec<Duration> = futures::future::join_all(loaders)
            .await
            .into_iter()
            .flat_map(Result::unwrap)
            .collect();
        let load_secs = started.elapsed().as_secs_f64();
        latencies.sort();
        println!(
            "{clients:>7}  {tables:>6}  {commits:>7}  {:>9.1}  {retries:>14}  {:>15}  {:>8.2?}  {:>8.2?}  {:>7.0}",
            commits as f64 / commit_secs,
            commits / tables,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies.len() as f64 / load_secs,
        );
    }
    catalog.stop().await;
}
