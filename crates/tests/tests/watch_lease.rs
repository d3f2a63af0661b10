//! Watches and leases in process: a watch sees every acknowledged change exactly once and in
//! order across a leader crash, resumes from a revision, reports compaction; keys vanish when
//! their lease expires or is revoked and stay while it is kept alive; only the meta leader's
//! clock expires a lease.

use meridian_node::{ClientApi, Node, WatchMessage, WatchSpec, WatchStream, WriteOptions};
use meridian_state::{EventKind, PutRequest, WatchEvent};
use meridian_tests::{TestCluster, wait_until};
use meridian_types::{ErrorCode, GroupId, NodeId, RequestId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn prefix_spec(prefix: &str, start_revision: u64) -> WatchSpec {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    WatchSpec {
        key: prefix.as_bytes().to_vec(),
        range_end: end,
        start_revision,
        prev_kv: false,
        progress_every: None,
    }
}

/// Reads events until `done` says it has them all, or the deadline.
async fn collect_until(
    w: &mut WatchStream,
    timeout: Duration,
    mut done: impl FnMut(&[WatchEvent]) -> bool,
) -> Vec<WatchEvent> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(&got) {
        match tokio::time::timeout_at(deadline, w.recv()).await {
            Ok(Some(WatchMessage::Events { events, .. })) => got.extend(events),
            Ok(Some(WatchMessage::Progress { .. })) => {}
            Ok(other) => panic!("watch ended: {other:?}"),
            Err(_) => break,
        }
    }
    got
}

/// Every key's events have strictly increasing revisions, and no (key, revision) repeats.
fn assert_in_order_once(events: &[WatchEvent]) {
    let mut last: BTreeMap<&[u8], u64> = BTreeMap::new();
    for e in events {
        let prev = last.insert(&e.kv.key, e.kv.mod_revision);
        assert!(
            prev.is_none_or(|p| p < e.kv.mod_revision),
            "key {:?}: revision {} after {:?} (out of order or repeated)",
            String::from_utf8_lossy(&e.kv.key),
            e.kv.mod_revision,
            prev
        );
    }
}

async fn put(node: &Node, key: &str, value: &str, lease: i64) -> Result<u64, ErrorCode> {
    put_once(node, key, value, lease, None).await
}

/// A put; with a request id, a retry is applied once.
async fn put_once(
    node: &Node,
    key: &str,
    value: &str,
    lease: i64,
    id: Option<u128>,
) -> Result<u64, ErrorCode> {
    let req = PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..PutRequest::default()
    };
    let opts = WriteOptions {
        request_id: id.map(RequestId),
    };
    ClientApi::put(node, req, opts)
        .await
        .map(|r| r.revision)
        .map_err(|e| e.code)
}

async fn exists(node: &Node, key: &str) -> bool {
    match node
        .range_read(
            meridian_state::RangeRequest {
                key: key.into(),
                ..Default::default()
            },
            Default::default(),
        )
        .await
    {
        Ok(r) => !r.resp.kvs.is_empty(),
        Err(_) => true, // unknown counts as present: the caller waits on absence
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_sees_every_change_once_in_order_across_a_leader_crash() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let g = GroupId(1);
    let leader = c.leader_of(g).unwrap();
    let watcher = *c.ids.iter().find(|n| **n != leader).unwrap();
    let writer = *c
        .ids
        .iter()
        .find(|n| **n != leader && **n != watcher)
        .unwrap();
    let mut w = c
        .node(watcher)
        .open_watch(prefix_spec("w/", 0))
        .await
        .unwrap();

    let mut acked: Vec<(String, u64)> = Vec::new();
    for i in 0..60 {
        if i == 20 {
            c.crash(leader).await;
        }
        if i == 40 {
            c.restart(leader).await.unwrap();
        }
        let key = format!("w/{}", i % 7);
        // A write cut by the crash may or may not have been applied; retry until acknowledged.
        for _ in 0..50 {
            match put_once(&c.node(writer), &key, &i.to_string(), 0, Some(1000 + i)).await {
                Ok(rev) => {
                    acked.push((key.clone(), rev));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    assert_eq!(acked.len(), 60, "every write was acknowledged in the end");
    let want: BTreeSet<(Vec<u8>, u64)> = acked
        .iter()
        .map(|(k, r)| (k.as_bytes().to_vec(), *r))
        .collect();
    let got = collect_until(&mut w, T, |got| {
        let seen: BTreeSet<(Vec<u8>, u64)> = got
            .iter()
            .map(|e| (e.kv.key.clone(), e.kv.mod_revision))
            .collect();
        want.is_subset(&seen)
    })
    .await;
    assert_in_order_once(&got);
    let seen: BTreeSet<(Vec<u8>, u64)> = got
        .iter()
        .map(|e| (e.kv.key.clone(), e.kv.mod_revision))
        .collect();
    let missing: Vec<_> = want.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes not seen: {missing:?}"
    );
    // A retried write applies once (request ids): no event beyond the acknowledged ones.
    assert_eq!(got.len(), want.len(), "events: {got:?}");

    // Resume from the middle: exactly the events from that revision on, from another node.
    let from = acked[30].1;
    let mut w2 = c
        .node(leader)
        .open_watch(prefix_spec("w/", from))
        .await
        .unwrap();
    let tail: Vec<&(Vec<u8>, u64)> = want.iter().filter(|(_, r)| *r >= from).collect();
    let got2 = collect_until(&mut w2, T, |got| got.len() >= tail.len()).await;
    assert_in_order_once(&got2);
    let revs: Vec<u64> = got2.iter().map(|e| e.kv.mod_revision).collect();
    let mut want_revs: Vec<u64> = tail.iter().map(|(_, r)| *r).collect();
    want_revs.sort();
    assert_eq!(revs, want_revs, "resumed watch");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_over_several_ranges_and_a_compacted_start() {
    let c = TestCluster::start(3, 3).await.unwrap();
    let n = c.node(NodeId(1));
    // Every key: the watch spans all three ranges.
    let spec = WatchSpec {
        key: vec![0],
        range_end: vec![0],
        start_revision: 0,
        prev_kv: true,
        progress_every: Some(Duration::from_millis(200)),
    };
    let mut w = n.open_watch(spec).await.unwrap();
    let keys = ["!a", "Mm", "zz", "!a", "zz", "Mm"];
    for (i, k) in keys.iter().enumerate() {
        put(&c.node(NodeId(2)), k, &i.to_string(), 0).await.unwrap();
    }
    let got = collect_until(&mut w, T, |got| got.len() >= keys.len()).await;
    assert_eq!(got.len(), keys.len(), "{got:?}");
    assert_in_order_once(&got);
    // One revision order across the ranges (idle ranges are advanced, not waited for).
    let revs: Vec<u64> = got.iter().map(|e| e.kv.mod_revision).collect();
    assert!(revs.windows(2).all(|w| w[0] <= w[1]), "{revs:?}");
    // So resuming from any event's revision gives exactly the rest, whatever range it is in.
    let from = revs[2];
    let mut again = n
        .open_watch(WatchSpec {
            key: vec![0],
            range_end: vec![0],
            start_revision: from,
            prev_kv: false,
            progress_every: None,
        })
        .await
        .unwrap();
    let rest = collect_until(&mut again, T, |g| g.len() >= keys.len() - 2).await;
    let rest_revs: Vec<u64> = rest.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(rest_revs, revs[2..].to_vec());
    // Per key, the values in write order, and prev_kv is the earlier write.
    for k in ["!a", "Mm", "zz"] {
        let vals: Vec<String> = got
            .iter()
            .filter(|e| e.kv.key == k.as_bytes())
            .map(|e| String::from_utf8_lossy(&e.kv.value).into_owned())
            .collect();
        let want: Vec<String> = keys
            .iter()
            .enumerate()
            .filter(|(_, kk)| **kk == k)
            .map(|(i, _)| i.to_string())
            .collect();
        assert_eq!(vals, want, "key {k}");
        let second = got
            .iter()
            .filter(|e| e.kv.key == k.as_bytes())
            .nth(1)
            .unwrap();
        assert_eq!(
            second.prev_kv.as_ref().map(|p| p.value.clone()),
            Some(want[0].clone().into_bytes())
        );
    }
    // A progress notification comes while idle.
    let progress = tokio::time::timeout(T, async {
        loop {
            if let Some(WatchMessage::Progress { revision }) = w.recv().await {
                return revision;
            }
        }
    })
    .await
    .unwrap();
    assert!(progress > 0);

    // Compact one range past its history: a watch from before it ends with `compacted`.
    let last = put(&c.node(NodeId(1)), "zz", "last", 0).await.unwrap();
    ClientApi::compact(&n, last).await.unwrap();
    let mut old = n.open_watch(prefix_spec("zz", 1)).await.unwrap();
    match tokio::time::timeout(T, old.recv()).await.unwrap() {
        Some(WatchMessage::Compacted { compact_revision }) => assert_eq!(compact_revision, last),
        other => panic!("expected compacted, got {other:?}"),
    }
    // Above the compact revision it is fine (nothing is missing there).
    let mut ok = n.open_watch(prefix_spec("zz", last + 1)).await.unwrap();
    put(&n, "zz", "after", 0).await.unwrap();
    let got = collect_until(&mut ok, T, |g| g.iter().any(|e| e.kv.value == b"after")).await;
    assert!(got.iter().any(|e| e.kv.value == b"after"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_expiry_keep_alive_and_revoke() {
    let c = TestCluster::start(3, 2).await.unwrap();
    let n = c.node(NodeId(2));
    let (kept, ttl) = n.lease_grant(0, 2).await.unwrap();
    assert_eq!(ttl, 2);
    let (lapsing, _) = n.lease_grant(0, 2).await.unwrap();
    let (revoked, _) = n.lease_grant(0, 30).await.unwrap();
    put(&n, "!kept", "v", kept).await.unwrap();
    put(&n, "zkept", "v", kept).await.unwrap();
    put(&n, "lapsing", "v", lapsing).await.unwrap();
    put(&n, "!revoked", "v", revoked).await.unwrap();
    put(&n, "zrevoked", "v", revoked).await.unwrap();
    // An unknown lease is refused.
    assert_eq!(
        put(&n, "x", "v", 12345).await.unwrap_err(),
        ErrorCode::LeaseNotFound
    );
    let info = n.lease_time_to_live(revoked, true).await.unwrap();
    assert_eq!(info.keys.len(), 2, "keys in both ranges: {info:?}");
    assert!(n.lease_list().await.unwrap().contains(&lapsing));

    // Revoke: its keys in every range are gone when it answers, and it cannot be used again.
    n.lease_revoke(revoked).await.unwrap();
    assert!(!exists(&n, "!revoked").await && !exists(&n, "zrevoked").await);
    assert_eq!(
        put(&n, "again", "v", revoked).await.unwrap_err(),
        ErrorCode::LeaseNotFound
    );
    assert_eq!(
        n.lease_time_to_live(revoked, false).await.unwrap_err().code,
        ErrorCode::LeaseNotFound
    );

    // Keep one alive through several TTLs (from different nodes); the other lapses.
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let via = c.node(c.ids[(started.elapsed().as_millis() / 500) as usize % 3]);
        via.lease_keep_alive(kept).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(exists(&n, "!kept").await && exists(&n, "zkept").await);
    wait_until("the lapsed lease's key to go", T, || async {
        !exists(&n, "lapsing").await
    })
    .await
    .unwrap();
    assert_eq!(
        n.lease_keep_alive(lapsing).await.unwrap_err().code,
        ErrorCode::LeaseNotFound
    );
    // Only the meta leader expired it (a follower never decides on its own clock).
    let expired: Vec<String> = c
        .ids
        .iter()
        .map(|id| {
            c.node(*id)
                .metrics_text()
                .lines()
                .find(|l| l.starts_with("meridian_lease_expired_total"))
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let expirers = expired.iter().filter(|l| !l.ends_with(" 0")).count();
    assert_eq!(expirers, 1, "{expired:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_meta_leader_cannot_expire_a_lease_kept_alive_elsewhere() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let old = c.leader_of(GroupId::META).unwrap();
    let others: Vec<NodeId> = c.ids.iter().copied().filter(|n| *n != old).collect();
    let n = c.node(others[0]);
    let (lease, _) = n.lease_grant(0, 2).await.unwrap();
    put(&n, "held", "v", lease).await.unwrap();
    // The old leader is cut off; its deadline for the lease runs out while the majority's new
    // leader keeps getting keep-alives. Its revoke can never commit.
    c.isolate(old);
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let _ = n.lease_keep_alive(lease).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        exists(&n, "held").await,
        "the key survived the old leader's clock"
    );
    c.heal();
    for _ in 0..5 {
        n.lease_keep_alive(lease).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(exists(&n, "held").await);
    assert!(
        n.lease_time_to_live(lease, false).await.is_ok(),
        "the lease is alive"
    );
    // Leadership moved: the new leader restarted the lease at its full TTL, then stops hearing
    // from us and expires it.
    wait_until("the lease to expire once nobody keeps it", T, || async {
        !exists(&n, "held").await
    })
    .await
    .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_sees_lease_deletions() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let n = c.node(NodeId(1));
    let (lease, _) = n.lease_grant(0, 2).await.unwrap();
    let rev = put(&n, "lk/a", "v", lease).await.unwrap();
    let mut w = n.open_watch(prefix_spec("lk/", rev)).await.unwrap();
    let got = collect_until(&mut w, T, |g| g.iter().any(|e| e.kind == EventKind::Delete)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].kv.lease, lease);
    assert_eq!(got[1].kind, EventKind::Delete);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_without_a_replica_serves_a_watch_from_another_one() {
    let c = TestCluster::start(4, 1).await.unwrap();
    let map = c.node(NodeId(1)).cluster_map().unwrap();
    let replicas = &map.ranges.values().next().unwrap().replicas;
    let outsider = *c.ids.iter().find(|n| !replicas.contains(n)).unwrap();
    assert!(c.node(outsider).group(GroupId(1)).is_none());
    let mut w = c
        .node(outsider)
        .open_watch(prefix_spec("o/", 0))
        .await
        .unwrap();
    let mut revs = Vec::new();
    for i in 0..10u128 {
        if i == 5 {
            // The replica it was polling (the nearest, whichever) may go: another one serves.
            c.crash(replicas[0]).await;
        }
        let via = if replicas[0] == outsider {
            replicas[1]
        } else {
            outsider
        };
        for _ in 0..50 {
            if let Ok(r) = put_once(&c.node(via), &format!("o/{i}"), "v", 0, Some(500 + i)).await {
                revs.push(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(revs.len(), 10);
    let got = collect_until(&mut w, T, |g| g.len() >= 10).await;
    let got_revs: Vec<u64> = got.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(got_revs, revs);
    c.shutdown().await;
}
