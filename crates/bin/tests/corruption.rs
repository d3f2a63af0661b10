//! On-disk corruption, on real `meridian server` processes: a log record or a snapshot with a
//! bad checksum on a stopped node's disk is reported as `corruption` at ERROR and its value is
//! never served.

mod crash_harness;

use crash_harness::*;
use meridian_storage::{DiskStore, DiskStoreConfig, LogStore, encode_record};
use meridian_types::GroupId;
use std::time::{Duration, Instant};

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
    // Running, it does not retry the corrupt range on every reconcile (every 300 ms) and report
    // it each time: it waits `CORRUPT_GROUP_RETRY` (60 s) between tries.
    if !refused_to_start {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let tries = c
            .log(idx)
            .lines()
            .filter(|l| l.contains("open range group"))
            .count();
        assert!(
            tries <= 2,
            "node {} tried the corrupt range {tries} times",
            idx + 1
        );
    }
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
    c.write_each_alone("after", 60, &[0, 1, 2]).await;
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
