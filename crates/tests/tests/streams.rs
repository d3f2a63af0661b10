//! Event streams on an in-process cluster: system ranges form (even with a replica down),
//! publish on one node and read on another, long polls, offsets gap-free and never reused across
//! a leader change and a crash of the leader, consumer groups rebalancing on leave and timeout
//! with at-least-once delivery from committed offsets.

use meridian_node::stream::{CreateStreamRequest, PartitionReadRequest, Published, Streams};
use meridian_state::stream::{NewMessage, ReadFrom, Retention, StreamRead};
use meridian_tests::{TestCluster, wait_until};
use meridian_types::{ErrorCode, GroupId, NodeId, RangeId};
use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn msg(key: Option<&str>, value: &str) -> NewMessage {
    NewMessage {
        key: key.map(|k| k.as_bytes().to_vec()),
        payload: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn read_req(stream: &str, partition: u32, from: ReadFrom) -> PartitionReadRequest {
    PartitionReadRequest {
        stream: stream.into(),
        partition,
        from,
        group: None,
        max_count: 10_000,
        max_bytes: 1 << 22,
        wait_ms: 0,
    }
}

async fn create(s: &Streams, name: &str, partitions: u32) -> meridian_state::StreamSpec {
    s.create(CreateStreamRequest {
        name: name.into(),
        partitions,
        retention: Retention::default(),
        placement: None,
        colocate: None,
    })
    .await
    .unwrap()
}

async fn read_all(s: &Streams, stream: &str, partition: u32) -> StreamRead {
    s.read(read_req(stream, partition, ReadFrom::Earliest))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn system_ranges_carry_partitions_published_here_and_read_there() {
    let c = TestCluster::start(3, 2).await.unwrap();
    let spec = create(&c.node(NodeId(1)).streams(), "orders", 3).await;
    // The partitions live in new system ranges, outside the key space.
    let map = c.node(NodeId(1)).cluster_map().unwrap();
    for (p, r) in spec.ranges.iter().enumerate() {
        let info = &map.ranges[r];
        assert_eq!(
            info.system.as_ref().unwrap().label,
            format!("stream orders/{p}")
        );
        assert!(r.0 > 2);
    }
    assert!(map.validate().is_ok());
    assert!(map.range_for(b"zzz").unwrap().system.is_none());
    c.wait_all_leaders(T).await.unwrap();
    // Keys and streams side by side.
    c.put(NodeId(2), "k", "v").await.unwrap();

    let pub2 = c.node(NodeId(2)).streams();
    let mut acked: Vec<(Published, String)> = Vec::new();
    for i in 0..30 {
        let key = format!("user-{}", i % 7);
        let v = format!("m{i}");
        let a = pub2
            .publish("orders", None, vec![msg(Some(&key), &v)], None)
            .await
            .unwrap();
        acked.push((a[0], v));
    }
    // A batch, and a dedup id answered with the first offset.
    let batch = (0..5).map(|i| msg(None, &format!("b{i}"))).collect();
    let b = pub2.publish("orders", Some(1), batch, None).await.unwrap();
    assert!(b.windows(2).all(|w| w[1].offset == w[0].offset + 1));
    let mut d = msg(None, "once");
    d.dedup_id = Some("order-77".into());
    let first = pub2
        .publish("orders", Some(2), vec![d.clone()], None)
        .await
        .unwrap();
    let again = pub2
        .publish("orders", Some(2), vec![d], None)
        .await
        .unwrap();
    assert_eq!(first[0].offset, again[0].offset);
    assert!(again[0].duplicate && !first[0].duplicate);

    // Read everything through node 3: every acked message at its offset, offsets gap-free.
    let read3 = c.node(NodeId(3)).streams();
    for p in 0..3 {
        let r = read_all(&read3, "orders", p).await;
        for (i, m) in r.messages.iter().enumerate() {
            assert_eq!(m.offset, i as u64);
        }
        for (a, v) in acked.iter().filter(|(a, _)| a.partition == p) {
            assert_eq!(r.messages[a.offset as usize].payload, v.as_bytes());
        }
    }
    // The same key always lands in the same partition.
    let by_key: BTreeSet<(String, u32)> = acked
        .iter()
        .map(|(a, v)| {
            let i: usize = v[1..].parse().unwrap();
            (format!("user-{}", i % 7), a.partition)
        })
        .collect();
    assert_eq!(by_key.len(), 7);

    // A long poll from the tail returns the next message as soon as it is published.
    let mut tail = read_req("orders", 0, ReadFrom::Latest);
    tail.wait_ms = 10_000;
    let waiter = tokio::spawn(async move { read3.read(tail).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = c
        .node(NodeId(1))
        .streams()
        .publish("orders", Some(0), vec![msg(None, "late")], None)
        .await
        .unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.messages.len(), 1);
    assert_eq!(got.messages[0].offset, sent[0].offset);
    assert_eq!(got.messages[0].payload, b"late");

    // Reading from a time skips what came before it.
    let r = c
        .node(NodeId(1))
        .streams()
        .read(read_req("orders", 0, ReadFrom::Time(u64::MAX)))
        .await
        .unwrap();
    assert!(r.messages.is_empty());

    c.wait_converged(T).await.unwrap();
    // Deleting the stream removes its ranges from the map and the groups from the nodes.
    assert!(c.node(NodeId(2)).streams().delete("orders").await.unwrap());
    wait_until("the stream's groups to close", T, || async {
        c.ids.iter().all(|id| {
            spec.ranges
                .iter()
                .all(|r| c.node(*id).group(r.group()).is_none())
        })
    })
    .await
    .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn system_ranges_form_with_their_lowest_replica_down() {
    let c = TestCluster::start(3, 1).await.unwrap();
    // Node 1 would have been the one to initialise every range; it is down.
    c.crash(NodeId(1)).await;
    let ids = c
        .node(NodeId(2))
        .allocate_object_ranges(2, None)
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    for r in &ids {
        let g: GroupId = r.group();
        wait_until("a leader among the live replicas", T, || async {
            c.leader_of(g).is_some()
        })
        .await
        .unwrap();
    }
    // Colocation answers the key's own range.
    let co = c
        .node(NodeId(2))
        .allocate_object_ranges(2, Some(b"anything"))
        .await
        .unwrap();
    assert_eq!(co, vec![RangeId(1), RangeId(1)]);
    c.restart(NodeId(1)).await.unwrap();
    c.wait_converged(T).await.unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offsets_stay_gap_free_across_a_leader_change_and_a_crash() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let spec = create(&c.node(NodeId(1)).streams(), "log", 1).await;
    let g = spec.ranges[0].group();
    c.wait_all_leaders(T).await.unwrap();
    let mut acked: Vec<(u64, String)> = Vec::new();
    let publish = |via: NodeId, v: String| {
        let s = c.node(via).streams();
        async move {
            let a = s
                .publish("log", None, vec![msg(None, &v)], None)
                .await
                .unwrap();
            (a[0].offset, v)
        }
    };
    for i in 0..20 {
        acked.push(publish(NodeId(1 + i % 3), format!("a{i}")).await);
    }
    // Crash the partition's leader; publish through a survivor while it is gone.
    let leader = c.leader_of(g).unwrap();
    c.crash(leader).await;
    let survivor = c.ids.iter().copied().find(|n| *n != leader).unwrap();
    for i in 0..20 {
        acked.push(publish(survivor, format!("b{i}")).await);
    }
    c.restart(leader).await.unwrap();
    wait_until("the partition to have a leader", T, || async {
        c.leader_of(g).is_some()
    })
    .await
    .unwrap();
    for i in 0..20 {
        acked.push(publish(leader, format!("c{i}")).await);
    }
    // Never reused: every acknowledged offset is distinct; gap-free: they are 0..n.
    let offsets: BTreeSet<u64> = acked.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets.len(), acked.len());
    assert_eq!(offsets, (0..acked.len() as u64).collect());
    c.wait_converged(T).await.unwrap();
    for id in c.ids.clone() {
        let r = read_all(&c.node(id).streams(), "log", 0).await;
        assert_eq!(r.messages.len(), acked.len());
        for (o, v) in &acked {
            assert_eq!(r.messages[*o as usize].payload, v.as_bytes());
        }
        // Timestamps never go backwards, whoever led.
        assert!(
            r.messages
                .windows(2)
                .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_groups_rebalance_on_leave_and_timeout_and_resume_from_commits() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let s = c.node(NodeId(1)).streams();
    create(&s, "ev", 4).await;
    c.wait_all_leaders(T).await.unwrap();
    for p in 0..4 {
        let batch = (0..10).map(|i| msg(None, &format!("p{p}-{i}"))).collect();
        s.publish("ev", Some(p), batch, None).await.unwrap();
    }
    let s2 = c.node(NodeId(2)).streams();
    let a1 = s.heartbeat("ev", "g", "m1", 5_000).await.unwrap();
    assert_eq!(a1.partitions.len(), 4);
    let a2 = s2.heartbeat("ev", "g", "m2", 5_000).await.unwrap();
    assert!(a2.generation > a1.generation);
    let a1 = s.heartbeat("ev", "g", "m1", 5_000).await.unwrap();
    let mine: BTreeSet<u32> = a1.partitions.iter().map(|p| p.0).collect();
    let theirs: BTreeSet<u32> = a2.partitions.iter().map(|p| p.0).collect();
    assert_eq!(mine.len() + theirs.len(), 4);
    assert!(mine.is_disjoint(&theirs));

    // m2 consumes 4 messages of each of its partitions and commits, then leaves.
    for p in &theirs {
        let mut req = read_req("ev", *p, ReadFrom::Earliest);
        req.group = Some("g".into());
        req.max_count = 4;
        let r = s2.read(req).await.unwrap();
        assert_eq!(r.messages.len(), 4);
        let fence = Some(("m2", a2.generation));
        s2.commit("ev", "g", *p, r.next_offset, fence)
            .await
            .unwrap();
    }
    // A member may not commit a partition it does not hold.
    let other = *mine.iter().next().unwrap();
    let e = s2
        .commit("ev", "g", other, 1, Some(("m2", a2.generation)))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::StaleGeneration, "{e}");
    s2.leave("ev", "g", "m2").await.unwrap();
    let a1 = s.heartbeat("ev", "g", "m1", 5_000).await.unwrap();
    assert_eq!(a1.partitions.len(), 4);
    assert!(a1.generation > a2.generation);
    // m2 was rebalanced away: its late commit (it read more before it knew) is fenced off and
    // cannot move the offset its partitions' new owner reads from.
    let late = *theirs.iter().next().unwrap();
    let e = s2
        .commit("ev", "g", late, 9, Some(("m2", a2.generation)))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::StaleGeneration, "{e}");
    // m1 with its previous generation is fenced off too, with the current one it may commit.
    let e = s
        .commit("ev", "g", other, 0, Some(("m1", a2.generation)))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::StaleGeneration, "{e}");
    s.commit("ev", "g", other, 0, Some(("m1", a1.generation)))
        .await
        .unwrap();
    // m1 picks m2's partitions up at their committed offsets (at-least-once, nothing skipped).
    for (p, committed) in &a1.partitions {
        if theirs.contains(p) {
            assert_eq!(*committed, Some(4));
            let mut req = read_req("ev", *p, ReadFrom::Earliest);
            req.group = Some("g".into());
            let r = s.read(req).await.unwrap();
            assert_eq!(r.messages.first().map(|m| m.offset), Some(4));
            assert_eq!(r.messages.len(), 6);
        } else {
            assert_eq!(*committed, None);
        }
    }

    // m3 joins and goes silent: the leader's clock expires it and m1 gets everything back.
    let a3 = s2.heartbeat("ev", "g", "m3", 1_000).await.unwrap();
    assert!(!a3.partitions.is_empty());
    let gen_with_m3 = a3.generation;
    wait_until("m3 to time out", T, || async {
        let a = s.heartbeat("ev", "g", "m1", 5_000).await.unwrap();
        a.partitions.len() == 4 && a.generation > gen_with_m3
    })
    .await
    .unwrap();
    let st = s.group_status("ev", "g").await.unwrap();
    assert_eq!(st.members.len(), 1);
    assert_eq!(st.lag, 40 - 4 * theirs.len() as u64);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_trims_by_age_and_offsets_go_on() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let s = c.node(NodeId(1)).streams();
    s.create(CreateStreamRequest {
        name: "short".into(),
        partitions: 1,
        retention: Retention {
            max_age_ms: Some(1_000),
            ..Default::default()
        },
        placement: None,
        colocate: None,
    })
    .await
    .unwrap();
    let batch = (0..3).map(|i| msg(None, &format!("old{i}"))).collect();
    s.publish("short", None, batch, None).await.unwrap();
    // Nothing is published now: only the leader's trim (a Tick stamped with its clock) can
    // empty the partition.
    wait_until("the leader to trim the old messages", T, || async {
        let r = read_all(&s, "short", 0).await;
        r.messages.is_empty() && r.first_offset == 3
    })
    .await
    .unwrap();
    let a = s
        .publish("short", None, vec![msg(None, "new")], None)
        .await
        .unwrap();
    assert_eq!(a[0].offset, 3, "a trimmed offset is never reused");
    // Every replica applied the same trim.
    c.wait_converged(T).await.unwrap();
    c.shutdown().await;
}

fn unclaimed_grace_2s(cfg: &mut meridian_node::NodeConfig) {
    cfg.unclaimed_range_grace = Duration::from_secs(2);
}

/// A creator that crashed between allocating system ranges and creating its stream leaves
/// ranges nobody claims: the meta leader removes them after the grace period, and every replica
/// closes their groups. A stream's own ranges stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unclaimed_system_ranges_are_removed_after_the_grace_period() {
    let c = TestCluster::start_with(3, 1, unclaimed_grace_2s)
        .await
        .unwrap();
    let s = c.node(NodeId(1)).streams();
    let spec = create(&s, "kept", 2).await;
    // The "crashed creator": ranges allocated, never claimed.
    let orphans = c
        .node(NodeId(2))
        .allocate_object_ranges(2, None)
        .await
        .unwrap();
    assert!(orphans.iter().all(|r| !spec.ranges.contains(r)));
    let in_map = |id: RangeId| {
        c.running().iter().any(|n| {
            c.node(*n)
                .map_arc()
                .is_some_and(|m| m.ranges.contains_key(&id))
        })
    };
    wait_until("the orphans to leave every map and node", T, || async {
        orphans
            .iter()
            .all(|r| !in_map(*r) && !c.groups().contains(&r.group()))
    })
    .await
    .unwrap();
    // The stream's ranges are still there, and it still works.
    assert!(spec.ranges.iter().all(|r| in_map(*r)));
    s.publish("kept", Some(1), vec![msg(None, "after")], None)
        .await
        .unwrap();
    assert_eq!(read_all(&s, "kept", 1).await.messages.len(), 1);
    c.shutdown().await;
}
