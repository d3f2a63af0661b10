//! Black-box: three real `meridian server` processes on loopback, written to through HTTP and
//! Debian's `etcdctl`; the leader is killed with SIGKILL while writes flow, then restarted; every
//! acknowledged write must be readable from every node and the replicas must agree.

use meridian_tests::process::{ServerOptions, ServerProcess};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

/// Starts `n` nodes and initialises them. Odd-numbered nodes run with `--worker-threads 1` (a
/// single-threaded runtime, as the playground gives each node on a small machine), even ones
/// with the default multi-threaded runtime, so both lead, follow, die and recover here.
fn start_cluster(dir: &Path, n: u64, ranges: u32) -> Vec<ServerProcess> {
    let nodes: Vec<ServerProcess> = (1..=n)
        .map(|i| {
            let opts = ServerOptions {
                args: if i % 2 == 1 {
                    vec!["--worker-threads".into(), "1".into()]
                } else {
                    vec![]
                },
                ..ServerOptions::default()
            };
            let data = dir.join(format!("node{i}"));
            ServerProcess::start_with(Path::new(BIN), i, &data, None, opts).expect("start node")
        })
        .collect();
    let eps: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let out = Command::new(BIN)
        .args([
            "cluster",
            "init",
            "--endpoints",
            &eps.join(","),
            "--ranges",
            &ranges.to_string(),
        ])
        .output()
        .expect("run init");
    assert!(
        out.status.success(),
        "cluster init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    nodes
}

fn etcdctl(endpoint: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=10s")
        .args(args)
        .output()
}

async fn http_put(
    http: &reqwest::Client,
    addr: &str,
    key: &str,
    value: &str,
    request_id: &str,
) -> Result<(), String> {
    let r = http
        .put(format!("http://{addr}/v1/kv/{key}"))
        .header("Idempotency-Key", request_id)
        .body(value.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ))
    }
}

async fn http_get_local(http: &reqwest::Client, addr: &str, key: &str) -> Option<String> {
    let r = http
        .get(format!("http://{addr}/v1/kv/{key}?consistency=local"))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    v["value"].as_str().map(|s| s.to_string())
}

async fn scan_local(http: &reqwest::Client, addr: &str) -> Option<Vec<(String, String)>> {
    let r = http
        .get(format!(
            "http://{addr}/v1/kv?prefix=&limit=10000&consistency=local"
        ))
        .send()
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    Some(
        v["kvs"]
            .as_array()?
            .iter()
            .map(|kv| {
                (
                    kv["key"].as_str().unwrap_or("").to_string(),
                    kv["value"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
    )
}

async fn leader_of_range(http: &reqwest::Client, addr: &str, range: u64) -> Option<u64> {
    let v: Value = http
        .get(format!("http://{addr}/v1/cluster"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["ranges"].as_array()?.iter().find(|r| r["id"] == range)?["leader"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_the_leader_while_writing_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3, 1);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();

    // Writes through HTTP and through etcdctl, on different nodes.
    for i in 0..10 {
        http_put(
            &http,
            &addrs[i % 3],
            &format!("http-{i}"),
            &format!("h{i}"),
            &format!("pre-{i}"),
        )
        .await
        .unwrap();
    }
    let out = etcdctl(&addrs[1], &["put", "etcd-key", "from-etcdctl"])
        .expect("etcdctl must be installed (Debian package etcd-client)");
    assert!(
        out.status.success(),
        "etcdctl put: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A writer that keeps writing while the leader dies; it records what was acknowledged.
    let leader = leader_of_range(&http, &addrs[0], 1)
        .await
        .expect("range 1 has a leader");
    let leader_idx = (leader - 1) as usize;
    let acked = Arc::new(parking_lot::Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (http, acked, stop) = (http.clone(), acked.clone(), stop.clone());
        let targets: Vec<String> = addrs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != leader_idx)
            .map(|(_, a)| a.clone())
            .collect();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 5_000 {
                let key = format!("w-{i:05}");
                let to = &targets[i as usize % targets.len()];
                if http_put(&http, to, &key, &format!("v{i}"), &format!("w-{i}"))
                    .await
                    .is_ok()
                {
                    acked.lock().insert(key);
                }
                i += 1;
            }
        })
    };
    let wait_acks = |n: usize| {
        let acked = acked.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while acked.lock().len() < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                acked.lock().len() >= n,
                "only {} writes acknowledged",
                acked.lock().len()
            );
        }
    };
    wait_acks(30).await;
    eprintln!("killing leader node {leader}");
    nodes[leader_idx].kill9();
    let before = acked.lock().len();
    wait_acks(before + 30).await; // the survivors elect a leader and go on
    eprintln!("survivors went on; restarting node {leader}");
    nodes[leader_idx]
        .restart()
        .expect("restart the killed node");
    eprintln!("restarted");
    let now = acked.lock().len();
    wait_acks(now + 20).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    eprintln!("checking {} acknowledged writes", acked.lock().len());
    // Every acknowledged write is readable from every node, including the restarted one.
    let acked: Vec<String> = acked.lock().iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for addr in &addrs {
        for key in &acked {
            loop {
                if http_get_local(&http, addr, key).await.is_some() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "acknowledged write {key} is missing on {addr}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // The replicas agree, key for key.
    let mut scans = Vec::new();
    loop {
        scans.clear();
        for addr in &addrs {
            scans.push(scan_local(&http, addr).await.unwrap_or_default());
        }
        if scans.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas disagree after recovery"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(scans[0].len() >= acked.len() + 11);
    // And a real etcd client reads them from the node that was killed.
    let out = etcdctl(&addrs[leader_idx], &["get", "etcd-key"]).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("from-etcdctl"),
        "etcdctl get: {:?}",
        out
    );
    let out = etcdctl(
        &addrs[leader_idx],
        &["get", "w-", "--prefix", "--keys-only"],
    )
    .unwrap();
    let keys: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.to_string())
        .collect();
    for k in &acked {
        assert!(
            keys.contains(k),
            "etcdctl does not list acknowledged key {k}"
        );
    }
    for n in &mut nodes {
        n.terminate().expect("clean stop on SIGTERM");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors_for_bad_input_and_bad_setup() {
    let dir = tempfile::tempdir().unwrap();
    // A node that is not part of a cluster says so.
    let lone = ServerProcess::start(Path::new(BIN), 7, &dir.path().join("lone"), None).unwrap();
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{}/v1/kv/a", lone.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_initialized");
    drop(lone);

    let mut nodes = start_cluster(&dir.path().join("c"), 1, 1);
    let addr = nodes[0].addr.clone();
    let big_key = "k".repeat(5000);
    let r = http
        .put(format!("http://{addr}/v1/kv/{big_key}"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "key_too_large"
    );
    // Initialising it again is refused with a clear code.
    let out = Command::new(BIN)
        .args(["cluster", "init", "--endpoints", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already_initialized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A data dir that belongs to another node id is refused at start.
    nodes[0].terminate().unwrap();
    let wrong = ServerProcess::start(Path::new(BIN), 9, &dir.path().join("c").join("node1"), None);
    assert!(wrong.is_err(), "a node started on another node's data dir");
    let log = std::fs::read_to_string(dir.path().join("c").join("node1.log")).unwrap_or_default();
    assert!(log.contains("belongs to node 1"), "{log}");
}
