//! Checking placement rules against the cluster's topology, and choosing replicas that meet one.
//!
//! [`validate_rule`] says whether a rule can be met by the active nodes and, if not, what is
//! missing. [`assign`] picks a replica set that meets a rule (keeping current replicas where it
//! can); [`meets`] says whether a replica set already does. A rule `validate_rule` accepts always
//! has an assignment (the property test below checks it): the failure domains (zones or regions)
//! with a per-domain cap form a partition matroid, so `validate_rule`'s capacity sum is exactly
//! the most replicas any assignment can place, and `assign`'s greedy pick always reaches it.

use crate::meta::{ClusterMap, NodeInfo, NodeState};
use crate::placement::{PLACEMENT_PREFIX_MAX, PLACEMENT_REPLICAS_ALLOWED, PlacementRule, Survival};
use meridian_types::{ErrorCode, MeridianError, NodeId};
use std::collections::{BTreeMap, BTreeSet};

/// Most regions, zones or leader regions one rule may list.
pub const PLACEMENT_NAMES_MAX: usize = 32;
/// Longest region or zone name in a rule, in bytes.
pub const PLACEMENT_NAME_BYTES_MAX: usize = 128;

/// A zone as `region/zone`: zone names are only unique within their region.
pub fn zone_label(n: &NodeInfo) -> String {
    format!("{}/{}", n.region, n.zone)
}

/// Whether `n` may hold a replica under `rule`'s region and zone lists (its state aside).
/// A zone entry `region/zone` names one zone; a bare `zone` names that zone in every region.
pub fn node_allowed(rule: &PlacementRule, n: &NodeInfo) -> bool {
    let region_ok = rule.regions.is_empty() || rule.regions.contains(&n.region);
    let zone_ok = rule.zones.is_empty()
        || rule.zones.iter().any(|z| match z.split_once('/') {
            Some((r, z)) => r == n.region && z == n.zone,
            None => *z == n.zone,
        });
    region_ok && zone_ok
}

/// The failure domain of `n` under `survival`: its region, or its `region/zone`.
pub fn domain_of(survival: Survival, n: &NodeInfo) -> String {
    match survival {
        Survival::Region => n.region.clone(),
        Survival::Zone => zone_label(n),
    }
}

fn unsatisfiable(message: String) -> MeridianError {
    MeridianError::new(ErrorCode::PlacementUnsatisfiable, message)
}

fn list(names: &[String]) -> String {
    format!("[{}]", names.join(", "))
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Checks the rule on its own: replica count, prefix length, names, and that leader regions are
/// among its regions. Errors are `invalid_argument`.
pub fn check_rule_shape(rule: &PlacementRule) -> Result<(), MeridianError> {
    if !PLACEMENT_REPLICAS_ALLOWED.contains(&rule.replicas) {
        return Err(MeridianError::invalid(format!(
            "replicas must be 3 or 5, not {}",
            rule.replicas
        )));
    }
    if rule.prefix.len() > PLACEMENT_PREFIX_MAX {
        return Err(MeridianError::invalid(format!(
            "a placement prefix has at most {PLACEMENT_PREFIX_MAX} bytes, this one {}",
            rule.prefix.len()
        )));
    }
    for (field, names) in [
        ("regions", &rule.regions),
        ("zones", &rule.zones),
        ("leader_regions", &rule.leader_regions),
    ] {
        if names.len() > PLACEMENT_NAMES_MAX {
            return Err(MeridianError::invalid(format!(
                "{field} lists {} names; at most {PLACEMENT_NAMES_MAX}",
                names.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for name in names {
            let parts_ok = if field == "zones" {
                match name.split_once('/') {
                    Some((r, z)) => !r.is_empty() && !z.is_empty() && !z.contains('/'),
                    None => !name.is_empty(),
                }
            } else {
                !name.is_empty() && !name.contains('/')
            };
            if !parts_ok || name.len() > PLACEMENT_NAME_BYTES_MAX || name.trim() != name {
                let form = if field == "zones" {
                    "`zone` or `region/zone`"
                } else {
                    "a region name"
                };
                return Err(MeridianError::invalid(format!(
                    "{field} entry {name:?} is not {form} (at most {PLACEMENT_NAME_BYTES_MAX} bytes, no surrounding spaces)"
                )));
            }
            if !seen.insert(name) {
                return Err(MeridianError::invalid(format!(
                    "{field} lists {name:?} twice"
                )));
            }
        }
    }
    if !rule.regions.is_empty() {
        for z in &rule.zones {
            if let Some((r, _)) = z.split_once('/')
                && !rule.regions.iter().any(|x| x == r)
            {
                return Err(MeridianError::invalid(format!(
                    "zone {z:?} is in region {r:?}, which regions {} leaves out",
                    list(&rule.regions)
                )));
            }
        }
        for l in &rule.leader_regions {
            if !rule.regions.contains(l) {
                return Err(MeridianError::invalid(format!(
                    "leader region {l:?} is not one of the rule's regions {}",
                    list(&rule.regions)
                )));
            }
        }
    }
    Ok(())
}

/// Checks that `rule` is well formed and that the cluster's active nodes can meet it: every
/// listed region, zone and leader region has an active node the rule may use, there are enough
/// such nodes, and they spread over enough regions (region survival) or zones (zone survival).
/// Topology problems are `placement_unsatisfiable` and say what is missing; a malformed rule is
/// `invalid_argument`.
pub fn validate_rule(rule: &PlacementRule, map: &ClusterMap) -> Result<(), MeridianError> {
    check_rule_shape(rule)?;
    let active: Vec<&NodeInfo> = map
        .nodes
        .values()
        .filter(|n| n.state == NodeState::Active)
        .collect();
    let eligible: Vec<&NodeInfo> = active
        .iter()
        .copied()
        .filter(|n| node_allowed(rule, n))
        .collect();
    let active_regions: BTreeSet<&str> = active.iter().map(|n| n.region.as_str()).collect();
    let active_regions_list = list(
        &active_regions
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    );
    for r in &rule.regions {
        if !active_regions.contains(r.as_str()) {
            return Err(unsatisfiable(format!(
                "region {r:?} has no active node (regions with active nodes: {active_regions_list})"
            )));
        }
        if !eligible.iter().any(|n| n.region == *r) {
            return Err(unsatisfiable(format!(
                "region {r:?} has no active node in zones {}",
                list(&rule.zones)
            )));
        }
    }
    for z in &rule.zones {
        let only_zone = PlacementRule {
            zones: vec![z.clone()],
            ..rule.clone()
        };
        if !active.iter().any(|n| node_allowed(&only_zone, n)) {
            let zones: BTreeSet<String> = active.iter().map(|n| zone_label(n)).collect();
            return Err(unsatisfiable(format!(
                "zone {z:?} has no active node{} (zones with active nodes: {})",
                if rule.regions.is_empty() {
                    String::new()
                } else {
                    format!(" in regions {}", list(&rule.regions))
                },
                list(&zones.into_iter().collect::<Vec<_>>())
            )));
        }
    }
    for l in &rule.leader_regions {
        if !eligible.iter().any(|n| n.region == *l) {
            return Err(unsatisfiable(format!(
                "leader region {l:?} has no active node the rule may use (regions with active nodes: {active_regions_list})"
            )));
        }
    }
    let want = rule.replicas as usize;
    if eligible.len() < want {
        let scope = match (rule.regions.is_empty(), rule.zones.is_empty()) {
            (true, true) => "in the cluster".to_string(),
            (false, true) => format!("in regions {}", list(&rule.regions)),
            (_, false) => format!("in zones {}", list(&rule.zones)),
        };
        return Err(unsatisfiable(format!(
            "rule wants {want} replicas but only {} {scope}",
            match eligible.len() {
                1 => "1 active node is".to_string(),
                n => format!("{n} active nodes are"),
            }
        )));
    }
    // Survival: at most `cap` replicas per domain, so the domains must hold `want` in all.
    let cap = rule.max_per_domain();
    let mut per_domain: BTreeMap<String, usize> = BTreeMap::new();
    for n in &eligible {
        *per_domain.entry(domain_of(rule.survival, n)).or_default() += 1;
    }
    let capacity: usize = per_domain.values().map(|&c| c.min(cap)).sum();
    if capacity < want {
        let word = match rule.survival {
            Survival::Region => "region",
            Survival::Zone => "zone",
        };
        let domains_needed = want.div_ceil(cap.max(1));
        let have: Vec<String> = per_domain
            .iter()
            .map(|(d, c)| format!("{d}: {}", plural(*c, "node")))
            .collect();
        let short: Vec<String> = per_domain
            .iter()
            .filter(|(_, c)| **c < cap)
            .map(|(d, _)| d.clone())
            .collect();
        let fix = if short.is_empty() {
            format!("add nodes in another {word}")
        } else {
            format!(
                "add nodes in another {word} or in {}",
                list(&short).trim_matches(['[', ']'])
            )
        };
        return Err(unsatisfiable(format!(
            "{word} survival with {want} replicas allows at most {} per {word}, so it needs at least {} with enough nodes; the eligible nodes are in {} [{}], which can hold at most {capacity} replicas: {fix}",
            plural(cap, "replica"),
            plural(domains_needed, word),
            plural(per_domain.len(), word),
            have.join(", "),
        )));
    }
    Ok(())
}

/// Whether `replicas` meets `rule` on `map`: the right count, distinct active nodes the rule
/// allows, and no failure domain holding more than [`PlacementRule::max_per_domain`].
pub fn meets(rule: &PlacementRule, map: &ClusterMap, replicas: &[NodeId]) -> bool {
    if replicas.len() != rule.replicas as usize {
        return false;
    }
    let mut seen = BTreeSet::new();
    let mut per_domain: BTreeMap<String, usize> = BTreeMap::new();
    for id in replicas {
        let Some(n) = map.nodes.get(id) else {
            return false;
        };
        if !seen.insert(*id) || n.state != NodeState::Active || !node_allowed(rule, n) {
            return false;
        }
        let c = per_domain.entry(domain_of(rule.survival, n)).or_default();
        *c += 1;
        if *c > rule.max_per_domain() {
            return false;
        }
    }
    true
}

/// Chooses `rule.replicas` nodes that meet `rule`, or `None` when the active nodes for which
/// `eligible` holds cannot (a node being drained or considered dead is made ineligible this way).
///
/// Deterministic. It keeps the nodes of `current` that the rule allows and that still fit (those
/// in preferred leader regions first, then in the order given), so a range that already meets its
/// rule keeps its replicas and one that does not moves as few as it can. It then adds nodes one
/// at a time, taking the best by, in order: the rank of its region in `leader_regions` (the home
/// region first, unlisted regions last, so with zone survival replicas stay in the home region
/// while its zones allow), fewest chosen replicas in its region, then in its zone, fewest
/// replicas and learners it holds over all ranges of `map`, and lowest id. The result is sorted.
pub fn assign(
    rule: &PlacementRule,
    map: &ClusterMap,
    current: &[NodeId],
    eligible: impl Fn(NodeId) -> bool,
) -> Option<Vec<NodeId>> {
    let candidates = candidates(rule, map, eligible);
    assign_capped(
        rule,
        map,
        current,
        &candidates,
        rule.replicas as usize,
        rule.max_per_domain(),
    )
}

/// Like [`assign`], but when the nodes cannot meet the rule, the best they can do, as the
/// placement driver does for an existing range: the cap per failure domain relaxed to an even
/// spread over the domains there are, and fewer replicas than the rule when there are fewer
/// nodes. `None` only when no node is eligible. For ranges created on a running cluster (a
/// stream partition, a queue), so a single-zone or single-node cluster can hold them.
pub fn assign_spread(
    rule: &PlacementRule,
    map: &ClusterMap,
    current: &[NodeId],
    eligible: impl Fn(NodeId) -> bool,
) -> Option<Vec<NodeId>> {
    let candidates = candidates(rule, map, eligible);
    let want = (rule.replicas as usize).min(candidates.len());
    if want == 0 {
        return None;
    }
    let domains: std::collections::BTreeSet<String> = candidates
        .values()
        .map(|n| domain_of(rule.survival, n))
        .collect();
    let cap = rule
        .max_per_domain()
        .max(want.div_ceil(domains.len().max(1)));
    assign_capped(rule, map, current, &candidates, want, cap)
}

/// The active nodes the rule allows and `eligible` accepts.
fn candidates<'a>(
    rule: &PlacementRule,
    map: &'a ClusterMap,
    eligible: impl Fn(NodeId) -> bool,
) -> BTreeMap<NodeId, &'a NodeInfo> {
    map.nodes
        .values()
        .filter(|n| n.state == NodeState::Active && node_allowed(rule, n) && eligible(n.id))
        .map(|n| (n.id, n))
        .collect()
}

fn assign_capped(
    rule: &PlacementRule,
    map: &ClusterMap,
    current: &[NodeId],
    candidates: &BTreeMap<NodeId, &NodeInfo>,
    want: usize,
    cap: usize,
) -> Option<Vec<NodeId>> {
    let rank = |n: &NodeInfo| {
        rule.leader_regions
            .iter()
            .position(|r| *r == n.region)
            .unwrap_or(rule.leader_regions.len())
    };
    let mut load: BTreeMap<NodeId, usize> = BTreeMap::new();
    for r in map.ranges.values() {
        for n in r.replicas.iter().chain(&r.learners) {
            *load.entry(*n).or_default() += 1;
        }
    }
    let mut t = Tally::default();
    // Kept replicas: the rule allows them and their domain has room.
    let mut keep: Vec<(usize, usize, &NodeInfo)> = current
        .iter()
        .enumerate()
        .filter_map(|(i, id)| candidates.get(id).map(|n| (rank(n), i, *n)))
        .collect();
    keep.sort_by_key(|(r, i, _)| (*r, *i));
    for (_, _, n) in keep {
        if t.chosen.len() < want && t.fits(rule, n, cap) {
            t.take(rule, n);
        }
    }
    while t.chosen.len() < want {
        let next = candidates
            .values()
            .filter(|n| t.fits(rule, n, cap))
            .min_by_key(|n| {
                (
                    rank(n),
                    t.per_region.get(&n.region).copied().unwrap_or(0),
                    t.per_zone.get(&zone_label(n)).copied().unwrap_or(0),
                    load.get(&n.id).copied().unwrap_or(0),
                    n.id,
                )
            })?;
        t.take(rule, next);
    }
    let mut chosen = t.chosen;
    chosen.sort();
    Some(chosen)
}

/// Replicas chosen so far and how they spread.
#[derive(Default)]
struct Tally {
    chosen: Vec<NodeId>,
    per_domain: BTreeMap<String, usize>,
    per_region: BTreeMap<String, usize>,
    per_zone: BTreeMap<String, usize>,
}

impl Tally {
    fn fits(&self, rule: &PlacementRule, n: &NodeInfo, cap: usize) -> bool {
        !self.chosen.contains(&n.id)
            && self
                .per_domain
                .get(&domain_of(rule.survival, n))
                .copied()
                .unwrap_or(0)
                < cap
    }

    fn take(&mut self, rule: &PlacementRule, n: &NodeInfo) {
        self.chosen.push(n.id);
        *self
            .per_domain
            .entry(domain_of(rule.survival, n))
            .or_default() += 1;
        *self.per_region.entry(n.region.clone()).or_default() += 1;
        *self.per_zone.entry(zone_label(n)).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_types::{ClusterId, RangeId};
    use proptest::prelude::*;

    fn map(nodes: &[(u64, &str, &str)]) -> ClusterMap {
        let mut m = ClusterMap {
            cluster_id: ClusterId(1),
            ..Default::default()
        };
        for &(id, region, zone) in nodes {
            m.nodes.insert(
                NodeId(id),
                NodeInfo {
                    id: NodeId(id),
                    addr: format!("n{id}"),
                    region: region.into(),
                    zone: zone.into(),
                    state: NodeState::Active,
                },
            );
        }
        m
    }

    fn rule(replicas: u8, survival: Survival) -> PlacementRule {
        PlacementRule {
            prefix: b"p/".to_vec(),
            replicas,
            regions: vec![],
            zones: vec![],
            survival,
            leader_regions: vec![],
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// us: 3 nodes in zones a, b, c; eu: 2 nodes in a, b; ap: 1 node.
    fn six() -> ClusterMap {
        map(&[
            (1, "us", "a"),
            (2, "us", "b"),
            (3, "us", "c"),
            (4, "eu", "a"),
            (5, "eu", "b"),
            (6, "ap", "a"),
        ])
    }

    fn err(r: &PlacementRule, m: &ClusterMap) -> (ErrorCode, String) {
        let e = validate_rule(r, m).expect_err("rule should be refused");
        (e.code, e.message)
    }

    #[test]
    fn malformed_rules_are_invalid_arguments() {
        let m = six();
        let mut cases: Vec<(PlacementRule, &str)> = Vec::new();
        cases.push((rule(4, Survival::Zone), "replicas must be 3 or 5, not 4"));
        let mut r = rule(3, Survival::Zone);
        r.prefix = vec![b'k'; PLACEMENT_PREFIX_MAX + 1];
        cases.push((r, "at most 1024 bytes"));
        let mut r = rule(3, Survival::Zone);
        r.regions = names(&["us", "us"]);
        cases.push((r, "lists \"us\" twice"));
        let mut r = rule(3, Survival::Zone);
        r.zones = names(&["us/a/b"]);
        cases.push((r, "is not `zone` or `region/zone`"));
        let mut r = rule(3, Survival::Zone);
        r.regions = names(&["us"]);
        r.leader_regions = names(&["eu"]);
        cases.push((
            r,
            "leader region \"eu\" is not one of the rule's regions [us]",
        ));
        let mut r = rule(3, Survival::Zone);
        r.regions = names(&["us"]);
        r.zones = names(&["eu/a"]);
        cases.push((r, "which regions [us] leaves out"));
        for (r, want) in cases {
            let (code, msg) = err(&r, &m);
            assert_eq!(code, ErrorCode::InvalidArgument, "{msg}");
            assert!(msg.contains(want), "{msg:?} lacks {want:?}");
        }
    }

    #[test]
    fn topology_problems_say_what_is_missing() {
        let m = six();
        let mut cases: Vec<(ClusterMap, PlacementRule, &str)> = Vec::new();
        let mut r = rule(3, Survival::Zone);
        r.regions = names(&["us", "mars"]);
        cases.push((
            six(),
            r,
            "region \"mars\" has no active node (regions with active nodes: [ap, eu, us])",
        ));
        let mut r = rule(3, Survival::Zone);
        r.zones = names(&["us/z"]);
        cases.push((six(), r, "zone \"us/z\" has no active node"));
        let mut r = rule(3, Survival::Zone);
        r.regions = names(&["us", "ap"]);
        r.zones = names(&["b"]);
        cases.push((six(), r, "region \"ap\" has no active node in zones [b]"));
        let mut r = rule(5, Survival::Zone);
        r.regions = names(&["eu", "ap"]);
        cases.push((
            six(),
            r,
            "rule wants 5 replicas but only 3 active nodes are in regions [eu, ap]",
        ));
        let mut r = rule(3, Survival::Region);
        r.regions = names(&["us", "eu"]);
        cases.push((
            six(),
            r,
            "region survival with 3 replicas allows at most 1 replica per region, so it needs at least 3 regions with enough nodes; the eligible nodes are in 2 regions [eu: 2 nodes, us: 3 nodes], which can hold at most 2 replicas: add nodes in another region",
        ));
        let lopsided = map(&[
            (1, "us", "a"),
            (2, "us", "b"),
            (3, "us", "c"),
            (4, "eu", "a"),
            (6, "ap", "a"),
        ]);
        cases.push((
            lopsided,
            rule(5, Survival::Region),
            "region survival with 5 replicas allows at most 2 replicas per region, so it needs at least 3 regions with enough nodes; the eligible nodes are in 3 regions [ap: 1 node, eu: 1 node, us: 3 nodes], which can hold at most 4 replicas: add nodes in another region or in ap, eu",
        ));
        let one_zone = map(&[(1, "us", "a"), (2, "us", "a"), (3, "us", "b")]);
        cases.push((
            one_zone,
            rule(3, Survival::Zone),
            "zone survival with 3 replicas allows at most 1 replica per zone, so it needs at least 3 zones with enough nodes; the eligible nodes are in 2 zones [us/a: 2 nodes, us/b: 1 node]",
        ));
        let mut r = rule(3, Survival::Zone);
        r.leader_regions = names(&["mars"]);
        cases.push((six(), r, "leader region \"mars\" has no active node"));
        for (m, r, want) in cases {
            let (code, msg) = err(&r, &m);
            assert_eq!(code, ErrorCode::PlacementUnsatisfiable, "{msg}");
            assert!(msg.contains(want), "{msg:?} lacks {want:?}");
        }
        // A node that is not active does not count.
        let mut m2 = m.clone();
        m2.nodes.get_mut(&NodeId(6)).unwrap().state = NodeState::Draining;
        let r = rule(3, Survival::Region);
        assert!(validate_rule(&r, &m).is_ok());
        assert!(err(&r, &m2).1.contains("in 2 regions"));
    }

    #[test]
    fn assign_spreads_prefers_the_home_region_and_keeps_current() {
        let m = six();
        let all = |_: NodeId| true;
        // Region survival: one per region, the home region's least loaded node.
        let mut r = rule(3, Survival::Region);
        r.leader_regions = names(&["eu"]);
        assert_eq!(
            assign(&r, &m, &[], all),
            Some(vec![NodeId(1), NodeId(4), NodeId(6)])
        );
        // Zone survival with a home region of three zones: all in the home region.
        let mut r = rule(3, Survival::Zone);
        r.leader_regions = names(&["us"]);
        assert_eq!(
            assign(&r, &m, &[], all),
            Some(vec![NodeId(1), NodeId(2), NodeId(3)])
        );
        // The home region has two zones: the third replica goes elsewhere.
        r.leader_regions = names(&["eu", "ap"]);
        assert_eq!(
            assign(&r, &m, &[], all),
            Some(vec![NodeId(4), NodeId(5), NodeId(6)])
        );
        // No preference: spread over regions first.
        let r = rule(3, Survival::Zone);
        assert_eq!(
            assign(&r, &m, &[], all),
            Some(vec![NodeId(1), NodeId(4), NodeId(6)])
        );
        // Current replicas that meet the rule stay; one that breaks it is replaced.
        let r = rule(3, Survival::Region);
        let cur = [NodeId(3), NodeId(5), NodeId(6)];
        assert!(meets(&r, &m, &cur));
        assert_eq!(assign(&r, &m, &cur, all), Some(cur.to_vec()));
        let cur = [NodeId(2), NodeId(3), NodeId(5)];
        assert!(!meets(&r, &m, &cur));
        assert_eq!(
            assign(&r, &m, &cur, all),
            Some(vec![NodeId(2), NodeId(5), NodeId(6)])
        );
        // An ineligible node (being drained) is moved off.
        assert_eq!(
            assign(&r, &m, &[NodeId(3), NodeId(5), NodeId(6)], |n| n
                != NodeId(5)),
            Some(vec![NodeId(3), NodeId(4), NodeId(6)])
        );
        // Nothing fits: ap is the only node of its region.
        assert_eq!(assign(&r, &m, &[], |n| n != NodeId(6)), None);
    }

    fn arb_map() -> impl Strategy<Value = ClusterMap> {
        let node = (0..4usize, 0..3usize, 0..5u8);
        proptest::collection::vec(node, 0..10).prop_map(|nodes| {
            let regions = ["r0", "r1", "r2", "r3"];
            let zones = ["a", "b", "c"];
            let mut m = ClusterMap {
                cluster_id: ClusterId(1),
                ..Default::default()
            };
            for (i, (r, z, s)) in nodes.into_iter().enumerate() {
                let id = NodeId(i as u64 + 1);
                m.nodes.insert(
                    id,
                    NodeInfo {
                        id,
                        addr: String::new(),
                        region: regions[r].into(),
                        zone: zones[z].into(),
                        // Mostly active.
                        state: match s {
                            0 => NodeState::Draining,
                            1 => NodeState::Joining,
                            _ => NodeState::Active,
                        },
                    },
                );
            }
            // Some load, so ties break on it.
            let ids: Vec<NodeId> = m.nodes.keys().copied().collect();
            for (i, id) in ids.iter().enumerate().take(3) {
                m.ranges.insert(
                    RangeId(i as u64 + 1),
                    crate::meta::RangeInfo {
                        id: RangeId(i as u64 + 1),
                        start: vec![],
                        end: vec![],
                        replicas: vec![*id],
                        learners: vec![],
                        version: 1,
                        system: None,
                    },
                );
            }
            m
        })
    }

    fn arb_rule() -> impl Strategy<Value = PlacementRule> {
        let subset = |all: &'static [&'static str]| {
            proptest::sample::subsequence(all.to_vec(), 0..=all.len())
                .prop_map(|v| v.into_iter().map(String::from).collect::<Vec<_>>())
        };
        (
            prop_oneof![Just(3u8), Just(5u8)],
            subset(&["r0", "r1", "r2", "r3"]),
            subset(&["a", "b", "r0/c", "r1/a", "r2/b"]),
            prop_oneof![Just(Survival::Zone), Just(Survival::Region)],
            subset(&["r2", "r0", "r1"]),
        )
            .prop_map(|(replicas, regions, zones, survival, leader_regions)| {
                PlacementRule {
                    prefix: b"x".to_vec(),
                    replicas,
                    regions,
                    zones,
                    survival,
                    leader_regions,
                }
            })
    }

    proptest! {
        /// A rule `validate_rule` accepts has an assignment meeting it, whatever the current
        /// replicas; `assign` is deterministic, never returns what does not meet the rule, and
        /// keeps replicas that already meet it.
        #[test]
        fn accepted_rules_have_an_assignment(
            m in arb_map(),
            r in arb_rule(),
            cur in proptest::collection::vec(1..12u64, 0..6),
        ) {
            let cur: Vec<NodeId> = cur.into_iter().map(NodeId).collect();
            let got = assign(&r, &m, &cur, |_| true);
            prop_assert_eq!(&got, &assign(&r, &m, &cur, |_| true));
            if validate_rule(&r, &m).is_ok() {
                prop_assert!(got.is_some(), "accepted rule {:?} has no assignment", r);
            }
            if let Some(a) = &got {
                prop_assert!(meets(&r, &m, a), "{:?} does not meet {:?}", a, r);
            }
            // With the shape fine and no list naming an empty place, the converse holds too.
            if got.is_none() {
                prop_assert!(validate_rule(&r, &m).is_err());
            }
            let mut sorted = cur.clone();
            sorted.sort();
            sorted.dedup();
            if sorted.len() == cur.len() && meets(&r, &m, &cur) {
                prop_assert_eq!(got, Some(sorted));
            }
        }
    }

    /// Where the rule cannot be met, `assign_spread` does the best the nodes can: an even
    /// spread, fewer replicas than asked when there are fewer nodes; where it can, it agrees
    /// with `assign`.
    #[test]
    fn assign_spread_is_the_best_the_nodes_can_do() {
        let all = |_| true;
        let one_zone = map(&[(1, "us", "a"), (2, "us", "a"), (3, "us", "a")]);
        let r = rule(3, Survival::Zone);
        assert_eq!(assign(&r, &one_zone, &[], all), None);
        assert_eq!(
            assign_spread(&r, &one_zone, &[], all),
            Some(vec![NodeId(1), NodeId(2), NodeId(3)])
        );
        let single = map(&[(7, "us", "a")]);
        assert_eq!(assign_spread(&r, &single, &[], all), Some(vec![NodeId(7)]));
        assert_eq!(assign_spread(&r, &single, &[], |_| false), None);
        // Two zones, three replicas: two in one zone, one in the other.
        let two = map(&[
            (1, "us", "a"),
            (2, "us", "a"),
            (3, "us", "b"),
            (4, "us", "b"),
        ]);
        let got = assign_spread(&r, &two, &[], all).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.iter().any(|n| n.0 >= 3) && got.iter().any(|n| n.0 <= 2));
        let three = map(&[
            (1, "us", "a"),
            (2, "us", "b"),
            (3, "us", "c"),
            (4, "us", "a"),
        ]);
        assert_eq!(
            assign_spread(&r, &three, &[], all),
            assign(&r, &three, &[], all)
        );
    }
}
