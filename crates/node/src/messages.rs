//! Payloads of node RPC methods (postcard-encoded inside an envelope).

use crate::client_api::Consistency;
use meridian_state::{
    ClusterMap, KvResult, MetaCommand, NodeInfo, RangeRequest, RangeResponse, TxnRequest,
};
use meridian_types::{GroupId, NodeId, RequestId};
use serde::{Deserialize, Serialize};

pub const M_HELLO: &str = "admin.hello";
pub const M_INIT: &str = "admin.init";
pub const M_JOIN: &str = "admin.join";
pub const M_STATUS: &str = "admin.status";
pub const M_FORWARD: &str = "kv.forward";

/// Who a node is; the answer to `admin.hello`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    pub node_id: NodeId,
    pub addr: String,
    pub region: String,
    pub zone: String,
    /// 0 while the node is not part of a cluster.
    pub cluster_id: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub info: NodeInfo,
    /// The cluster the joiner's data dir belongs to, 0 if none.
    pub cluster_id: u64,
}

/// An operation executed by a group's leader (or any replica for local reads).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GroupOp {
    Range {
        req: RangeRequest,
        consistency: WireConsistency,
    },
    Txn {
        req: TxnRequest,
        request_id: RequestId,
        seen_revision: u64,
    },
    Compact {
        revision: u64,
        request_id: RequestId,
    },
    Meta(MetaCommand),
    AddLearner {
        node: NodeId,
        addr: String,
    },
    /// The group's membership as its leader sees it (placement driver).
    Membership,
    /// Makes `voters` the group's voters; every new voter must be a learner, and is given a
    /// moment to catch up first (`unavailable` while it is still behind).
    ChangeVoters {
        voters: Vec<NodeId>,
    },
    /// Drops learners from the group (a move given up).
    RemoveLearners {
        nodes: Vec<NodeId>,
    },
    /// Hands leadership to voter `to`.
    TransferLeader {
        to: NodeId,
    },
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum WireConsistency {
    Linearizable,
    Lease,
    Local,
}

impl From<Consistency> for WireConsistency {
    fn from(c: Consistency) -> Self {
        match c {
            Consistency::Linearizable => WireConsistency::Linearizable,
            Consistency::Lease => WireConsistency::Lease,
            Consistency::Local => WireConsistency::Local,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GroupReply {
    Range(RangeResponse),
    Kv(KvResult),
    Done,
    Membership(meridian_consensus::GroupMembership),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForwardRequest {
    pub group: GroupId,
    pub op: GroupOp,
}

/// One group as one node sees it (for `admin.status`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupReport {
    pub group: GroupId,
    pub role: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub revision: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: NodeId,
    pub cluster_id: u64,
    pub groups: Vec<GroupReport>,
    pub map: Option<ClusterMap>,
    pub disk_bytes: u64,
    /// Steps the placement driver is taking (empty unless this node leads the meta group).
    pub placement: Vec<crate::placement_driver::PlacementStep>,
}
