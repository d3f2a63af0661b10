use super::*;
use proptest::prelude::*;

fn node(id: u64, region: &str, zone: &str) -> NodeFacts {
    NodeFacts {
        id: NodeId(id),
        region: region.into(),
        zone: zone.into(),
        state: NodeState::Active,
        live: true,
        dead: false,
    }
}

fn rule(replicas: u8, survival: Survival, leader_regions: &[&str]) -> PlacementRule {
    PlacementRule {
        prefix: vec![],
        replicas,
        regions: vec![],
        zones: vec![],
        survival,
        leader_regions: leader_regions.iter().map(|s| s.to_string()).collect(),
    }
}

fn ids(v: &[u64]) -> Vec<NodeId> {
    v.iter().copied().map(NodeId).collect()
}

/// Six nodes: two per region, zones a and b.
fn six() -> Vec<NodeFacts> {
    vec![
        node(1, "us", "a"),
        node(2, "eu", "a"),
        node(3, "ap", "a"),
        node(4, "us", "b"),
        node(5, "eu", "b"),
        node(6, "ap", "b"),
    ]
}

fn step(p: Option<Planned>) -> Option<PlanStep> {
    p.map(|p| p.step)
}

#[test]
fn a_range_meeting_its_rule_needs_nothing() {
    let r = rule(3, Survival::Region, &[]);
    assert_eq!(
        plan_range(&r, &ids(&[1, 2, 3]), Some(NodeId(1)), &six()),
        None
    );
}

#[test]
fn grows_to_five_spread_over_regions() {
    let r = rule(5, Survival::Region, &[]);
    let nodes = six();
    // The fourth replica goes to a region with one replica, preferring a new zone there.
    assert_eq!(
        step(plan_range(&r, &ids(&[1, 2, 3]), Some(NodeId(1)), &nodes)),
        Some(PlanStep::Add(NodeId(4)))
    );
    assert_eq!(
        step(plan_range(&r, &ids(&[1, 2, 3, 4]), Some(NodeId(1)), &nodes)),
        Some(PlanStep::Add(NodeId(5)))
    );
    assert_eq!(
        plan_range(&r, &ids(&[1, 2, 3, 4, 5]), Some(NodeId(1)), &nodes),
        None
    );
}

#[test]
fn a_draining_replica_is_replaced_then_removed() {
    let r = rule(3, Survival::Region, &[]);
    let mut nodes = six();
    nodes[1].state = NodeState::Draining; // node 2, eu
    assert_eq!(
        step(plan_range(&r, &ids(&[1, 2, 3]), Some(NodeId(1)), &nodes)),
        Some(PlanStep::Add(NodeId(5))) // the other eu node
    );
    assert_eq!(
        step(plan_range(&r, &ids(&[1, 2, 3, 5]), Some(NodeId(1)), &nodes)),
        Some(PlanStep::Remove(NodeId(2)))
    );
    // The leader on the draining node hands over first.
    assert_eq!(
        step(plan_range(&r, &ids(&[1, 2, 3, 5]), Some(NodeId(2)), &nodes)),
        Some(PlanStep::TransferLeader(NodeId(1)))
    );
}

#[test]
fn a_dead_replica_is_replaced_but_never_without_a_replacement() {
    let r = rule(3, Survival::Region, &[]);
    let mut nodes = six();
    nodes[2].dead = true;
    nodes[2].live = false;
    nodes[5].live = false; // node 6, the other ap node, is down too
    // No node in ap: the replacement goes elsewhere (an even spread over what is left).
    assert_eq!(
        step(plan_range(&r, &ids(&[1, 2, 3]), Some(NodeId(1)), &nodes)),
        Some(PlanStep::Add(NodeId(4)))
    );
    let three = vec![node(1, "us", "a"), node(2, "eu", "a"), {
        let mut n = node(3, "ap", "a");
        n.dead = true;
        n
    }];
    assert_eq!(
        plan_range(&r, &ids(&[1, 2, 3]), Some(NodeId(1)), &three),
        None
    );
}

#[test]
fn the_leader_goes_home_and_fails_over_in_order() {
    let r = rule(3, Survival::Region, &["ap", "eu"]);
    let mut nodes = six();
    assert_eq!(
        step(plan_range(&r, &ids(&[1, 2, 3]), Some(NodeId(1)), &nodes)),
        Some(PlanStep::TransferLeader(NodeId(3)))
    );
    assert_eq!(
        plan_range(&r, &ids(&[1, 2, 3]), Some(NodeId(3)), &nodes),
        None
    );
    nodes[2].live = false; // ap's voter is down (not yet dead): eu is next
    assert_eq!(
        step(plan_range(&r, &ids(&[1, 2, 3]), Some(NodeId(1)), &nodes)),
        Some(PlanStep::TransferLeader(NodeId(2)))
    );
    assert_eq!(
        plan_range(&r, &ids(&[1, 2, 3]), Some(NodeId(2)), &nodes),
        None
    );
}

#[test]
fn a_crowded_region_is_relieved() {
    let r = rule(3, Survival::Region, &[]);
    let nodes = six();
    // Two replicas in us: add in ap, then remove one of us's.
    assert_eq!(
        step(plan_range(&r, &ids(&[1, 2, 4]), Some(NodeId(2)), &nodes)),
        Some(PlanStep::Add(NodeId(3)))
    );
    assert_eq!(
        step(plan_range(&r, &ids(&[1, 2, 3, 4]), Some(NodeId(1)), &nodes)),
        Some(PlanStep::Remove(NodeId(4)))
    );
}

#[test]
fn rule_regions_and_zones_are_respected() {
    let mut r = rule(3, Survival::Zone, &[]);
    r.regions = vec!["us".into(), "eu".into()];
    r.zones = vec!["us/a".into(), "us/b".into(), "a".into()];
    // Allowed: 1 (us/a), 4 (us/b), 2 (eu/a). Node 3 (ap) must go.
    assert_eq!(
        step(plan_range(&r, &ids(&[1, 2, 3]), Some(NodeId(1)), &six())),
        Some(PlanStep::Add(NodeId(4)))
    );
}

fn apply(voters: &mut Vec<NodeId>, leader: &mut Option<NodeId>, s: &PlanStep) {
    match s {
        PlanStep::Add(n) => voters.push(*n),
        PlanStep::Remove(n) => voters.retain(|v| v != n),
        PlanStep::TransferLeader(n) => *leader = Some(*n),
    }
}

fn arb_nodes() -> impl Strategy<Value = Vec<NodeFacts>> {
    proptest::collection::vec((0..3usize, 0..2usize, 0..6u8), 3..9).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (r, z, health))| {
                let mut n = node(i as u64 + 1, ["us", "eu", "ap"][r], ["a", "b"][z]);
                match health {
                    0 => n.state = NodeState::Draining,
                    1 => {
                        n.dead = true;
                        n.live = false
                    }
                    _ => {}
                }
                n
            })
            .collect()
    })
}

proptest! {
    /// Following the plan converges, never removes the leader, never holds more than one
    /// extra voter, and ends with the leader in the best region available.
    #[test]
    fn following_the_plan_converges(
        nodes in arb_nodes(),
        five in any::<bool>(),
        zone in any::<bool>(),
        start in proptest::collection::btree_set(1u64..9, 1..6),
        home in 0..3usize,
    ) {
        let survival = if zone { Survival::Zone } else { Survival::Region };
        let r = rule(if five { 5 } else { 3 }, survival, &[["us", "eu", "ap"][home]]);
        let mut voters: Vec<NodeId> = start
            .into_iter()
            .filter(|i| *i as usize <= nodes.len())
            .map(NodeId)
            .collect();
        prop_assume!(!voters.is_empty());
        let mut leader = voters.first().copied();
        let most = voters.len().max(r.replicas as usize) + 1;
        let mut steps = 0;
        while let Some(p) = plan_range(&r, &voters, leader, &nodes) {
            if let PlanStep::Remove(n) = p.step {
                prop_assert!(Some(n) != leader, "removes the leader");
            }
            if let PlanStep::TransferLeader(n) = p.step {
                prop_assert!(voters.contains(&n));
            }
            apply(&mut voters, &mut leader, &p.step);
            prop_assert!(voters.len() <= most);
            steps += 1;
            prop_assert!(steps < 30, "no convergence: {voters:?} {leader:?} {p:?}");
        }
        let usable_n = nodes.iter().filter(|n| usable(&r, n)).count();
        let good_n = voters
            .iter()
            .filter(|v| nodes.iter().any(|n| n.id == **v && usable(&r, n)))
            .count();
        prop_assert!(good_n >= usable_n.min(r.replicas as usize));
        let home_voter = voters.iter().any(|v| {
            nodes.iter().any(|n| n.id == *v && usable(&r, n) && n.region == r.leader_regions[0])
        });
        if home_voter {
            let lf = nodes.iter().find(|n| Some(n.id) == leader).unwrap();
            prop_assert_eq!(&lf.region, &r.leader_regions[0]);
        }
    }
}

/// Found by `following_the_plan_converges`: every voter draining, the leader among them, and
/// one usable node. The leader could not hand over (no usable voter), so nothing moved.
#[test]
fn a_draining_leader_without_a_successor_does_not_block_the_others() {
    let nodes: Vec<NodeFacts> = (1..=7u64)
        .map(|i| {
            let mut n = node(i, "us", "a");
            if i != 5 {
                n.state = NodeState::Draining;
            }
            n
        })
        .collect();
    let r = rule(3, Survival::Region, &["us"]);
    let mut voters = ids(&[1, 2, 3, 4]);
    let mut leader = Some(NodeId(1));
    let mut steps = 0;
    while let Some(p) = plan_range(&r, &voters, leader, &nodes) {
        apply(&mut voters, &mut leader, &p.step);
        steps += 1;
        assert!(steps < 30, "no convergence: {voters:?}");
    }
    assert!(voters.contains(&NodeId(5)), "{voters:?}");
    assert_eq!(leader, Some(NodeId(5)));
}
