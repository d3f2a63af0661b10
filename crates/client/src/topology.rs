//! Which node leads the range of a key, from a [`ClusterView`]: lets a client send a request
//! straight to the leader and save the forwarding hop. Only a hint: any node accepts any
//! request and forwards it, so a stale topology costs latency, never correctness.

use meridian_node::ClusterView;
use std::collections::HashMap;

/// The meta group's range id; it holds the cluster map, not user keys.
const META_RANGE_ID: u64 = 0;

/// One user range and the address of its leader.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RangeLeader {
    start: Vec<u8>,
    /// Exclusive; empty means the end of the key space.
    end: Vec<u8>,
    leader_addr: Option<String>,
}

/// Key → leader address, built from one cluster view. Range bounds come from the view's
/// display strings, so ranges split at keys that are not UTF-8 may map a few keys wrongly
/// (which only costs a forwarding hop).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// Sorted by start key.
    ranges: Vec<RangeLeader>,
}

impl Topology {
    pub fn from_view(view: &ClusterView) -> Self {
        let addr_of: HashMap<u64, &str> =
            view.nodes.iter().map(|n| (n.id, n.addr.as_str())).collect();
        let mut ranges: Vec<RangeLeader> = view
            .ranges
            .iter()
            .filter(|r| r.id != META_RANGE_ID)
            .map(|r| RangeLeader {
                start: r.start.as_bytes().to_vec(),
                end: r.end.as_bytes().to_vec(),
                leader_addr: r
                    .leader
                    .and_then(|id| addr_of.get(&id))
                    .map(|a| (*a).to_owned()),
            })
            .collect();
        ranges.sort_by(|a, b| a.start.cmp(&b.start));
        Self { ranges }
    }

    /// The address of the node leading the range of `key`, if known.
    pub fn leader_addr(&self, key: &[u8]) -> Option<&str> {
        // The last range starting at or before the key.
        let idx = self
            .ranges
            .partition_point(|r| r.start.as_slice() <= key)
            .checked_sub(1)?;
        let range = &self.ranges[idx];
        let inside = range.end.is_empty() || key < range.end.as_slice();
        if inside {
            range.leader_addr.as_deref()
        } else {
            None
        }
    }

    /// Every distinct leader address, sorted.
    pub fn leader_addrs(&self) -> Vec<&str> {
        let mut addrs: Vec<&str> = self
            .ranges
            .iter()
            .filter_map(|r| r.leader_addr.as_deref())
            .collect();
        addrs.sort_unstable();
        addrs.dedup();
        addrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_node::{NodeView, RangeView};

    fn node(id: u64) -> NodeView {
        NodeView {
            id,
            addr: format!("127.0.0.1:{}", 4000 + id),
            region: "r".into(),
            zone: "a".into(),
            state: "active".into(),
            healthy: true,
        }
    }

    fn range(id: u64, start: &str, end: &str, leader: Option<u64>) -> RangeView {
        RangeView {
            id,
            start: start.into(),
            end: end.into(),
            replicas: vec![1, 2, 3],
            leader,
            term: 1,
            applied_index: None,
            revision: None,
            version: 1,
        }
    }

    fn view() -> ClusterView {
        ClusterView {
            cluster_id: 7,
            node_id: 1,
            nodes: vec![node(1), node(2), node(3)],
            ranges: vec![
                range(0, "", "", Some(3)),
                range(2, "m", "", Some(2)),
                range(1, "", "m", Some(1)),
            ],
            placement: vec![],
        }
    }

    #[test]
    fn finds_the_leader_of_each_key() {
        let t = Topology::from_view(&view());
        assert_eq!(t.leader_addr(b"a"), Some("127.0.0.1:4001"));
        assert_eq!(t.leader_addr(b"lzzz"), Some("127.0.0.1:4001"));
        assert_eq!(t.leader_addr(b"m"), Some("127.0.0.1:4002"));
        assert_eq!(t.leader_addr(b"\xff"), Some("127.0.0.1:4002"));
        assert_eq!(t.leader_addrs(), ["127.0.0.1:4001", "127.0.0.1:4002"]);
    }

    #[test]
    fn unknown_leaders_and_gaps_give_none() {
        let mut v = view();
        v.ranges = vec![range(1, "b", "c", None), range(2, "d", "e", Some(9))];
        let t = Topology::from_view(&v);
        assert_eq!(t.leader_addr(b"a"), None);
        assert_eq!(t.leader_addr(b"b"), None);
        assert_eq!(t.leader_addr(b"c"), None);
        assert_eq!(t.leader_addr(b"d"), None, "leader 9 is not a known node");
        assert!(Topology::default().leader_addr(b"x").is_none());
    }
}
