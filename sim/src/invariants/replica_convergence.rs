//! After the heal, the replicas of every group reach the same applied index with byte-identical
//! state (compared by a hash of the encoded state machine). Which nodes are a group's replicas
//! comes from the newest cluster map any node holds, read again at every step: the placement
//! driver may still be moving replicas after the heal.

use meridian_state::ClusterMap;
use meridian_types::GroupId;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::run::Registry;

/// Steps the simulation until every group's replicas agree (or `max` passes); returns
/// `(group, applied index, state hash)` for each group.
pub fn wait_and_check(
    sim: &mut turmoil::Sim<'_>,
    registry: &Registry,
    max: Duration,
) -> Result<Vec<(u64, u64, u64)>, String> {
    let deadline = sim.elapsed() + max;
    let mut last = BTreeMap::new();
    loop {
        let mut groups: Vec<(u64, Vec<u64>)>;
        let mut all_agree = true;
        let mut digests = Vec::new();
        {
            let reg = registry.lock();
            let Some(map) = newest_map(reg.values().filter_map(|n| n.cluster_map())) else {
                return Err("replica convergence: no node has a cluster map after the heal".into());
            };
            groups = vec![(0, map.meta_replicas.iter().map(|n| n.0).collect())];
            for r in map.ranges.values() {
                groups.push((r.id.0, r.replicas.iter().map(|n| n.0).collect()));
            }
            last.clear();
            for (g, replicas) in &groups {
                let seen: Vec<(u64, Option<(u64, u64)>)> = replicas
                    .iter()
                    .map(|n| {
                        let d = reg
                            .get(n)
                            .and_then(|node| node.group(GroupId(*g)))
                            .map(|rg| rg.state_digest());
                        (*n, d)
                    })
                    .collect();
                let first = seen[0].1;
                if first.is_none() || seen.iter().any(|(_, d)| *d != first) {
                    all_agree = false;
                }
                if let Some((idx, h)) = first {
                    digests.push((*g, idx, h));
                }
                last.insert(*g, seen);
            }
        }
        if all_agree {
            return Ok(digests);
        }
        if sim.elapsed() > deadline {
            if let Ok(dir) = std::env::var("MERIDIAN_SIM_DUMP_STATE") {
                let reg = registry.lock();
                for (g, replicas) in &groups {
                    for n in replicas {
                        if let Some(rg) = reg.get(n).and_then(|node| node.group(GroupId(*g))) {
                            let text = rg.read(|s| format!("{s:#?}"));
                            let _ = std::fs::write(format!("{dir}/g{g}-n{n}.txt"), text);
                        }
                    }
                }
            }
            return Err(format!(
                "replica convergence: replicas still differ {max:?} after the heal (node, (applied index, state hash)): {last:?}"
            ));
        }
        if let Err(e) = sim.step() {
            return Err(format!("a host failed while converging: {e}"));
        }
    }
}

/// The map with the highest version (every change to the map raises it).
pub fn newest_map(maps: impl Iterator<Item = ClusterMap>) -> Option<ClusterMap> {
    maps.max_by_key(|m| m.version)
}
