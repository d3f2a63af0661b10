//! Payloads of node RPC methods (postcard-encoded inside an envelope).

use crate::client_api::Consistency;
use crate::latency::LatencyRow;
use meridian_state::{
    ClusterMap, KvCommand, KvResult, MetaCommand, NodeInfo, RangeRequest, RangeResponse,
    TxnRequest, WatchEvent,
};
use meridian_types::{GroupId, NodeId, RequestId};
use serde::{Deserialize, Serialize};

pub const M_HELLO: &str = "admin.hello";
pub const M_INIT: &str = "admin.init";
pub const M_JOIN: &str = "admin.join";
pub const M_STATUS: &str = "admin.status";
pub const M_FORWARD: &str = "kv.forward";
pub const M_PING: &str = "admin.ping";

/// `admin.ping`, sent by the prober. Carries the sender's row of the round-trip matrix.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PingRequest {
    pub row: LatencyRow,
}

/// The answer to `admin.ping`: the responder's own row, so the prober learns the matrix.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PingReply {
    pub row: LatencyRow,
}

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
        /// A session token: a replica other than the leader serves only at or past it.
        min_revision: u64,
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
    /// A command to a stream partition, stamped by the leader with its clock.
    Stream {
        cmd: meridian_state::stream::StreamCommand,
        request_id: Option<RequestId>,
    },
    /// Reads a stream partition on its leader, waiting up to `wait_ms` while there is nothing
    /// to read.
    StreamRead(crate::stream::PartitionReadRequest),
    /// A partition's offsets, size, committed offsets and groups (from its leader).
    StreamInfo {
        stream: String,
        partition: u32,
    },
    /// The events of `[key, range_end)` after revision `after` from this replica's applied state
    /// (any replica serves it), waiting up to `wait_ms` for one; `after: None` asks for the
    /// replica's current revision only (a watch starting now).
    WatchPoll {
        key: Vec<u8>,
        range_end: Vec<u8>,
        after: Option<u64>,
        prev_kv: bool,
        wait_ms: u64,
    },
    /// A key-value command other than a txn, proposed by the leader (`RevokeLease`).
    KvCmd {
        cmd: KvCommand,
        request_id: RequestId,
    },
    /// A lease operation, on the meta group's leader.
    Lease(crate::lease::LeaseOp),
    /// The keys attached to a lease in this range (its leader serves it).
    LeaseKeys {
        lease: i64,
    },
    /// Moves the range's revision past `to` without a write (`KvCommand::Advance`), so a watch
    /// over several ranges can release events up to `to` in order.
    Advance {
        to: u64,
    },
    /// A work-queue command; the leader stamps its clock on it. A receive with `wait_ms`
    /// waits on the leader up to that long for a message (long poll).
    Queue {
        cmd: meridian_state::QueueCommand,
        wait_ms: u64,
    },
    /// A queue's depth and totals, read on the leader.
    QueueStats {
        queue: String,
    },
    /// A transaction with messages to partitions and queues of the same range.
    Outbox {
        txn: meridian_state::outbox::OutboxTxn,
        request_id: RequestId,
        seen_revision: u64,
    },
    /// A follower's linearizable read asks the leader for its read index: the leader confirms
    /// it still leads (a ReadIndex round) and answers [`GroupReply::ReadIndex`].
    ReadIndex,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum WireConsistency {
    Linearizable,
    Lease,
    Local,
    Bounded { max_staleness_ms: u64 },
}

impl WireConsistency {
    /// Whether a replica other than the leader may serve the read.
    pub fn follower_may_serve(self) -> bool {
        matches!(
            self,
            WireConsistency::Local | WireConsistency::Bounded { .. }
        )
    }
}

impl From<Consistency> for WireConsistency {
    fn from(c: Consistency) -> Self {
        match c {
            Consistency::Linearizable => WireConsistency::Linearizable,
            Consistency::Lease => WireConsistency::Lease,
            Consistency::Local => WireConsistency::Local,
            Consistency::Bounded(d) => WireConsistency::Bounded {
                max_staleness_ms: d.as_millis().try_into().unwrap_or(u64::MAX),
            },
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GroupReply {
    /// A read and the most it may miss in milliseconds (`None`: unknown, a local read).
    Range {
        resp: RangeResponse,
        staleness_ms: Option<u64>,
    },
    Kv(KvResult),
    Done,
    Membership(meridian_consensus::GroupMembership),
    Stream(meridian_state::stream::StreamResult),
    StreamRead(meridian_state::stream::StreamRead),
    StreamInfo(crate::stream::PartitionInfo),
    /// Events for a [`GroupOp::WatchPoll`]: every event up to `cursor` after the asked
    /// revision, and how stale the serving replica may be (`Some(0)` on the leader).
    Events {
        events: Vec<WatchEvent>,
        cursor: u64,
        staleness_ms: Option<u64>,
    },
    /// The revision asked for is compacted away.
    WatchCompacted {
        compact_revision: u64,
    },
    Lease(crate::lease::LeaseReply),
    Keys(Vec<Vec<u8>>),
    Queue(meridian_state::QueueResult),
    Outbox(meridian_state::outbox::OutboxResponse),
    QueueStats(meridian_state::queue::QueueStats),
    /// The leader's read index: a replica that has applied it may serve a linearizable read
    /// that began before it was asked for.
    ReadIndex(u64),
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
