//! What a client learns about the cluster while it runs: the topology (refreshed periodically
//! and after failures), its own round trip to each node, and its session tokens.
//!
//! Session tokens give read-your-writes on follower reads. Revisions are per range (a range's
//! hybrid-logical-clock revisions strictly increase with each write), so the client keeps, per
//! range, the highest revision it has seen from that range — its own writes and its reads — and
//! sends it as `min_revision` with every bounded or local read of that range: a replica that has
//! not reached it answers `too_stale` and the read goes to the leader. Revisions the client
//! cannot attribute to a range (seen before it knew the topology, or from a range that has split
//! or merged since) count for every range, which is safe: they can only send more reads to the
//! leader.

use crate::topology::{RangeRoute, Topology};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a topology is used before it is fetched again.
pub const TOPOLOGY_REFRESH: Duration = Duration::from_secs(10);

/// Weight of a new round-trip sample in the moving average.
const RTT_EWMA_ALPHA: f64 = 0.3;

/// Per-range highest revisions seen. Pure; see the module doc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionTokens {
    by_range: HashMap<u64, u64>,
    /// Highest revision not attributed to a range still known.
    unattributed: u64,
    max: u64,
}

impl SessionTokens {
    /// Records a revision seen from `range` (`None`: the range is not known).
    pub fn observe(&mut self, range: Option<u64>, revision: u64) {
        self.max = self.max.max(revision);
        match range {
            Some(r) => {
                let e = self.by_range.entry(r).or_default();
                *e = (*e).max(revision);
            }
            None => self.unattributed = self.unattributed.max(revision),
        }
    }

    /// The `min_revision` to send with a follower read of `range`.
    pub fn token(&self, range: Option<u64>) -> u64 {
        match range {
            Some(r) => self
                .by_range
                .get(&r)
                .copied()
                .unwrap_or(0)
                .max(self.unattributed),
            None => self.max,
        }
    }

    /// Forgets the entries of ranges whose bounds changed or that are gone from `new`, so their
    /// keys fall back to the highest revision seen anywhere.
    pub fn retain_unchanged(&mut self, old: &Topology, new: &Topology) {
        let bounds = |t: &Topology| -> HashMap<u64, (Vec<u8>, Vec<u8>)> {
            t.ranges()
                .iter()
                .map(|r| (r.id, (r.start.clone(), r.end.clone())))
                .collect()
        };
        let (old_b, new_b) = (bounds(old), bounds(new));
        let mut dropped = 0;
        self.by_range.retain(|id, rev| {
            let keep = old_b.get(id).is_some_and(|b| new_b.get(id) == Some(b));
            if !keep {
                dropped = dropped.max(*rev);
            }
            keep
        });
        self.unattributed = self.unattributed.max(dropped);
    }
}

/// The client's mutable view of the cluster.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    pub topology: Option<Arc<Topology>>,
    pub fetched_at: Option<Instant>,
    /// Set after a failure: refresh before the period is up.
    pub dirty: bool,
    pub tokens: SessionTokens,
    /// Node address → moving average of this client's round trip to it.
    pub rtt: HashMap<String, Duration>,
}

impl Routing {
    pub fn needs_refresh(&self, now: Instant) -> bool {
        self.dirty
            || self
                .fetched_at
                .is_none_or(|t| now.saturating_duration_since(t) >= TOPOLOGY_REFRESH)
    }

    pub fn set_topology(&mut self, t: Topology, now: Instant) {
        if let Some(old) = &self.topology {
            self.tokens.retain_unchanged(old, &t);
        }
        self.topology = Some(Arc::new(t));
        self.fetched_at = Some(now);
        self.dirty = false;
    }

    pub fn record_rtt(&mut self, addr: &str, sample: Duration) {
        let v = match self.rtt.get(addr) {
            Some(old) => old.mul_f64(1.0 - RTT_EWMA_ALPHA) + sample.mul_f64(RTT_EWMA_ALPHA),
            None => sample,
        };
        self.rtt.insert(addr.to_owned(), v);
    }

    /// The range of `[key, range_end)` if it lies in one known range.
    pub fn range(&self, key: &[u8], range_end: &[u8]) -> Option<RangeRoute> {
        self.topology
            .as_ref()?
            .single_range(key, range_end)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_node::{ClusterView, NodeView, RangeView};

    fn view(split: &str) -> Topology {
        let node = |id: u64| NodeView {
            id,
            addr: format!("n{id}:1"),
            region: "r".into(),
            zone: "z".into(),
            state: "active".into(),
            healthy: true,
        };
        let range = |id: u64, start: &str, end: &str| RangeView {
            id,
            start: start.into(),
            end: end.into(),
            replicas: vec![1, 2],
            leader: Some(1),
            term: 1,
            applied_index: None,
            revision: None,
            version: 1,
            rule: None,
            learners: vec![],
            leader_region: None,
            system: None,
        };
        Topology::from_view(&ClusterView {
            cluster_id: 1,
            node_id: 1,
            nodes: vec![node(1), node(2)],
            ranges: vec![range(1, "", split), range(2, split, "")],
            latency: vec![],
            placement: vec![],
            placements: vec![],
        })
    }

    #[test]
    fn tokens_are_per_range_and_fall_back_to_the_highest() {
        let mut t = SessionTokens::default();
        assert_eq!(t.token(Some(1)), 0);
        t.observe(Some(1), 10);
        t.observe(Some(2), 50);
        t.observe(Some(1), 7);
        assert_eq!(t.token(Some(1)), 10);
        assert_eq!(t.token(Some(2)), 50);
        assert_eq!(t.token(Some(3)), 0, "nothing seen from range 3");
        assert_eq!(
            t.token(None),
            50,
            "a read of unknown ranges needs everything seen"
        );
        t.observe(None, 60);
        assert_eq!(
            t.token(Some(1)),
            60,
            "a revision of an unknown range counts everywhere"
        );
        assert_eq!(t.token(None), 60);
    }

    #[test]
    fn a_changed_range_forgets_its_token() {
        let mut t = SessionTokens::default();
        t.observe(Some(1), 10);
        t.observe(Some(2), 20);
        t.retain_unchanged(&view("m"), &view("m"));
        assert_eq!(t.token(Some(1)), 10);
        t.retain_unchanged(&view("m"), &view("q"));
        assert_eq!(t.token(Some(1)), 20);
        assert_eq!(t.token(Some(2)), 20);
        assert_eq!(t.token(Some(3)), 20);
    }

    #[test]
    fn refresh_when_dirty_or_old() {
        let now = Instant::now();
        let mut r = Routing::default();
        assert!(r.needs_refresh(now));
        r.set_topology(view("m"), now);
        assert!(!r.needs_refresh(now));
        assert!(r.needs_refresh(now + TOPOLOGY_REFRESH));
        r.dirty = true;
        assert!(r.needs_refresh(now));
        r.record_rtt("n1:1", Duration::from_millis(10));
        r.record_rtt("n1:1", Duration::from_millis(20));
        let v = r.rtt["n1:1"];
        assert!(v > Duration::from_millis(10) && v < Duration::from_millis(20));
        assert_eq!(r.range(b"a", b"").map(|x| x.id), Some(1));
        assert_eq!(r.range(b"a", b"\0").map(|x| x.id), None);
    }
}
