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

mod crash_harness;

use crash_harness::*;
use std::time::{Duration, Instant};

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
    c.write_each_alone("bulk", 5_700, &[leader, other]).await;
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
