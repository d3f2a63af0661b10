//! The placement driver in an in-process cluster: leaders go to (and come back to) their home
//! region, a range grows to five voters over the regions, a drained node is emptied and then
//! removed, a dead node's replicas are replaced. Deadlines are generous: these check function,
//! not timing.

use meridian_node::{Consistency, NodeConfig};
use meridian_state::{Command, CommandResult, MetaCommand, PlacementRule, Survival};
use meridian_tests::{TestCluster, wait_until};
use meridian_types::{ErrorCode, GroupId, NodeId, RangeId};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

fn rule(replicas: u8, leader_regions: &[&str]) -> PlacementRule {
    PlacementRule {
        prefix: vec![],
        replicas,
        regions: vec![],
        zones: vec![],
        survival: Survival::Region,
        leader_regions: leader_regions.iter().map(|s| s.to_string()).collect(),
    }
}

/// Stores `r` through the meta leader.
async fn set_rule(c: &TestCluster, r: PlacementRule) {
    wait_until("the rule to be stored", T, || async {
        let Some(l) = c.leader_of(GroupId::META) else {
            return false;
        };
        let Some(g) = c.try_node(l).and_then(|n| n.group(GroupId::META)) else {
            return false;
        };
        // Only once the meta group holds the map: `Init` replaces the whole map.
        if !g.read(|s| s.meta.is_initialized()) {
            return false;
        }
        matches!(
            g.propose(Command::Meta(MetaCommand::SetPlacement(r.clone())))
                .await,
            Ok(CommandResult::Meta(Ok(_)))
        )
    })
    .await
    .unwrap();
}

/// Waits until the meta group holds the map (right after init it may still be the bootstrap
/// map, and meta commands about nodes fail until then).
async fn wait_meta_map(c: &TestCluster) {
    wait_until("the meta group to hold the map", T, || async {
        c.leader_of(GroupId::META)
            .and_then(|l| c.node(l).group(GroupId::META))
            .is_some_and(|g| g.read(|s| s.meta.is_initialized()))
    })
    .await
    .unwrap();
}

fn range_ids(c: &TestCluster) -> Vec<RangeId> {
    let n = c.node(c.running()[0]);
    n.cluster_map().unwrap().ranges.keys().copied().collect()
}

/// The voters of range `r` as its Raft group (on a running replica) sees them.
fn raft_voters(c: &TestCluster, r: RangeId) -> BTreeSet<NodeId> {
    let Some(l) = c.leader_of(r.group()) else {
        return BTreeSet::new();
    };
    c.node(l)
        .group(r.group())
        .map(|g| g.status().voters.into_iter().collect())
        .unwrap_or_default()
}

/// Map replicas of range `r`, from the meta leader's map.
fn map_replicas(c: &TestCluster, r: RangeId) -> BTreeSet<NodeId> {
    let via = c.leader_of(GroupId::META).unwrap_or(c.running()[0]);
    c.node(via)
        .cluster_map()
        .and_then(|m| {
            m.ranges
                .get(&r)
                .map(|r| r.replicas.iter().copied().collect())
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaders_go_home_and_fail_back_after_a_restart() {
    let c = TestCluster::start(3, 2).await.unwrap();
    // Node 2 is eu-west (see TestCluster::config).
    set_rule(&c, rule(3, &["eu-west", "us-east"])).await;
    let home = NodeId(2);
    let all_home = || async {
        range_ids(&c)
            .iter()
            .all(|r| c.leader_of(r.group()) == Some(home))
    };
    wait_until("every range leader in eu-west", T, all_home)
        .await
        .unwrap();
    c.put(NodeId(1), "a", "1").await.unwrap();

    c.crash(home).await;
    wait_until("leaders elsewhere, in us-east next", T, || async {
        range_ids(&c)
            .iter()
            .all(|r| c.leader_of(r.group()) == Some(NodeId(1)))
    })
    .await
    .unwrap();
    c.put(NodeId(3), "b", "2").await.unwrap();

    c.restart(home).await.unwrap();
    let back = Instant::now();
    wait_until("leaders back in eu-west", T, all_home)
        .await
        .unwrap();
    eprintln!("leaders back home {:?} after the restart", back.elapsed());
    c.assert_value(NodeId(2), "b", Consistency::Linearizable, Some("2"))
        .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_range_grows_to_five_voters_over_the_regions() {
    let c = TestCluster::start(5, 1).await.unwrap();
    c.put(NodeId(1), "k", "v").await.unwrap();
    let r = range_ids(&c)[0];
    assert_eq!(map_replicas(&c, r).len(), 3);
    set_rule(&c, rule(5, &[])).await;
    wait_until("five voters, in Raft and in the map", T, || async {
        let v = raft_voters(&c, r);
        v.len() == 5 && map_replicas(&c, r) == v
    })
    .await
    .unwrap();
    // Five nodes over three regions: 2 + 2 + 1.
    let map = c.node(NodeId(1)).cluster_map().unwrap();
    let regions: BTreeSet<&str> = map.ranges[&r]
        .replicas
        .iter()
        .map(|n| map.nodes[n].region.as_str())
        .collect();
    assert_eq!(regions.len(), 3);
    for id in c.ids.clone() {
        c.assert_value(id, "k", Consistency::Linearizable, Some("v"))
            .await;
    }
    c.wait_converged(T).await.unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_node_is_emptied_then_removed() {
    let c = TestCluster::start(4, 2).await.unwrap();
    let keys = ["!a", "Mb", "zc"];
    for k in keys {
        c.put(NodeId(2), k, k).await.unwrap();
    }
    wait_meta_map(&c).await;
    let victim = NodeId(1);
    let n2 = c.node(NodeId(2));
    let st = n2.drain(victim).await.unwrap();
    assert_eq!(st.state, "draining");
    let early = n2.remove(victim).await;
    if !st.done {
        assert_eq!(early.unwrap_err().code, ErrorCode::NotDrained);
    }
    wait_until("the drained node to hold nothing", T, || async {
        n2.drain_status(victim).await.is_ok_and(|s| s.done)
    })
    .await
    .unwrap();
    for r in range_ids(&c) {
        assert!(!raft_voters(&c, r).contains(&victim));
    }
    for via in [NodeId(2), NodeId(3), NodeId(4)] {
        for k in keys {
            c.assert_value(via, k, Consistency::Linearizable, Some(k))
                .await;
        }
    }
    n2.remove(victim).await.unwrap();
    let map = n2.cluster_map().unwrap();
    assert_eq!(map.nodes[&victim].state.as_str(), "removed");
    // Its replicas are deleted on the node itself.
    wait_until("the drained node to delete its replicas", T, || async {
        c.node(victim)
            .hosted_groups()
            .iter()
            .all(|g| g.group().is_meta())
    })
    .await
    .unwrap();
    c.shutdown().await;
}

fn dead_after_3s(cfg: &mut NodeConfig) {
    cfg.node_dead_after = Duration::from_secs(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_replicas_are_replaced() {
    let c = TestCluster::start_with(4, 2, dead_after_3s).await.unwrap();
    let keys = ["!a", "Mb", "zc"];
    for k in keys {
        c.put(NodeId(2), k, k).await.unwrap();
    }
    // A node holding a replica of the first range.
    let r0 = range_ids(&c)[0];
    let dead = *map_replicas(&c, r0).iter().next().unwrap();
    c.crash(dead).await;
    wait_until("no range with a replica on the dead node", T, || async {
        range_ids(&c).iter().all(|r| {
            let m = map_replicas(&c, *r);
            m.len() == 3 && !m.contains(&dead) && raft_voters(&c, *r) == m
        })
    })
    .await
    .unwrap();
    let via = c.running()[0];
    for k in keys {
        c.assert_value(via, k, Consistency::Linearizable, Some(k))
            .await;
    }
    // Back from the dead, it drops the replicas it no longer holds and still follows the map.
    c.restart(dead).await.unwrap();
    wait_until(
        "the returning node to drop its stale replicas",
        T,
        || async {
            let n = c.node(dead);
            let via = c.leader_of(GroupId::META).unwrap_or(dead);
            let map = c.node(via).cluster_map().unwrap();
            n.hosted_groups().iter().all(|g| {
                g.group().is_meta() || map.ranges[&RangeId(g.group().0)].replicas.contains(&dead)
            })
        },
    )
    .await
    .unwrap();
    c.shutdown().await;
}
