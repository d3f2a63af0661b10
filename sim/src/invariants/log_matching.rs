//! Log matching: two replicas' entries with the same log id (term, leader, index) are
//! byte-identical, and so is every entry both hold at or below both their commit indexes.

use crate::run::Registry;
use crate::store::MemStore;
use meridian_state::ClusterMap;
use meridian_types::GroupId;

pub fn check(registry: &Registry, stores: &[MemStore], map: Option<&ClusterMap>) -> Vec<String> {
    let Some(map) = map else { return Vec::new() };
    let mut groups: Vec<(u64, Vec<u64>)> =
        vec![(0, map.meta_replicas.iter().map(|n| n.0).collect())];
    for r in map.ranges.values() {
        groups.push((r.id.0, r.replicas.iter().map(|n| n.0).collect()));
    }
    let reg = registry.lock();
    let mut out = Vec::new();
    for (g, replicas) in groups {
        let logs: Vec<(u64, u64, std::collections::BTreeMap<u64, Vec<u8>>)> = replicas
            .iter()
            .map(|n| {
                let committed = reg
                    .get(n)
                    .and_then(|node| node.group(GroupId(g)))
                    .map(|rg| rg.status().committed_index)
                    .unwrap_or(0);
                (*n, committed, stores[(*n - 1) as usize].log_of(g))
            })
            .collect();
        for (i, (na, ca, la)) in logs.iter().enumerate() {
            for (nb, cb, lb) in logs.iter().skip(i + 1) {
                for (idx, a) in la {
                    let Some(b) = lb.get(idx) else { continue };
                    let same_id = meridian_consensus::log_record_id(a).is_some()
                        && meridian_consensus::log_record_id(a)
                            == meridian_consensus::log_record_id(b);
                    let both_committed = *idx <= *ca && *idx <= *cb;
                    if (same_id || both_committed) && a != b {
                        out.push(format!(
                            "log matching: group {g} index {idx} differs between nodes {na} and {nb} ({:?} vs {:?})",
                            meridian_consensus::log_record_id(a),
                            meridian_consensus::log_record_id(b)
                        ));
                    }
                }
            }
        }
    }
    out
}
