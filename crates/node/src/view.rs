//! Read-only views of the cluster, shaped for `GET /v1/cluster`, `meridian cluster status` and
//! etcd's `MemberList` / `Status`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterView {
    pub cluster_id: u64,
    /// The node that answered.
    pub node_id: u64,
    pub nodes: Vec<NodeView>,
    pub ranges: Vec<RangeView>,
    /// Placement rules, the implicit default first when none is stored for the empty prefix.
    #[serde(default)]
    pub placements: Vec<crate::placement::PlacementView>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeView {
    pub id: u64,
    pub addr: String,
    pub region: String,
    pub zone: String,
    /// `active`, `joining`, `draining` or `removed`.
    pub state: String,
    /// Whether the answering node reached it recently.
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
