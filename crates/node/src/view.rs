//! Read-only views of the cluster, shaped for `GET /v1/cluster`, `meridian cluster status` and
//! etcd's `MemberList` / `Status`.

use crate::latency::RttStats;
use meridian_types::NodeId;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterView {
    pub cluster_id: u64,
    /// The node that answered.
    pub node_id: u64,
    pub nodes: Vec<NodeView>,
    pub ranges: Vec<RangeView>,
    /// The round-trip matrix as the answering node knows it: its own probes, and every other
    /// node's row as that node last reported it.
    #[serde(default)]
    pub latency: Vec<LatencyView>,
    /// Placement rules, the implicit default first when none is stored for the empty prefix.
    #[serde(default)]
    pub placements: Vec<crate::placement::PlacementView>,
    /// Steps the placement driver is taking, per range (empty when every range meets its rule).
    #[serde(default)]
    pub placement: Vec<crate::placement_driver::PlacementStep>,
}

/// One cell of the round-trip matrix: probes from `from` to `to`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyView {
    pub from: u64,
    pub to: u64,
    /// Moving average of the round trip.
    pub ewma_ms: f64,
    /// 99th percentile of the recent round trips.
    pub p99_ms: f64,
    /// Round trips the figures are made of.
    pub samples: usize,
    /// How old the row is: 0 for the answering node's own, else since `from` reported it.
    #[serde(default)]
    pub age_ms: u64,
}

impl LatencyView {
    pub fn new(from: NodeId, to: NodeId, s: &RttStats, age: Duration) -> Self {
        Self {
            from: from.0,
            to: to.0,
            ewma_ms: s.ewma.as_secs_f64() * 1e3,
            p99_ms: s.p99.as_secs_f64() * 1e3,
            samples: s.samples,
            age_ms: age.as_millis().min(u64::MAX as u128) as u64,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeView {
    pub id: u64,
    pub addr: String,
    pub region: String,
    pub zone: String,
    /// `active`, `joining`, `draining` or `removed`.
    pub state: String,
    /// Whether the answering node reached it recently: itself, a peer that answered a probe
    /// within `PEER_LIVE_WITHIN`, or one that answered the status call behind this view.
    pub healthy: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RangeView {
    /// Range id; 0 is the meta group.
    pub id: u64,
    /// Start key (inclusive), lossy UTF-8 for display.
    pub start: String,
    /// End key (exclusive); empty means the end of the key space.
    pub end: String,
    pub replicas: Vec<u64>,
    pub leader: Option<u64>,
    pub term: u64,
    /// Highest log index applied on the answering node (if it hosts a replica).
    pub applied_index: Option<u64>,
    /// Latest revision applied on the answering node (if it hosts a replica).
    pub revision: Option<u64>,
    pub version: u64,
    /// Prefix of the placement rule governing the range (empty: the default); `None` for the
    /// meta group, which no rule governs.
    #[serde(default)]
    pub rule: Option<String>,
    /// Nodes being added to the range, not voting yet.
    #[serde(default)]
    pub learners: Vec<u64>,
    /// Region of the leader, if it is known.
    #[serde(default)]
    pub leader_region: Option<String>,
    /// For a system range (outside the key space): what it holds, e.g. `stream orders/0`.
    #[serde(default)]
    pub system: Option<String>,
}

/// One node's own status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub cluster_id: u64,
    pub node_id: u64,
    pub version: String,
    /// Bytes on disk of the data directory.
    pub db_size_bytes: u64,
    /// Leader of the meta group, as etcd reports "the" leader.
    pub leader: Option<u64>,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    /// Highest revision over the ranges this node hosts.
    pub revision: u64,
}

/// What a draining node still holds (`POST /v1/cluster/nodes/{id}/drain`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStatus {
    pub node: u64,
    /// `active`, `joining`, `draining` or `removed`.
    pub state: String,
    /// Ranges with a replica (voter or learner) on the node.
    pub replicas: u64,
    /// Groups the node leads (0 when it does not answer).
    pub leaders: u64,
    /// Whether it still votes in the meta group.
    pub meta_voter: bool,
    /// Nothing left: `remove` will succeed.
    pub done: bool,
}
