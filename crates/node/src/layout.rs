//! The first cluster map, chosen by `cluster init`: which nodes vote in the meta group, how the
//! key space is pre-split, and which nodes replicate each range (spread over regions first).

use crate::messages::Hello;
use meridian_state::{ClusterMap, NodeInfo, NodeState, RangeInfo};
use meridian_types::{ClusterId, MeridianError, NodeId, RangeId};
use std::collections::BTreeMap;

/// Voters of the meta group at most; further nodes follow it as learners.
pub const META_VOTERS_MAX: usize = 5;
/// Voters of a range group.
pub const RANGE_REPLICAS: usize = 3;
/// Most ranges `cluster init` pre-splits into.
pub const INIT_RANGES_MAX: u32 = 256;

/// Orders nodes so that consecutive picks alternate regions: r1a, r2a, r3a, r1b, ...
fn region_interleaved(nodes: &[Hello]) -> Vec<NodeId> {
    let mut by_region: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
    let mut sorted: Vec<&Hello> = nodes.iter().collect();
    sorted.sort_by_key(|h| h.node_id);
    for h in sorted {
        by_region
            .entry(h.region.as_str())
            .or_default()
            .push(h.node_id);
    }
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < nodes.len() {
        for ids in by_region.values() {
            if let Some(id) = ids.get(i) {
                out.push(*id);
            }
        }
        i += 1;
    }
    out
}

/// Split points for `n` ranges over printable ASCII (where most keys begin); range `i` starts at
/// split `i-1`. A single range covers everything.
pub fn split_points(n: u32) -> Vec<Vec<u8>> {
    let (lo, hi) = (0x21u32, 0x7fu32);
    (1..n)
        .map(|i| vec![(lo + i * (hi - lo) / n) as u8])
        .collect()
}

/// Checks split keys chosen by hand (`cluster init --split-at`): non-empty, no longer than a key
/// may be, sorted, distinct, and at most `INIT_RANGES_MAX - 1` of them.
pub fn check_split_keys(keys: &[Vec<u8>]) -> Result<(), MeridianError> {
    if keys.len() >= INIT_RANGES_MAX as usize {
        return Err(MeridianError::invalid(format!(
            "--split-at gives {} keys, so {} ranges; at most {INIT_RANGES_MAX} ranges",
            keys.len(),
            keys.len() + 1
        )));
    }
    let key_max = meridian_types::Limits::DEFAULT.key_bytes_max;
    for (i, k) in keys.iter().enumerate() {
        let shown = String::from_utf8_lossy(k);
        if k.is_empty() {
            return Err(MeridianError::invalid(
                "--split-at has an empty key; the first range always starts at the empty key",
            ));
        }
        if k.len() > key_max {
            return Err(MeridianError::invalid(format!(
                "split key {shown:?} is longer than {key_max} bytes"
            )));
        }
        if i > 0 && keys[i - 1] >= *k {
            return Err(MeridianError::invalid(format!(
                "--split-at keys must be sorted and distinct: {:?} comes before {shown:?}",
                String::from_utf8_lossy(&keys[i - 1])
            )));
        }
    }
    Ok(())
}

/// Builds the first map for these nodes, with `n_ranges` ranges over printable ASCII.
pub fn initial_map(
    cluster_id: ClusterId,
    nodes: &[Hello],
    n_ranges: u32,
) -> Result<ClusterMap, MeridianError> {
    if n_ranges == 0 || n_ranges > INIT_RANGES_MAX {
        return Err(MeridianError::invalid(format!(
            "--ranges must be between 1 and {INIT_RANGES_MAX}"
        )));
    }
    initial_map_split_at(cluster_id, nodes, &split_points(n_ranges))
}

/// Builds the first map for these nodes with a range boundary at each of `split_keys` (see
/// [`check_split_keys`]): range 1 is `["", k1)`, range 2 `[k1, k2)`, ..., the last `[kn, end)`.
/// A placement rule governs only ranges whose keys all begin with its prefix, and ranges do not
/// split on their own yet, so split at the prefixes (and their ends) that rules will name.
pub fn initial_map_split_at(
    cluster_id: ClusterId,
    nodes: &[Hello],
    split_keys: &[Vec<u8>],
) -> Result<ClusterMap, MeridianError> {
    if nodes.is_empty() {
        return Err(MeridianError::invalid("no nodes to initialise"));
    }
    check_split_keys(split_keys)?;
    let n_ranges = split_keys.len() as u32 + 1;
    let mut seen = BTreeMap::new();
    for h in nodes {
        if let Some(prev) = seen.insert(h.node_id, &h.addr) {
            return Err(MeridianError::invalid(format!(
                "node id {} is used by both {prev} and {}",
                h.node_id, h.addr
            )));
        }
        if h.cluster_id != 0 {
            return Err(MeridianError::new(
                meridian_types::ErrorCode::AlreadyInitialized,
                format!(
                    "node {} at {} already belongs to cluster {:016x}",
                    h.node_id, h.addr, h.cluster_id
                ),
            ));
        }
    }
    let order = region_interleaved(nodes);
    let mut map = ClusterMap {
        cluster_id,
        version: 1,
        ..Default::default()
    };
    for h in nodes {
        map.nodes.insert(
            h.node_id,
            NodeInfo {
                id: h.node_id,
                addr: h.addr.clone(),
                region: h.region.clone(),
                zone: h.zone.clone(),
                state: NodeState::Active,
            },
        );
    }
    map.meta_replicas = order.iter().take(META_VOTERS_MAX).copied().collect();
    map.meta_replicas.sort();
    let splits = split_keys;
    let n_rep = RANGE_REPLICAS.min(order.len());
    for i in 0..n_ranges as usize {
        let start = if i == 0 {
            Vec::new()
        } else {
            splits[i - 1].clone()
        };
        let end = splits.get(i).cloned().unwrap_or_default();
        let rotated: Vec<NodeId> = (0..order.len())
            .map(|k| order[(i + k) % order.len()])
            .collect();
        // Regions first: take nodes of regions not used yet, then fill up.
        let mut replicas: Vec<NodeId> = Vec::new();
        for id in &rotated {
            let region = &map.nodes[id].region;
            if replicas.len() < n_rep && !replicas.iter().any(|r| &map.nodes[r].region == region) {
                replicas.push(*id);
            }
        }
        for id in &rotated {
            if replicas.len() < n_rep && !replicas.contains(id) {
                replicas.push(*id);
            }
        }
        replicas.sort();
        let id = RangeId(i as u64 + 1);
        map.ranges.insert(
            id,
            RangeInfo {
                id,
                start,
                end,
                replicas,
                learners: Vec::new(),
                version: 1,
                system: None,
            },
        );
    }
    map.validate()?;
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: u64, region: &str) -> Hello {
        Hello {
            node_id: NodeId(id),
            addr: format!("h{id}:1"),
            region: region.into(),
            zone: "a".into(),
            cluster_id: 0,
        }
    }

    #[test]
    fn spreads_replicas_over_regions() {
        let nodes: Vec<Hello> = vec![
            hello(1, "us"),
            hello(2, "us"),
            hello(3, "eu"),
            hello(4, "eu"),
            hello(5, "ap"),
        ];
        let map = initial_map(ClusterId(9), &nodes, 4).unwrap();
        assert_eq!(map.ranges.len(), 4);
        assert_eq!(map.meta_replicas.len(), 5);
        for r in map.ranges.values() {
            assert_eq!(r.replicas.len(), 3);
            let regions: std::collections::BTreeSet<&str> = r
                .replicas
                .iter()
                .map(|n| map.nodes[n].region.as_str())
                .collect();
            assert_eq!(regions.len(), 3, "range {} replicas {:?}", r.id, r.replicas);
        }
        // Ranges tile the key space.
        assert_eq!(map.range_for(b"").unwrap().id, RangeId(1));
        assert_eq!(map.range_for(b"\xff\xff").unwrap().id, RangeId(4));
    }

    #[test]
    fn small_clusters_and_bad_input() {
        let map = initial_map(ClusterId(1), &[hello(1, "r")], 1).unwrap();
        assert_eq!(map.ranges[&RangeId(1)].replicas, vec![NodeId(1)]);
        assert!(initial_map(ClusterId(1), &[], 1).is_err());
        assert!(initial_map(ClusterId(1), &[hello(1, "r"), hello(1, "r")], 1).is_err());
        assert!(initial_map(ClusterId(1), &[hello(1, "r")], 0).is_err());
        assert!(initial_map(ClusterId(1), &[hello(1, "r")], INIT_RANGES_MAX + 1).is_err());
        let mut h = hello(1, "r");
        h.cluster_id = 5;
        assert!(initial_map(ClusterId(1), &[h], 1).is_err());
    }

    #[test]
    fn split_at_chosen_keys() {
        let nodes = [hello(1, "us"), hello(2, "eu"), hello(3, "ap")];
        let keys: Vec<Vec<u8>> = vec![b"eu/".to_vec(), b"eu0".to_vec(), b"us/".to_vec()];
        let map = initial_map_split_at(ClusterId(3), &nodes, &keys).unwrap();
        let bounds: Vec<(&[u8], &[u8])> = map
            .ranges
            .values()
            .map(|r| (r.start.as_slice(), r.end.as_slice()))
            .collect();
        assert_eq!(
            bounds,
            vec![
                (&b""[..], &b"eu/"[..]),
                (b"eu/", b"eu0"),
                (b"eu0", b"us/"),
                (b"us/", b""),
            ]
        );
        // No split keys: one range.
        assert_eq!(
            initial_map_split_at(ClusterId(3), &nodes, &[])
                .unwrap()
                .ranges
                .len(),
            1
        );
        let bad: [(&[&[u8]], &str); 4] = [
            (&[b"b", b"a"], "sorted and distinct"),
            (&[b"a", b"a"], "sorted and distinct"),
            (&[b"a", b""], "empty key"),
            (&[&[b'k'; 5000]], "longer than"),
        ];
        for (keys, want) in bad {
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
            let e = initial_map_split_at(ClusterId(3), &nodes, &keys).unwrap_err();
            assert!(e.message.contains(want), "{e}");
        }
        let many: Vec<Vec<u8>> = (0..INIT_RANGES_MAX)
            .map(|i| i.to_be_bytes().to_vec())
            .collect();
        assert!(check_split_keys(&many).is_err());
        assert!(check_split_keys(&many[1..]).is_ok());
    }
}
