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
    /// Steps the placement driver is taking, per range (empty when every range meets its rule).
    #[serde(default)]
    pub placement: Vec<crate::placement_driver::PlacementStep>,
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
