//! In-process cluster: election, replication, minority cannot write, majority goes on, healing
//! converges, a restarted node catches up, snapshot install.

use meridian_node::Consistency;
use meridian_tests::{TestCluster, wait_until};
use meridian_types::{ErrorCode, GroupId, NodeId};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn elects_replicates_and_routes_from_any_node() {
    let c = TestCluster::start(3, 3).await.unwrap();
    for (i, id) in c.ids.iter().enumerate() {
        c.put(*id, &format!("key{i}"), &format!("v{i}"))
            .await
            .unwrap();
    }
    // Keys in different ranges, read through every node, every consistency.
    for k in ["!first", "Mmiddle", "zlast"] {
        c.put(NodeId(2), k, k).await.unwrap();
    }
    for id in c.ids.clone() {
        for k in ["!first", "Mmiddle", "zlast", "key0", "key2"] {
            let want = match k.strip_prefix("key") {
                Some(n) => format!("v{n}"),
                None => k.to_string(),
            };
            for consistency in [Consistency::Linearizable, Consistency::Lease] {
                c.assert_value(id, k, consistency, Some(want.as_str()))
                    .await;
            }
        }
    }
    c.wait_converged(T).await.unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minority_cannot_write_majority_goes_on_and_heal_converges() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let g = GroupId(1);
    let leader = c.leader_of(g).unwrap();
    let others: Vec<NodeId> = c.ids.iter().copied().filter(|n| *n != leader).collect();
    c.put(leader, "a", "1").await.unwrap();
    // Cut the leader off: it is now a minority of one.
    c.isolate(leader);
    let err = c.put(leader, "a", "minority").await.unwrap_err();
    assert!(
        matches!(
            err.code,
            ErrorCode::Timeout | ErrorCode::Unavailable | ErrorCode::NotLeader
        ),
        "{err}"
    );
    // The majority elects a new leader and goes on.
    wait_until("a new leader in the majority", T, || async {
        c.leader_of(g).is_some_and(|l| l != leader)
    })
    .await
    .unwrap();
    c.put(others[0], "a", "2").await.unwrap();
    c.assert_value(others[1], "a", Consistency::Linearizable, Some("2"))
        .await;
    // The isolated old leader cannot serve a linearizable read.
    assert!(c.get(leader, "a", Consistency::Linearizable).await.is_err());
    c.heal();
    c.wait_converged(T).await.unwrap();
    c.assert_value(leader, "a", Consistency::Linearizable, Some("2"))
        .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_node_catches_up_from_its_disk() {
    let c = TestCluster::start(3, 1).await.unwrap();
    c.put(NodeId(1), "x", "before").await.unwrap();
    c.crash(NodeId(3)).await;
    for i in 0..20 {
        c.put(NodeId(1), &format!("k{i}"), "while-down")
            .await
            .unwrap();
    }
    c.restart(NodeId(3)).await.unwrap();
    c.wait_converged(T).await.unwrap();
    c.assert_value(NodeId(3), "k19", Consistency::Local, Some("while-down"))
        .await;
    c.assert_value(NodeId(3), "x", Consistency::Local, Some("before"))
        .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn far_behind_node_gets_a_snapshot() {
    // Snapshot every 50 entries and keep only 5 after it, so a node that misses 200 writes
    // cannot be caught up from the log.
    let c = TestCluster::start_with(3, 1, |cfg| {
        cfg.raft.snapshot_logs_max = 50;
        cfg.raft.logs_kept_after_snapshot = 5;
    })
    .await
    .unwrap();
    c.crash(NodeId(3)).await;
    for i in 0..200 {
        c.put(NodeId(1), &format!("s{i:03}"), &i.to_string())
            .await
            .unwrap();
    }
    let leader = c.leader_of(GroupId(1)).unwrap();
    wait_until("the leader to purge its log", T, || async {
        c.node(leader)
            .group(GroupId(1))
            .unwrap()
            .status()
            .snapshot_index
            > 100
    })
    .await
    .unwrap();
    c.restart(NodeId(3)).await.unwrap();
    c.wait_converged(T).await.unwrap();
    let g3 = c.node(NodeId(3)).group(GroupId(1)).unwrap();
    assert!(
        g3.status().snapshot_index > 0,
        "node 3 caught up without a snapshot"
    );
    c.assert_value(NodeId(3), "s199", Consistency::Local, Some("199"))
        .await;
    c.shutdown().await;
}

/// Large values fill the log long before the entry count: the byte trigger snapshots every
/// replica and purges the log behind it (though openraft alone would keep 5,000 entries), and
/// the state read back is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_bytes_trigger_a_snapshot_before_the_entry_count() {
    let c = TestCluster::start_with(3, 1, |cfg| {
        cfg.raft.snapshot_logs_max = 1_000_000;
        cfg.raft.snapshot_log_bytes_min = 256 << 10;
        cfg.raft.logs_kept_after_snapshot = 5_000;
    })
    .await
    .unwrap();
    let value = "v".repeat(32 << 10);
    // 40 puts of 32 KiB: 1.25 MiB of log, far under a million entries.
    for i in 0..40 {
        c.put(NodeId(1), &format!("big{i:02}"), &value)
            .await
            .unwrap();
    }
    for id in c.ids.clone() {
        wait_until(
            "every replica to snapshot on log bytes and purge",
            T,
            || async {
                let s = c.node(id).group(GroupId(1)).unwrap().status();
                s.snapshot_index > 0 && s.purged_index > 0
            },
        )
        .await
        .unwrap();
    }
    c.wait_converged(T).await.unwrap();
    c.assert_value(NodeId(3), "big39", Consistency::Local, Some(value.as_str()))
        .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_joins_and_serves_requests() {
    let mut c = TestCluster::start(3, 2).await.unwrap();
    c.put(NodeId(1), "before-join", "x").await.unwrap();
    c.add_node(NodeId(4), NodeId(2)).await.unwrap();
    // The map lists it, it follows the meta group, and it routes requests like any member.
    wait_until("node 4 to learn the map", T, || async {
        c.node(NodeId(4))
            .cluster_map()
            .is_some_and(|m| m.nodes.contains_key(&NodeId(4)))
    })
    .await
    .unwrap();
    wait_until("node 4 to follow the meta group", T, || async {
        c.node(NodeId(4))
            .group(GroupId::META)
            .is_some_and(|g| g.status().learners.contains(&NodeId(4)))
    })
    .await
    .unwrap();
    c.put(NodeId(4), "after-join", "y").await.unwrap();
    c.assert_value(
        NodeId(4),
        "before-join",
        Consistency::Linearizable,
        Some("x"),
    )
    .await;
    c.assert_value(
        NodeId(1),
        "after-join",
        Consistency::Linearizable,
        Some("y"),
    )
    .await;
    c.shutdown().await;
}

/// Writes after an idle spell are not held back at the followers. Every heartbeat is a
/// replication stream of its own and a follower remembers 64 streams per group, so after 64
/// heartbeats it has forgotten the idle data stream; a write that went on with that stream's
/// numbering waited 500 ms (`GATE_WAIT_MAX`) at each follower for requests it no longer knew.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_after_an_idle_spell_are_not_held_at_the_followers() {
    let c = TestCluster::start(3, 1).await.unwrap();
    c.wait_all_leaders(T).await.unwrap();
    c.put(NodeId(1), "idle", "0").await.unwrap();
    // More than 64 heartbeats at the harness's 50 ms.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    for i in 1..=5 {
        c.put(NodeId(1), "idle", &i.to_string()).await.unwrap();
    }
    let held: u64 = c
        .ids
        .iter()
        .flat_map(|id| {
            let node = c.node(*id);
            c.groups().into_iter().filter_map(move |g| node.group(g))
        })
        .map(|g| g.append_gate_timeouts())
        .sum();
    assert_eq!(held, 0, "AppendEntries held the whole GATE_WAIT_MAX");
    c.shutdown().await;
}
