//! Where the ranges of keys live, from a [`ClusterView`]: each range's leader and replicas
//! with their nodes' addresses and regions. Lets a client send a write or a linearizable read
//! straight to the leader and a bounded or local read to the nearest replica, saving the
//! forwarding hop. Only a hint: any node accepts any request and forwards it, so a stale
//! topology costs latency, never correctness.

use meridian_node::ClusterView;
use std::collections::HashMap;
use std::time::Duration;

/// The meta group's range id; it holds the cluster map, not user keys.
const META_RANGE_ID: u64 = 0;

/// One user range: its bounds, its leader's and its replicas' addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeRoute {
    pub id: u64,
    pub start: Vec<u8>,
    /// Exclusive; empty means the end of the key space.
    pub end: Vec<u8>,
    pub leader_addr: Option<String>,
    /// Addresses of the nodes holding a replica (the leader's among them).
    pub replica_addrs: Vec<String>,
}

impl RangeRoute {
    fn contains(&self, key: &[u8]) -> bool {
        self.start.as_slice() <= key && (self.end.is_empty() || key < self.end.as_slice())
    }
}

/// Key → range → addresses, built from one cluster view. Range bounds come from the view's
/// display strings, so ranges split at keys that are not UTF-8 may map a few keys wrongly
/// (which only costs a forwarding hop).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// Sorted by start key.
    ranges: Vec<RangeRoute>,
    /// Node address → region.
    regions: HashMap<String, String>,
}

impl Topology {
    pub fn from_view(view: &ClusterView) -> Self {
        let addr_of: HashMap<u64, &str> =
            view.nodes.iter().map(|n| (n.id, n.addr.as_str())).collect();
        let mut ranges: Vec<RangeRoute> = view
            .ranges
            .iter()
            // System ranges (stream partitions, queues) hold no keys.
            .filter(|r| r.id != META_RANGE_ID && r.system.is_none())
            .map(|r| RangeRoute {
                id: r.id,
                start: r.start.as_bytes().to_vec(),
                end: r.end.as_bytes().to_vec(),
                leader_addr: r
                    .leader
                    .and_then(|id| addr_of.get(&id))
                    .map(|a| (*a).to_owned()),
                replica_addrs: r
                    .replicas
                    .iter()
                    .filter_map(|id| addr_of.get(id))
                    .map(|a| (*a).to_owned())
                    .collect(),
            })
            .collect();
        ranges.sort_by(|a, b| a.start.cmp(&b.start));
        let regions = view
            .nodes
            .iter()
            .map(|n| (n.addr.clone(), n.region.clone()))
            .collect();
        Self { ranges, regions }
    }

    /// The range holding `key`, if known.
    pub fn range_of(&self, key: &[u8]) -> Option<&RangeRoute> {
        // The last range starting at or before the key.
        let idx = self
            .ranges
            .partition_point(|r| r.start.as_slice() <= key)
            .checked_sub(1)?;
        let range = &self.ranges[idx];
        range.contains(key).then_some(range)
    }

    /// The one range holding every key of etcd's `[key, range_end)` (`range_end` empty: just
    /// `key`), or `None` when it spans several or is unknown.
    pub fn single_range(&self, key: &[u8], range_end: &[u8]) -> Option<&RangeRoute> {
        let r = self.range_of(key)?;
        let fits = range_end.is_empty()
            || (range_end != [0] && !r.end.is_empty() && range_end <= r.end.as_slice())
            || r.end.is_empty();
        fits.then_some(r)
    }

    /// The address of the node leading the range of `key`, if known.
    pub fn leader_addr(&self, key: &[u8]) -> Option<&str> {
        self.range_of(key)?.leader_addr.as_deref()
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

    /// Every node address the view named, sorted.
    pub fn node_addrs(&self) -> Vec<&str> {
        let mut addrs: Vec<&str> = self.regions.keys().map(String::as_str).collect();
        addrs.sort_unstable();
        addrs
    }

    /// The region of the node at `addr`, if known.
    pub fn region_of(&self, addr: &str) -> Option<&str> {
        self.regions.get(addr).map(String::as_str)
    }

    /// The ranges, sorted by start key.
    pub fn ranges(&self) -> &[RangeRoute] {
        &self.ranges
    }
}

/// The nodes to send a call on `route`'s range to, best first. A call only the leader can serve
/// (`follower_ok` false: writes, linearizable and lease reads) goes to the leader; a read any
/// replica may serve goes to the replicas by measured round trip (`rtt`, unmeasured last, then
/// by address), the leader among them, so the nearest one answers and the others are the
/// failover order. Pure, for tests.
pub fn order_targets(
    route: &RangeRoute,
    follower_ok: bool,
    rtt: impl Fn(&str) -> Option<Duration>,
) -> Vec<&str> {
    if !follower_ok {
        return route.leader_addr.as_deref().into_iter().collect();
    }
    let mut v: Vec<(bool, Duration, &str)> = route
        .replica_addrs
        .iter()
        .map(|a| match rtt(a) {
            Some(d) => (false, d, a.as_str()),
            None => (true, Duration::ZERO, a.as_str()),
        })
        .collect();
    v.sort();
    let mut out: Vec<&str> = v.into_iter().map(|(_, _, a)| a).collect();
    out.dedup();
    if let Some(l) = route.leader_addr.as_deref()
        && !out.contains(&l)
    {
        out.push(l);
    }
    out
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
            rule: None,
            learners: vec![],
            leader_region: None,
            system: None,
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
            latency: Vec::new(),
            placements: vec![],
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

    #[test]
    fn single_range_only_when_the_interval_fits() {
        let t = Topology::from_view(&view());
        assert_eq!(t.single_range(b"a", b"").map(|r| r.id), Some(1));
        assert_eq!(t.single_range(b"a", b"b").map(|r| r.id), Some(1));
        assert_eq!(t.single_range(b"a", b"m").map(|r| r.id), Some(1));
        assert_eq!(t.single_range(b"a", b"n").map(|r| r.id), None);
        assert_eq!(t.single_range(b"a", b"\0").map(|r| r.id), None);
        assert_eq!(t.single_range(b"m", b"\0").map(|r| r.id), Some(2));
        assert_eq!(t.region_of("127.0.0.1:4002"), Some("r"));
    }

    #[test]
    fn leader_only_calls_go_to_the_leader() {
        let t = Topology::from_view(&view());
        let r = t.range_of(b"a").unwrap();
        assert_eq!(order_targets(r, false, |_| None), ["127.0.0.1:4001"]);
        let mut none = r.clone();
        none.leader_addr = None;
        assert!(order_targets(&none, false, |_| None).is_empty());
    }

    #[test]
    fn follower_reads_go_nearest_first_unmeasured_last() {
        let t = Topology::from_view(&view());
        let r = t.range_of(b"a").unwrap();
        let rtt = |a: &str| match a {
            "127.0.0.1:4003" => Some(Duration::from_millis(2)),
            "127.0.0.1:4001" => Some(Duration::from_millis(80)),
            _ => None,
        };
        assert_eq!(
            order_targets(r, true, rtt),
            ["127.0.0.1:4003", "127.0.0.1:4001", "127.0.0.1:4002"]
        );
        // Nothing measured yet: every replica, in address order.
        assert_eq!(
            order_targets(r, true, |_| None),
            ["127.0.0.1:4001", "127.0.0.1:4002", "127.0.0.1:4003"]
        );
        // A leader not listed among the replicas (a stale view) is still tried, last.
        let mut odd = r.clone();
        odd.replica_addrs.retain(|a| a != "127.0.0.1:4001");
        assert_eq!(
            order_targets(&odd, true, |_| None).last(),
            Some(&"127.0.0.1:4001")
        );
    }
}
