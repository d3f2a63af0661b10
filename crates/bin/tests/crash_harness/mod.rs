//! The harness of the crash-point and corruption tests: three real `meridian server` processes
//! built with the `failpoints` feature, a ledger of idempotent writes, and local reads per node.
#![allow(dead_code)] // each test binary uses a part of it
use futures::StreamExt;
use meridian_tests::process::{ServerOptions, ServerProcess};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_meridian");
pub(crate) const FP_FILE_ENV: &str = "MERIDIAN_FAILPOINTS_FILE";
/// Concurrent writers: enough that cuts land with writes in flight.
pub(crate) const WRITERS: usize = 8;

/// One write, its idempotency key and, once acknowledged, its revision.
#[derive(Clone, Debug)]
pub(crate) struct Write {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) id: String,
    pub(crate) revision: Option<u64>,
}

impl Write {
    pub(crate) fn new(prefix: &str, i: usize) -> Self {
        Write {
            key: format!("{prefix}-{i:05}"),
            value: format!("value-of-{prefix}-{i}"),
            id: format!("req-{prefix}-{i}"),
            revision: None,
        }
    }
}

/// What a local read on one node shows for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) value: String,
    pub(crate) version: u64,
    pub(crate) mod_revision: u64,
}

pub(crate) struct Cluster {
    pub(crate) dir: PathBuf,
    pub(crate) nodes: Vec<ServerProcess>,
    pub(crate) http: reqwest::Client,
    /// Every write sent, by key.
    pub(crate) ledger: BTreeMap<String, Write>,
}

impl Cluster {
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Self {
        let nodes: Vec<ServerProcess> = (1..=3u64)
            .map(|i| {
                let opts = ServerOptions {
                    args: args.iter().map(|s| s.to_string()).collect(),
                    env: vec![(
                        FP_FILE_ENV.to_string(),
                        fp_file(dir, i as usize - 1).display().to_string(),
                    )],
                    cwd: Some(dir.to_path_buf()),
                };
                ServerProcess::start_with(
                    Path::new(BIN),
                    i,
                    &dir.join(format!("node{i}")),
                    None,
                    opts,
                )
                .expect("start node")
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
                "1",
            ])
            .output()
            .expect("run init");
        assert!(
            out.status.success(),
            "cluster init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster {
            dir: dir.to_path_buf(),
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            ledger: BTreeMap::new(),
        }
    }

    pub(crate) fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    pub(crate) fn log(&self, idx: usize) -> String {
        std::fs::read_to_string(self.nodes[idx].log_path()).unwrap_or_default()
    }

    /// Arms `spec` (`name=actions`) on a running node and waits until the node has read it.
    pub(crate) fn arm(&self, idx: usize, spec: &str) {
        let name = spec.split('=').next().unwrap();
        let before = self.log(idx).matches("armed").count();
        std::fs::write(fp_file(&self.dir, idx), spec).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.log(idx).matches("armed").count() == before {
            assert!(Instant::now() < deadline, "node {idx} did not arm {name}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn disarm(&self, idx: usize) {
        let _ = std::fs::remove_file(fp_file(&self.dir, idx));
    }

    /// The index of the leader of range 1, as the running nodes see it.
    pub(crate) async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for n in self.nodes.iter().filter(|n| n.is_running()) {
                if let Some(l) = leader_of_range(&self.http, &n.addr, 1).await
                    && let Some(i) = self.nodes.iter().position(|n| n.id == l)
                    && self.nodes[i].is_running()
                {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "range 1 has no leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes `prefix-0..n` through `targets` and waits for every acknowledgement.
    pub(crate) async fn write_all(&mut self, prefix: &str, n: usize, targets: &[usize]) {
        self.write_with(prefix, n, targets, WRITERS * 4).await
    }

    /// Like [`Cluster::write_all`], one write at a time, so each is its own log entry (a leader
    /// batches concurrent writes into one): for tests that need the log to grow by `n`.
    pub(crate) async fn write_each_alone(&mut self, prefix: &str, n: usize, targets: &[usize]) {
        self.write_with(prefix, n, targets, 1).await
    }

    async fn write_with(&mut self, prefix: &str, n: usize, targets: &[usize], concurrency: usize) {
        let writes: Vec<Write> = (0..n).map(|i| Write::new(prefix, i)).collect();
        let addrs = self.addrs();
        let targets: Vec<String> = targets.iter().map(|&i| addrs[i].clone()).collect();
        for w in &writes {
            self.ledger.insert(w.key.clone(), w.clone());
        }
        let http = self.http.clone();
        let results: Vec<(String, u64)> = futures::stream::iter(writes.into_iter().enumerate())
            .map(|(i, w)| {
                let (http, to) = (http.clone(), targets[i % targets.len()].clone());
                async move {
                    let rev = put_until_acked(&http, &[to], &w).await;
                    (w.key, rev)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for (k, rev) in results {
            self.ledger.get_mut(&k).unwrap().revision = Some(rev);
        }
    }

    /// Arms `point` on node `target`, writes through the other nodes until it cuts itself, goes
    /// on writing until the survivors acknowledged `after_cut` more, restarts it without the
    /// point, retries every write with its idempotency key and checks every node.
    pub(crate) async fn crash_round(
        &mut self,
        point: &str,
        action: &str,
        target: usize,
        after_cut: usize,
    ) {
        let started = Instant::now();
        let prefix = point.replace("::", "-");
        self.arm(target, &format!("{point}={action}"));
        let addrs = self.addrs();
        let others: Vec<String> = (0..3)
            .filter(|&i| i != target && self.nodes[i].is_running())
            .map(|i| addrs[i].clone())
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (http, stop, acked, prefix) = (
                self.http.clone(),
                stop.clone(),
                acked.clone(),
                prefix.clone(),
            );
            tokio::spawn(async move {
                let next = Arc::new(AtomicUsize::new(0));
                let tasks: Vec<_> = (0..WRITERS)
                    .map(|_| {
                        let (http, stop, acked, next, prefix, others) = (
                            http.clone(),
                            stop.clone(),
                            acked.clone(),
                            next.clone(),
                            prefix.clone(),
                            others.clone(),
                        );
                        tokio::spawn(async move {
                            let mut mine = Vec::new();
                            while !stop.load(Ordering::Relaxed) {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let mut w = Write::new(&prefix, i);
                                let to = &others[i % others.len()];
                                if let Ok(rev) = http_put(&http, to, &w).await {
                                    w.revision = Some(rev);
                                    acked.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                mine.push(w);
                            }
                            mine
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await.unwrap());
                }
                all
            })
        };
        let status =
            tokio::task::block_in_place(|| self.nodes[target].wait_exit(Duration::from_secs(30)));
        assert!(
            status.is_some(),
            "crash point {point} was not reached on node {}",
            target + 1
        );
        assert!(
            self.log(target)
                .contains(&format!("crash point {point} reached")),
            "node {} exited, but not at {point}",
            target + 1
        );
        let at_cut = acked.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked.load(Ordering::Relaxed) < at_cut + after_cut {
            assert!(
                Instant::now() < deadline,
                "the survivors did not go on after {point}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let writes = writer.await.unwrap();
        let n_acked = writes.iter().filter(|w| w.revision.is_some()).count();
        self.disarm(target);
        self.nodes[target].restart().expect("restart after the cut");
        // Retry every write of the round through the restarted node, with the same idempotency
        // key: an unacknowledged one is applied at most once more, an acknowledged one answers
        // with its first revision.
        let http = self.http.clone();
        let to = self.nodes[target].addr.clone();
        let retried: Vec<(Write, u64)> = futures::stream::iter(writes)
            .map(|w| {
                let (http, to) = (http.clone(), to.clone());
                async move {
                    let rev = put_until_acked(&http, &[to], &w).await;
                    (w, rev)
                }
            })
            .buffer_unordered(WRITERS * 4)
            .collect()
            .await;
        for (mut w, rev) in retried {
            if let Some(first) = w.revision {
                assert_eq!(
                    first, rev,
                    "retry of acknowledged {} (id {}) after {point} got another revision",
                    w.key, w.id
                );
            }
            w.revision = Some(rev);
            self.ledger.insert(w.key.clone(), w);
        }
        self.check_all_nodes(point).await;
        eprintln!(
            "{point}: node {} cut, {n_acked} writes acknowledged in the round, all checked in {:?}",
            target + 1,
            started.elapsed()
        );
    }

    /// Every node, from its own replica, shows exactly the ledger: each key once, its value,
    /// version 1 and the acknowledged revision.
    pub(crate) async fn check_all_nodes(&self, after: &str) {
        let mut revisions: Vec<u64> = self.ledger.values().filter_map(|w| w.revision).collect();
        revisions.sort_unstable();
        revisions.dedup();
        assert_eq!(
            revisions.len(),
            self.ledger.len(),
            "two writes acknowledged with one revision"
        );
        let want: BTreeMap<String, Seen> = self
            .ledger
            .values()
            .map(|w| {
                (
                    w.key.clone(),
                    Seen {
                        value: w.value.clone(),
                        version: 1,
                        mod_revision: w.revision.expect("every write acknowledged"),
                    },
                )
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in &self.nodes {
            loop {
                let got = scan_local(&self.http, &n.addr).await;
                if got.as_ref() == Some(&want) {
                    break;
                }
                if Instant::now() > deadline {
                    let got = got.unwrap_or_default();
                    let wrong: Vec<_> = want
                        .iter()
                        .filter(|(k, v)| got.get(*k) != Some(v))
                        .take(5)
                        .map(|(k, v)| (k.clone(), v.clone(), got.get(k).cloned()))
                        .collect();
                    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
                    panic!(
                        "after {after}, node {} differs from the acknowledged writes \
                         ({} keys, {} wanted); wrong (key, wanted, seen): {wrong:?}; extra: {extra:?}",
                        n.id,
                        got.len(),
                        want.len()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    pub(crate) fn stop_all(&mut self) {
        for n in &mut self.nodes {
            n.terminate().expect("clean stop on SIGTERM");
        }
    }
}

pub(crate) fn fp_file(dir: &Path, idx: usize) -> PathBuf {
    dir.join(format!("node{}.failpoints", idx + 1))
}

pub(crate) async fn http_put(http: &reqwest::Client, addr: &str, w: &Write) -> Result<u64, String> {
    let r = http
        .put(format!("http://{addr}/v1/kv/{}", w.key))
        .header("Idempotency-Key", &w.id)
        .body(w.value.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!(
            "{}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    v["revision"]
        .as_u64()
        .ok_or_else(|| format!("no revision in {v}"))
}

/// Sends `w` (same idempotency key every time) until it is acknowledged.
pub(crate) async fn put_until_acked(http: &reqwest::Client, to: &[String], w: &Write) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        match http_put(http, &to[attempt % to.len()], w).await {
            Ok(rev) => return rev,
            Err(e) if Instant::now() > deadline => {
                panic!("write {} never acknowledged: {e}", w.key)
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        attempt += 1;
    }
}

/// Every key on one node, read from its own replica (all pages).
pub(crate) async fn scan_local(
    http: &reqwest::Client,
    addr: &str,
) -> Option<BTreeMap<String, Seen>> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("http://{addr}/v1/kv?prefix=&limit=10000&consistency=local");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let v: Value = http.get(url).send().await.ok()?.json().await.ok()?;
        for kv in v["kvs"].as_array()? {
            out.insert(
                kv["key"].as_str()?.to_string(),
                Seen {
                    value: kv["value"].as_str()?.to_string(),
                    version: kv["version"].as_u64()?,
                    mod_revision: kv["mod_revision"].as_u64()?,
                },
            );
        }
        if v["more"].as_bool() != Some(true) {
            return Some(out);
        }
        after = out.keys().next_back().cloned();
    }
}

pub(crate) async fn local_value(http: &reqwest::Client, addr: &str, key: &str) -> Option<String> {
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

pub(crate) async fn leader_of_range(http: &reqwest::Client, addr: &str, range: u64) -> Option<u64> {
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

/// Timing flags for quick elections on a loaded machine.
pub(crate) const FAST: [&str; 6] = [
    "--heartbeat-interval-ms",
    "100",
    "--election-timeout-min-ms",
    "400",
    "--election-timeout-max-ms",
    "800",
];
