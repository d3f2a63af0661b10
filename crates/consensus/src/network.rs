//! Raft messages of every group over the node's one transport: each message is an envelope
//! naming its group, encoded with postcard.

use crate::freshness::{Echo, LeaderEchoes, LeaderSnapshot, Proof};
use crate::pipeline::{AppendSeq, GroupNet};
use crate::typ::{Snapshot, TypeConfig, Vote};
use meridian_transport::{Envelope, Transport, TransportError};
use meridian_types::{ClusterId, GroupId, NodeId};
use openraft::OptionalSend;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft_multi::{GroupNetworkFactory, GroupRouter};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Reads one consistent snapshot of a group's leader metrics.
pub(crate) type SnapshotFn = Box<dyn Fn() -> LeaderSnapshot + Send + Sync>;

pub(crate) const M_APPEND: &str = "raft.append";
pub(crate) const M_VOTE: &str = "raft.vote";
pub(crate) const M_PRE_VOTE: &str = "raft.pre_vote";
pub(crate) const M_SNAPSHOT: &str = "raft.snapshot";
pub(crate) const M_TRANSFER_LEADER: &str = "raft.transfer_leader";

/// How long a snapshot transfer may take.
pub const SNAPSHOT_SEND_TIMEOUT: Duration = Duration::from_secs(120);

/// Sends the Raft messages of every group of this node. Cheap to clone.
#[derive(Clone)]
pub struct RaftRouter {
    me: NodeId,
    cluster_id: Arc<AtomicU64>,
    transport: Arc<dyn Transport>,
    /// Each open group's metrics, for the freshness proofs attached to AppendEntries.
    snapshots: Arc<parking_lot::RwLock<HashMap<GroupId, SnapshotFn>>>,
    echoes: Arc<LeaderEchoes<GroupId>>,
}

impl RaftRouter {
    pub fn new(me: NodeId, cluster_id: Arc<AtomicU64>, transport: Arc<dyn Transport>) -> Self {
        Self {
            me,
            cluster_id,
            transport,
            snapshots: Arc::default(),
            echoes: Arc::default(),
        }
    }

    pub(crate) fn register(&self, group: GroupId, snapshot: SnapshotFn) {
        self.snapshots.write().insert(group, snapshot);
    }

    pub(crate) fn unregister(&self, group: GroupId) {
        self.snapshots.write().remove(&group);
        self.echoes.forget_group(group);
    }

    fn proof_for(&self, group: GroupId, target: u64) -> Option<Proof> {
        let snap = (self.snapshots.read().get(&group)?)();
        self.echoes.proof(group, target, &snap)
    }

    async fn send<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: u64,
        group: GroupId,
        method: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let payload =
            postcard::to_allocvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let env = Envelope {
            cluster_id: ClusterId(self.cluster_id.load(Ordering::Relaxed)),
            from: self.me,
            to: NodeId(target),
            group,
            method: method.to_string(),
            payload,
            timeout,
        };
        let bytes = self.transport.call(env).await.map_err(|e| match e {
            TransportError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            _ => RPCError::Network(NetworkError::new(&e)),
        })?;
        let reply: Result<Resp, String> =
            postcard::from_bytes(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        reply.map_err(|msg| RPCError::Network(NetworkError::from_string(msg)))
    }
}

impl RaftRouter {
    /// Sends one AppendEntries, with its place in a pipelined stream if it belongs to one.
    pub(crate) async fn append_entries_seq(
        &self,
        target: u64,
        group_id: GroupId,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
        seq: Option<AppendSeq>,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let proof = self.proof_for(group_id, target);
        let (resp, echo): (AppendEntriesResponse<TypeConfig>, Echo) = self
            .send(target, group_id, M_APPEND, &(rpc, proof, seq), ttl(&option))
            .await?;
        self.echoes
            .record(group_id, target, tokio::time::Instant::now(), echo);
        Ok(resp)
    }
}

/// Shortest time a Raft RPC may take before it counts as failed. openraft derives its deadline
/// from the heartbeat interval (100 ms by default), so on a link with a longer round trip every
/// append and heartbeat timed out and replication all but stopped (found by the real-network
/// test: 0.5 ok/s on a 60±60 ms link). Elections still follow the election timeout.
pub const RPC_TTL_MIN: Duration = Duration::from_secs(1);

fn ttl(option: &RPCOption) -> Duration {
    option.hard_ttl().max(RPC_TTL_MIN)
}

impl GroupRouter<TypeConfig, GroupId> for RaftRouter {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &self,
        target: u64,
        group_id: GroupId,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.append_entries_seq(target, group_id, rpc, option, None)
            .await
    }

    async fn vote(
        &self,
        target: u64,
        group_id: GroupId,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.send(target, group_id, M_VOTE, &rpc, ttl(&option))
            .await
    }

    async fn pre_vote(
        &self,
        target: u64,
        group_id: GroupId,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.send(target, group_id, M_PRE_VOTE, &rpc, ttl(&option))
            .await
    }

    async fn full_snapshot(
        &self,
        target: u64,
        group_id: GroupId,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = (vote, snapshot.meta, snapshot.snapshot);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = self.send(target, group_id, M_SNAPSHOT, &req, SNAPSHOT_SEND_TIMEOUT) => r.map_err(StreamingError::from),
        }
    }

    async fn transfer_leader(
        &self,
        target: u64,
        group_id: GroupId,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        // The chosen node starts an election once it holds the leader's log; the others drop
        // the leader's lease so they vote for it.
        self.send(target, group_id, M_TRANSFER_LEADER, &req, ttl(&option))
            .await
    }
}

/// Builds per-target network clients for one group.
pub(crate) type GroupNetFactory = GroupNetworkFactory<RaftRouter, GroupId>;

/// Wrapper so the factory trait can be implemented here.
pub(crate) struct NetFactory(pub(crate) GroupNetFactory);

impl RaftNetworkFactory<TypeConfig> for NetFactory {
    type Network = GroupNet;

    async fn new_client(&mut self, target: u64, _node: &openraft::BasicNode) -> Self::Network {
        GroupNet {
            router: self.0.factory.clone(),
            target,
            group: self.0.group_id,
        }
    }
}
