//! The placement driver's decisions, as a pure function: given a range's voters, its leader,
//! its rule and what is known of every node, the ONE next step that brings the range closer to
//! its rule. The node crate's driver executes the step and asks again.
//!
//! Order of concerns: replace replicas that must go (dead, draining, outside the rule, too many
//! in one failure domain) by adding the replacement first; grow to the rule's count; shrink to
//! it (never removing the leader — hand leadership away first); then put the leader in the most
//! preferred region that holds a usable voter.

use crate::meta::NodeState;
use crate::placement::{PlacementRule, Survival};
use meridian_types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the driver knows of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    pub id: NodeId,
    pub region: String,
    pub zone: String,
    pub state: NodeState,
    /// Answered a probe recently: may receive a replica or leadership.
    pub live: bool,
    /// Answered no probe for the dead-node timeout: its replicas are replaced.
    pub dead: bool,
}

/// One step of the placement driver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlanStep {
    /// Add this node as a replica (learner first, then voter).
    Add(NodeId),
    /// Remove this voter.
    Remove(NodeId),
    /// Hand leadership to this voter.
    TransferLeader(NodeId),
}

/// The next step and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub step: PlanStep,
    pub reason: &'static str,
}

fn allowed(rule: &PlacementRule, n: &NodeFacts) -> bool {
    let region_ok = rule.regions.is_empty() || rule.regions.contains(&n.region);
    let zone_ok = rule.zones.is_empty()
        || rule
            .zones
            .iter()
            .any(|z| *z == n.zone || *z == format!("{}/{}", n.region, n.zone));
    region_ok && zone_ok
}

fn domain(rule: &PlacementRule, n: &NodeFacts) -> (String, String) {
    match rule.survival {
        Survival::Region => (n.region.clone(), String::new()),
        Survival::Zone => (n.region.clone(), n.zone.clone()),
    }
}

/// Whether a replica on `n` must move: the node is gone, leaving, dead or outside the rule.
fn must_go(rule: &PlacementRule, n: Option<&NodeFacts>) -> bool {
    n.is_none_or(|n| n.state != NodeState::Active || n.dead || !allowed(rule, n))
}

/// Whether `n` may receive a replica or leadership now.
fn usable(rule: &PlacementRule, n: &NodeFacts) -> bool {
    n.state == NodeState::Active && n.live && !n.dead && allowed(rule, n)
}

/// The next step for a range with `voters` and `leader` under `rule`, or `None` when it meets
/// the rule (or nothing can be done with the nodes there are).
pub fn plan_range(
    rule: &PlacementRule,
    voters: &[NodeId],
    leader: Option<NodeId>,
    nodes: &[NodeFacts],
) -> Option<Planned> {
    let facts: BTreeMap<NodeId, &NodeFacts> = nodes.iter().map(|n| (n.id, n)).collect();
    let target = rule.replicas.max(1) as usize;
    let good: Vec<&NodeFacts> = voters
        .iter()
        .filter_map(|v| facts.get(v).copied())
        .filter(|n| !must_go(rule, Some(n)))
        .collect();
    let pool: Vec<&NodeFacts> = nodes.iter().filter(|n| usable(rule, n)).collect();
    // The cap per failure domain: what the survival goal allows, relaxed to an even spread when
    // there are too few domains to meet it.
    let mut domains: Vec<(String, String)> = pool
        .iter()
        .chain(good.iter())
        .map(|n| domain(rule, n))
        .collect();
    domains.sort();
    domains.dedup();
    let cap = rule
        .max_per_domain()
        .max(target.div_ceil(domains.len().max(1)));
    let mut per_domain: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut per_region: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_zone: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for n in &good {
        *per_domain.entry(domain(rule, n)).or_default() += 1;
        *per_region.entry(&n.region).or_default() += 1;
        *per_zone.entry((&n.region, &n.zone)).or_default() += 1;
    }
    let over_cap = |n: &NodeFacts| per_domain.get(&domain(rule, n)).copied().unwrap_or(0) > cap;
    let crowded = good.iter().any(|n| over_cap(n));

    // 1. Add: too few good replicas, or a crowded domain to relieve.
    if voters.len() <= target && (good.len() < target || crowded) {
        let mut cands: Vec<&NodeFacts> = pool
            .iter()
            .copied()
            .filter(|n| !voters.contains(&n.id))
            .filter(|n| {
                // A replacement for a crowded domain must not crowd another.
                good.len() < target || per_domain.get(&domain(rule, n)).copied().unwrap_or(0) < cap
            })
            .collect();
        cands.sort_by_key(|n| {
            (
                per_domain.get(&domain(rule, n)).copied().unwrap_or(0) >= cap,
                per_region.get(n.region.as_str()).copied().unwrap_or(0),
                per_zone
                    .get(&(n.region.as_str(), n.zone.as_str()))
                    .copied()
                    .unwrap_or(0),
                n.id,
            )
        });
        if let Some(c) = cands.first() {
            let reason = if good.len() < voters.len() {
                "replace a replica that must move"
            } else if good.len() < target {
                "fewer replicas than the rule"
            } else {
                "too many replicas in one failure domain"
            };
            return Some(Planned {
                step: PlanStep::Add(c.id),
                reason,
            });
        }
    }

    // 2. Remove: more voters than the rule (a replacement is in place, or the rule shrank).
    if voters.len() > target {
        // A replica that must move, the leader last: with no usable voter to take over the
        // lead, the leader's turn would never come and the others would be stuck too.
        let victim = voters
            .iter()
            .copied()
            .filter(|v| must_go(rule, facts.get(v).copied()))
            .min_by_key(|v| (Some(*v) == leader, *v))
            .map(|v| (v, "remove a replica that must move"))
            .or_else(|| {
                good.iter()
                    .max_by_key(|n| {
                        (
                            per_domain.get(&domain(rule, n)).copied().unwrap_or(0),
                            Some(n.id) != leader,
                            n.id,
                        )
                    })
                    .map(|n| {
                        let why = if over_cap(n) {
                            "too many replicas in one failure domain"
                        } else {
                            "more replicas than the rule"
                        };
                        (n.id, why)
                    })
            });
        if let Some((v, reason)) = victim {
            if Some(v) != leader {
                return Some(Planned {
                    step: PlanStep::Remove(v),
                    reason,
                });
            }
            let others: Vec<NodeId> = voters.iter().copied().filter(|x| *x != v).collect();
            if let Some(to) = best_leader(rule, &others, &facts) {
                return Some(Planned {
                    step: PlanStep::TransferLeader(to),
                    reason: "move the leader off a replica to remove",
                });
            }
        }
    }

    // 3. Leader: off a node that must go, and into the most preferred region with a voter.
    let l = leader?;
    let lf = facts.get(&l).copied();
    if must_go(rule, lf) {
        let others: Vec<NodeId> = voters.iter().copied().filter(|x| *x != l).collect();
        return best_leader(rule, &others, &facts).map(|to| Planned {
            step: PlanStep::TransferLeader(to),
            reason: "move the leader off a node that must go",
        });
    }
    let best = best_leader(rule, voters, &facts)?;
    let rank = |n: NodeId| region_rank(rule, facts.get(&n).copied());
    if rank(best) < rank(l) {
        return Some(Planned {
            step: PlanStep::TransferLeader(best),
            reason: "move the leader to its preferred region",
        });
    }
    None
}

/// Position of `n`'s region in the rule's leader preference (`usize::MAX`: not listed).
fn region_rank(rule: &PlacementRule, n: Option<&NodeFacts>) -> usize {
    n.and_then(|n| rule.leader_regions.iter().position(|r| *r == n.region))
        .unwrap_or(usize::MAX)
}

/// The usable voter in the most preferred region (lowest id among equals).
fn best_leader(
    rule: &PlacementRule,
    voters: &[NodeId],
    facts: &BTreeMap<NodeId, &NodeFacts>,
) -> Option<NodeId> {
    voters
        .iter()
        .filter_map(|v| facts.get(v).copied())
        .filter(|n| usable(rule, n))
        .min_by_key(|n| (region_rank(rule, Some(n)), n.id))
        .map(|n| n.id)
}

#[cfg(test)]
#[path = "placement_plan_tests.rs"]
mod tests;
