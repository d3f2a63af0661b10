//! Crash safety of storage, on real `meridian server` processes. This test's dev-dependencies
//! build `meridian` with the `failpoints` feature, so the binary carries the crash points of
//! `meridian_storage::failpoints`; a node is armed through the file named by
//! `MERIDIAN_FAILPOINTS_FILE` once the load to cut is flowing (or through `FAILPOINTS` at a
//! restart), cuts itself with `abort()` at the point, and is restarted without it.
//!
//! After every cut: every acknowledged write is on every node with its value, `version` 1 and
//! the `mod_revision` its acknowledgement gave (a write applied twice would show version 2 and a
//! later revision); every write is retried with its idempotency key until acknowledged, and a
//! retry of an acknowledged write returns the first revision; the keys on each node are exactly
//! the written ones; the restarted node serves the same data from its own replica.
//!
//! Also: a log record or a snapshot with a bad checksum on a stopped node's disk is reported as
//! `corruption` at ERROR and its value is never served.

use futures::StreamExt;
use meridian_storage::{DiskStore, DiskStoreConfig, LogStore, encode_record};
use meridian_tests::process::{ServerOptions, ServerProcess};
use meridian_types::GroupId;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");
const FP_FILE_ENV: &str = "MERIDIAN_FAILPOINTS_FILE";
/// Concurrent writers: enough that cuts land with writes in flight.
const WRITERS: usize = 8;

/// One write, its idempotency key and, once acknowledged, its revision.
#[derive(Clone, Debug)]
struct Write {
    key: String,
    value: String,
    id: String,
    revision: Option<u64>,
}

impl Write {
    fn new(prefix: &str, i: usize) -> Self {
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
struct Seen {
    value: String,
    version: u64,
    mod_revision: u64,
}

struct Cluster {
    dir: PathBuf,
    nodes: Vec<ServerProcess>,
    http: reqwest::Client,
    /// Every write sent, by key.
    ledger: BTreeMap<String, Write>,
}

impl Cluster {
    fn start(dir: &Path, args: &[&str]) -> Self {
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

    fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    fn log(&self, idx: usize) -> String {
        std::fs::read_to_string(self.nodes[idx].log_path()).unwrap_or_default()
    }

    /// Arms `spec` (`name=actions`) on a running node and waits until the node has read it.
    fn arm(&self, idx: usize, spec: &str) {
        let name = spec.split('=').next().unwrap();
        let before = self.log(idx).matches("armed").count();
        std::fs::write(fp_file(&self.dir, idx), spec).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.log(idx).matches("armed").count() == before {
            assert!(Instant::now() < deadline, "node {idx} did not arm {name}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn disarm(&self, idx: usize) {
        let _ = std::fs::remove_file(fp_file(&self.dir, idx));
    }

    /// The index of the leader of range 1, as the running nodes see it.
    async fn leader(&self) -> usize {
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
    async fn write_all(&mut self, prefix: &str, n: usize, targets: &[usize]) {
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
            .buffer_unordered(WRITERS * 4)
            .collect()
            .await;
        for (k, rev) in results {
            self.ledger.get_mut(&k).unwrap().revision = Some(rev);
        }
    }

    /// Arms `point` on node `target`, writes through the other nodes until it cuts itself, goes
    /// on writing until the survivors acknowledged `after_cut` more, restarts it without the
    /// point, retries every write with its idempotency key and checks every node.
    async fn crash_round(&mut self, point: &str, action: &str, target: usize, after_cut: usize) {
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
    async fn check_all_nodes(&self, after: &str) {
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

    fn stop_all(&mut self) {
        for n in &mut self.nodes {
            n.terminate().expect("clean stop on SIGTERM");
        }
    }
}

fn fp_file(dir: &Path, idx: usize) -> PathBuf {
    dir.join(format!("node{}.failpoints", idx + 1))
}

async fn http_put(http: &reqwest::Client, addr: &str, w: &Write) -> Result<u64, String> {
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
async fn put_until_acked(http: &reqwest::Client, to: &[String], w: &Write) -> u64 {
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
async fn scan_local(http: &reqwest::Client, addr: &str) -> Option<BTreeMap<String, Seen>> {
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

async fn local_value(http: &reqwest::Client, addr: &str, key: &str) -> Option<String> {
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

/// Timing flags for quick elections on a loaded machine.
const FAST: [&str; 6] = [
    "--heartbeat-interval-ms",
    "100",
    "--election-timeout-min-ms",
    "400",
    "--election-timeout-max-ms",
    "800",
];

/// Cuts around the write path: before/after the journal write, before/after the fsync (written
/// but not durable; durable but not acknowledged), before/after applying an entry. The leader
/// is cut (it appends, fsyncs and applies every write before answering), then a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cuts_on_the_write_path_lose_nothing_acknowledged_and_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), &FAST);
    let all = [0, 1, 2];
    c.write_all("before", 50, &all).await;
    for point in [
        "storage::append::before_write",
        "storage::append::after_write",
        "storage::flusher::before_fsync",
        "storage::flusher::after_fsync",
        "consensus::apply::before",
        "consensus::apply::after",
    ] {
        let leader = c.leader().await;
        c.crash_round(point, "return", leader, 20).await;
    }
    // A follower cut between its fsync and its answer to the leader.
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    c.crash_round("storage::flusher::after_fsync", "return", follower, 20)
        .await;
    c.stop_all();
}

/// Cuts while a snapshot is written (temporary file durable but not renamed; renamed; durable
/// but the log it covers not yet purged) on a follower and on the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cuts_while_writing_a_snapshot_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    args.extend(["--snapshot-logs-max", "30"]);
    let mut c = Cluster::start(dir.path(), &args);
    c.write_all("before", 40, &[0, 1, 2]).await;
    for (i, point) in [
        "storage::blob::after_tmp_write",
        "storage::blob::after_rename",
        "consensus::snapshot::build::after_save",
    ]
    .into_iter()
    .enumerate()
    {
        let leader = c.leader().await;
        let target = if i % 2 == 0 { (leader + 1) % 3 } else { leader };
        c.crash_round(point, "return", target, 40).await;
    }
    c.stop_all();
}

/// A follower is down while the others write past the log they keep after a snapshot (5,000
/// entries), then the leader dies too, so the other follower, which has purged its log, leads
/// and must send the lagging node a snapshot. (A leader keeps the log a down follower still
/// needs while it retries it, so only a new leader sends the snapshot.) The lagging node is cut
/// before the received snapshot is saved, then after it is saved but before anything else knows
/// of it, then restarted clean. Last, a follower is cut between recording a purge and purging.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cuts_while_installing_a_snapshot_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    args.extend(["--snapshot-logs-max", "200"]);
    let mut c = Cluster::start(dir.path(), &args);
    c.write_all("before", 20, &[0, 1, 2]).await;
    let leader = c.leader().await;
    let (lagging, other) = ((leader + 1) % 3, (leader + 2) % 3);
    c.nodes[lagging].kill9();
    c.write_all("bulk", 5_700, &[leader, other]).await;
    // The other follower purges its log as soon as a snapshot passes 5,000 + what it keeps.
    let deadline = Instant::now() + Duration::from_secs(20);
    while last_snapshot_index(&c.log(other)) < 5_400 {
        assert!(
            Instant::now() < deadline,
            "the other follower built no late snapshot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.nodes[leader].kill9();
    for point in [
        "consensus::snapshot::install::before_save",
        "consensus::snapshot::install::after_save",
    ] {
        c.nodes[lagging].set_env("FAILPOINTS", Some(&format!("{point}=return")));
        c.nodes[lagging]
            .restart()
            .expect("restart the lagging node");
        let status =
            tokio::task::block_in_place(|| c.nodes[lagging].wait_exit(Duration::from_secs(30)));
        assert!(status.is_some(), "{point} was not reached");
        assert!(
            c.log(lagging)
                .contains(&format!("crash point {point} reached")),
            "the lagging node exited, but not at {point}"
        );
    }
    c.nodes[lagging].set_env("FAILPOINTS", None);
    c.nodes[lagging]
        .restart()
        .expect("restart the lagging node");
    c.write_all("after", 20, &[lagging, other]).await;
    c.nodes[leader].restart().expect("restart the old leader");
    // The snapshot saved before the second cut is what the lagging node restarts from: its
    // log (which ends thousands of entries before it) is behind its applied state.
    c.check_all_nodes("the snapshot install cuts").await;
    // A follower purges its log after each snapshot (every 200 entries).
    let leader = c.leader().await;
    c.crash_round(
        "consensus::log::purge::after_mark",
        "return",
        (leader + 1) % 3,
        20,
    )
    .await;
    c.stop_all();
}

/// The highest `index=Some(N)` among the "built snapshot" lines of a node's log.
fn last_snapshot_index(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("built snapshot"))
        .filter_map(|l| {
            let rest = &l[l.find("Some(")? + 5..];
            rest[..rest.find(')')?].parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Every node is cut at once right before an fsync, with writes in flight (a whole-cluster
/// crash): whatever was acknowledged is there after the restart, exactly once, and every write
/// retried with its idempotency key is applied once.
///
/// What this cannot catch: an acknowledgement sent before the fsync. A killed process loses only
/// its own buffers, and by the time a write is acknowledged the journal bytes have left the
/// engine's buffer for the OS page cache (committing writes to the meta keyspace flushes it),
/// which survives the kill. Only losing the page cache (a power cut, or a store that drops
/// unsynced writes, as the deterministic simulation's does) shows that bug; the storage test
/// `an_append_is_acknowledged_only_after_its_fsync` checks the order directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_cluster_cut_before_fsync_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), &FAST);
    c.write_all("before", 20, &[0, 1, 2]).await;
    let leader = c.leader().await;
    // Wait a while at the point before cutting, so that anything answered too early reaches the
    // client before the cut.
    for i in 0..3 {
        c.arm(i, "storage::flusher::before_fsync=return(500)");
    }
    let addr = c.nodes[leader].addr.clone();
    let mut writes: Vec<Write> = (0..WRITERS).map(|i| Write::new("cut", i)).collect();
    let results = futures::future::join_all(
        writes
            .iter()
            .map(|w| http_put(&c.http, &addr, w))
            .collect::<Vec<_>>(),
    )
    .await;
    for (w, r) in writes.iter_mut().zip(results) {
        w.revision = r.ok();
    }
    for i in 0..3 {
        let exited = tokio::task::block_in_place(|| c.nodes[i].wait_exit(Duration::from_secs(10)));
        if exited.is_none() {
            c.nodes[i].kill9(); // it never fsynced: the power cut takes it anyway
        }
    }
    let acked: Vec<Write> = writes
        .iter()
        .filter(|w| w.revision.is_some())
        .cloned()
        .collect();
    eprintln!(
        "{} of {} writes acknowledged before the cut",
        acked.len(),
        writes.len()
    );
    for i in 0..3 {
        c.disarm(i);
        c.nodes[i].restart().expect("restart after the power cut");
    }
    // What was acknowledged must be there, exactly once; the rest is retried with its key.
    for w in &acked {
        c.ledger.insert(w.key.clone(), w.clone());
    }
    let addrs = c.addrs();
    for w in &writes {
        let rev = put_until_acked(&c.http, &addrs, w).await;
        if let Some(first) = w.revision {
            assert_eq!(
                first, rev,
                "acknowledged write {} was lost in the cut",
                w.key
            );
        }
        let mut w = w.clone();
        w.revision = Some(rev);
        c.ledger.insert(w.key.clone(), w);
    }
    c.check_all_nodes("a whole-cluster cut before fsync").await;
    c.stop_all();
}

/// Replaces every `from` in `bytes` by `to` (same length); returns how many.
fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

/// Starts node `idx` again after its disk was corrupted and checks that it says `corruption` at
/// ERROR and never serves `evil` (it may refuse to start, or refuse to serve the range).
async fn check_corruption_refused(c: &mut Cluster, idx: usize, key: &str, good: &str, evil: &str) {
    let restarted = c.nodes[idx].restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    let addrs = c.addrs();
    loop {
        for (i, addr) in addrs.iter().enumerate() {
            if i == idx && restarted.is_err() {
                continue;
            }
            let v = local_value(&c.http, addr, key).await;
            assert_ne!(
                v.as_deref(),
                Some(evil),
                "node {} served the corrupt value",
                i + 1
            );
        }
        if Instant::now() > deadline && c.log(idx).contains("corrupt") {
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(15),
            "node {} did not report the corruption",
            idx + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The healthy replicas still serve the good value.
    for (i, addr) in addrs.iter().enumerate().filter(|(i, _)| *i != idx) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = local_value(&c.http, addr, key).await;
            if v.as_deref() == Some(good) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} serves {v:?} for {key}, not {good:?}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let log = c.log(idx);
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("corrupt")),
        "no ERROR about the corruption in node {}'s log",
        idx + 1
    );
    assert!(
        !log.contains("panicked"),
        "node {} panicked:\n{log}",
        idx + 1
    );
    let refused_to_start = restarted.is_err() || !c.nodes[idx].is_running();
    // Running, it must have refused to open the range (its requests go to healthy replicas).
    assert!(
        refused_to_start
            || log
                .lines()
                .any(|l| l.contains("open range group") && l.contains("corrupt")),
        "node {} runs but did not refuse the corrupt range",
        idx + 1
    );
    eprintln!(
        "node {} with a corrupt record: {}",
        idx + 1,
        if refused_to_start {
            "refused to start"
        } else {
            "running, refused to open the range"
        }
    );
}

/// A log record whose bytes changed on a stopped follower's disk (the value inside it rewritten,
/// the checksum left as it was) is detected when the node replays its log, reported at ERROR as
/// corruption, and its value is never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_record_with_a_bad_checksum_is_reported_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), &FAST);
    c.write_all("before", 20, &[0, 1, 2]).await;
    let (good, evil) = ("good-victim-value", "evil-victim-value");
    let victim = Write {
        key: "victim".into(),
        value: good.into(),
        id: "req-victim".into(),
        revision: None,
    };
    put_until_acked(&c.http, &c.addrs(), &victim).await;
    c.write_all("after", 20, &[0, 1, 2]).await;
    let leader = c.leader().await;
    let f = (leader + 1) % 3;
    let addr = c.nodes[f].addr.clone();
    // The follower has it before it stops.
    let deadline = Instant::now() + Duration::from_secs(10);
    while local_value(&c.http, &addr, "victim").await.as_deref() != Some(good) {
        assert!(Instant::now() < deadline, "follower never got the victim");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.nodes[f].terminate().unwrap();
    {
        let store = DiskStore::open(DiskStoreConfig::new(c.nodes[f].data_dir.join("store")))
            .expect("open the stopped node's store");
        let mut hits = 0;
        for g in 0..4u64 {
            let group = GroupId(g);
            for (index, payload) in store.read_log(group, 0, u64::MAX).unwrap() {
                let mut bytes = encode_record(&payload);
                if replace_all(&mut bytes, good.as_bytes(), evil.as_bytes()) > 0 {
                    store
                        .corrupt_log_record_for_test(group, index, &bytes)
                        .unwrap();
                    let vote = store.get_meta(group, "raft.vote").unwrap().unwrap();
                    store.put_meta(group, "raft.vote", &vote, true).unwrap();
                    hits += 1;
                }
            }
        }
        assert_eq!(hits, 1, "the victim's log record was not found");
    }
    check_corruption_refused(&mut c, f, "victim", good, evil).await;
    for (i, n) in c.nodes.iter_mut().enumerate() {
        if i != f {
            n.terminate().unwrap();
        }
    }
}

/// A snapshot file whose bytes changed on a stopped follower's disk is detected when the node
/// opens the range, reported at ERROR as corruption, and its values are never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_with_a_bad_checksum_is_reported_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    args.extend(["--snapshot-logs-max", "20"]);
    let mut c = Cluster::start(dir.path(), &args);
    let (good, evil) = ("good-victim-value", "evil-victim-value");
    let victim = Write {
        key: "victim".into(),
        value: good.into(),
        id: "req-victim".into(),
        revision: None,
    };
    put_until_acked(&c.http, &c.addrs(), &victim).await;
    c.write_all("after", 60, &[0, 1, 2]).await;
    let leader = c.leader().await;
    let f = (leader + 1) % 3;
    let blobs = c.nodes[f].data_dir.join("store").join("blobs");
    let deadline = Instant::now() + Duration::from_secs(10);
    let snapshot_with_victim = || {
        std::fs::read_dir(&blobs).ok()?.flatten().find_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            (!e.path().to_string_lossy().ends_with(".tmp")
                && bytes.windows(good.len()).any(|w| w == good.as_bytes()))
            .then(|| e.path())
        })
    };
    while snapshot_with_victim().is_none() {
        assert!(Instant::now() < deadline, "the follower built no snapshot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.nodes[f].terminate().unwrap();
    let path = snapshot_with_victim().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(replace_all(&mut bytes, good.as_bytes(), evil.as_bytes()) > 0);
    std::fs::write(&path, bytes).unwrap();
    check_corruption_refused(&mut c, f, "victim", good, evil).await;
    for (i, n) in c.nodes.iter_mut().enumerate() {
        if i != f {
            n.terminate().unwrap();
        }
    }
}
