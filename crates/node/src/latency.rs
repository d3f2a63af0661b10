//! The round-trip matrix as one node sees it: for every peer, an EWMA and a p99 of recent
//! probe round trips, and when it last answered. Filled by the prober (`probe.rs`), read by
//! routing (nearest replica), the placement driver (liveness) and the cluster view.
//!
//! Beside its own row the table keeps every peer's row as that peer last reported it (a ping
//! answer carries the responder's row), so each node knows the whole matrix one hop away.

use meridian_types::NodeId;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
// tokio's clock, so a simulation's virtual time drives liveness.
use tokio::time::Instant;

/// Round trips kept per peer for the p99.
pub const RTT_SAMPLES_KEPT: usize = 128;
/// Recent round trips whose smallest is a link's own delay ([`LatencyTable::min_rtt`]): a link
/// that got slower shows within this many probes.
pub const RTT_MIN_OF_LAST: usize = 16;
/// Weight of a new sample in the EWMA.
pub const RTT_EWMA_ALPHA: f64 = 0.2;

/// One peer's round trips.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RttStats {
    pub ewma: Duration,
    pub p99: Duration,
    pub samples: usize,
}

#[derive(Debug, Default)]
struct PeerLatency {
    ewma_us: f64,
    recent_us: VecDeque<u64>,
    last_ok: Option<Instant>,
    failures_in_row: u32,
}

/// One node's row of the matrix: its round trips to each of its peers.
pub type LatencyRow = Vec<(NodeId, RttStats)>;

/// Round trips to every peer. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct LatencyTable {
    peers: RwLock<BTreeMap<NodeId, PeerLatency>>,
    /// Other nodes' rows as they reported them, with when they arrived.
    rows: RwLock<BTreeMap<NodeId, (Instant, LatencyRow)>>,
}

impl LatencyTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// A probe of `peer` came back after `rtt`.
    pub fn record(&self, peer: NodeId, rtt: Duration) {
        let us = rtt.as_micros().min(u64::MAX as u128) as u64;
        let mut peers = self.peers.write();
        let p = peers.entry(peer).or_default();
        p.ewma_us = if p.recent_us.is_empty() {
            us as f64
        } else {
            RTT_EWMA_ALPHA * us as f64 + (1.0 - RTT_EWMA_ALPHA) * p.ewma_us
        };
        if p.recent_us.len() == RTT_SAMPLES_KEPT {
            p.recent_us.pop_front();
        }
        p.recent_us.push_back(us);
        p.last_ok = Some(Instant::now());
        p.failures_in_row = 0;
    }

    /// A probe of `peer` failed or timed out.
    pub fn record_failure(&self, peer: NodeId) {
        self.peers.write().entry(peer).or_default().failures_in_row += 1;
    }

    /// Round-trip figures of `peer`, if it ever answered.
    pub fn rtt(&self, peer: NodeId) -> Option<RttStats> {
        let peers = self.peers.read();
        let p = peers.get(&peer)?;
        if p.recent_us.is_empty() {
            return None;
        }
        let mut v: Vec<u64> = p.recent_us.iter().copied().collect();
        v.sort_unstable();
        let idx = ((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1;
        Some(RttStats {
            ewma: Duration::from_micros(p.ewma_us as u64),
            p99: Duration::from_micros(v[idx]),
            samples: v.len(),
        })
    }

    /// The smallest of `peer`'s last [`RTT_MIN_OF_LAST`] round trips: the link's own delay,
    /// without the queueing a busy node adds to most probes.
    pub fn min_rtt(&self, peer: NodeId) -> Option<Duration> {
        let peers = self.peers.read();
        let recent = &peers.get(&peer)?.recent_us;
        let skip = recent.len().saturating_sub(RTT_MIN_OF_LAST);
        let us = recent.iter().skip(skip).min().copied()?;
        Some(Duration::from_micros(us))
    }

    /// When `peer` last answered a probe.
    pub fn last_ok(&self, peer: NodeId) -> Option<Instant> {
        self.peers.read().get(&peer).and_then(|p| p.last_ok)
    }

    /// Whether `peer` answered a probe within `within`.
    pub fn is_live(&self, peer: NodeId, within: Duration) -> bool {
        self.last_ok(peer).is_some_and(|t| t.elapsed() <= within)
    }

    /// Every peer with figures, in id order.
    pub fn all(&self) -> Vec<(NodeId, RttStats)> {
        let ids: Vec<NodeId> = self.peers.read().keys().copied().collect();
        ids.into_iter()
            .filter_map(|id| self.rtt(id).map(|s| (id, s)))
            .collect()
    }

    /// Keeps `row` as `from`'s own row of the matrix (replacing the one it sent before).
    pub fn set_row(&self, from: NodeId, row: LatencyRow) {
        self.rows.write().insert(from, (Instant::now(), row));
    }

    /// Every other node's row with its age, in id order.
    pub fn rows(&self) -> Vec<(NodeId, Duration, LatencyRow)> {
        self.rows
            .read()
            .iter()
            .map(|(id, (at, row))| (*id, at.elapsed(), row.clone()))
            .collect()
    }

    /// Forgets every node `keep` rejects (it left the cluster map).
    pub fn retain(&self, keep: impl Fn(NodeId) -> bool) {
        self.peers.write().retain(|id, _| keep(*id));
        self.rows.write().retain(|id, _| keep(*id));
    }

    /// Consecutive failed probes of `peer` since it last answered.
    pub fn failures_in_row(&self, peer: NodeId) -> u32 {
        self.peers
            .read()
            .get(&peer)
            .map_or(0, |p| p.failures_in_row)
    }

    /// Orders `candidates` nearest first: `me` (zero), then peers by EWMA, then peers never
    /// measured (in id order).
    pub fn nearest_first(&self, me: NodeId, candidates: &[NodeId]) -> Vec<NodeId> {
        let mut v: Vec<(u8, Duration, NodeId)> = candidates
            .iter()
            .map(|&n| {
                if n == me {
                    (0, Duration::ZERO, n)
                } else {
                    match self.rtt(n) {
                        Some(s) => (1, s.ewma, n),
                        None => (2, Duration::ZERO, n),
                    }
                }
            })
            .collect();
        v.sort();
        v.dedup_by_key(|e| e.2);
        v.into_iter().map(|e| e.2).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ewma_p99_and_order() {
        let t = LatencyTable::new();
        for ms in 1..=100u64 {
            t.record(NodeId(2), Duration::from_millis(ms));
        }
        t.record(NodeId(3), Duration::from_millis(5));
        let s = t.rtt(NodeId(2)).unwrap();
        assert_eq!(s.samples, 100);
        assert_eq!(s.p99, Duration::from_millis(99));
        // The smallest of the last 16 (85..=100 ms), not of all kept.
        assert_eq!(t.min_rtt(NodeId(2)), Some(Duration::from_millis(85)));
        assert_eq!(t.min_rtt(NodeId(4)), None);
        assert!(s.ewma > Duration::from_millis(80) && s.ewma < Duration::from_millis(100));
        assert_eq!(
            t.nearest_first(NodeId(1), &[NodeId(4), NodeId(2), NodeId(3), NodeId(1)]),
            vec![NodeId(1), NodeId(3), NodeId(2), NodeId(4)]
        );
        assert!(t.is_live(NodeId(3), Duration::from_secs(1)));
        assert!(!t.is_live(NodeId(4), Duration::from_secs(1)));
        t.record_failure(NodeId(4));
        assert!(t.rtt(NodeId(4)).is_none());
        assert_eq!(t.failures_in_row(NodeId(4)), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_peer_rows_with_their_age() {
        let t = LatencyTable::new();
        let s = RttStats {
            ewma: Duration::from_millis(75),
            p99: Duration::from_millis(80),
            samples: 3,
        };
        t.set_row(NodeId(2), vec![(NodeId(3), s)]);
        tokio::time::advance(Duration::from_secs(2)).await;
        let rows = t.rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, NodeId(2));
        assert!(rows[0].1 >= Duration::from_secs(2));
        assert_eq!(rows[0].2, vec![(NodeId(3), s)]);
        t.record(NodeId(2), Duration::from_millis(1));
        t.retain(|n| n != NodeId(2));
        assert!(t.rows().is_empty() && t.all().is_empty());
    }
}
