//! The interface every client protocol (HTTP, etcd gRPC) is served through.

use crate::view::{ClusterView, DrainStatus, NodeStatus};
use meridian_state::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    TxnRequest, TxnResponse,
};
use meridian_types::{ErrorCode, MeridianError, RequestId};
use std::future::Future;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// The leader confirms it still leads (ReadIndex), then serves. The default.
    #[default]
    Linearizable,
    /// The leader serves within its lease, without a round of confirmation.
    Lease,
    /// Whatever the nearest replica has (etcd's `serializable`).
    Local,
}

impl Consistency {
    /// Parses the `consistency` query parameter.
    pub fn parse(s: &str) -> Result<Self, MeridianError> {
        match s {
            "linearizable" | "" => Ok(Consistency::Linearizable),
            "lease" => Ok(Consistency::Lease),
            "local" | "serializable" => Ok(Consistency::Local),
            other => Err(MeridianError::invalid(format!(
                "unknown consistency {other:?}; expected linearizable, lease or local"
            ))),
        }
    }
}

/// Options of one write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// A retried write with the same id is applied once.
    pub request_id: Option<RequestId>,
}

/// What a client protocol needs from a node. Any node accepts any request and routes it.
/// Requests are validated against the node's limits here, so every protocol gets the same errors.
pub trait ClientApi: Clone + Send + Sync + 'static {
    /// A read; a range that spans several ranges is merged in key order.
    fn range(
        &self,
        req: RangeRequest,
        consistency: Consistency,
    ) -> impl Future<Output = Result<RangeResponse, MeridianError>> + Send;

    fn put(
        &self,
        req: PutRequest,
        opts: WriteOptions,
    ) -> impl Future<Output = Result<PutResponse, MeridianError>> + Send;

    /// Deletes a key or a key range; a range that spans several ranges is deleted range by
    /// range (each part atomic, the whole not).
    fn delete_range(
        &self,
        req: DeleteRangeRequest,
        opts: WriteOptions,
    ) -> impl Future<Output = Result<DeleteRangeResponse, MeridianError>> + Send;

    /// A transaction; every key it touches must live in one range (`cross_range_txn`).
    fn txn(
        &self,
        req: TxnRequest,
        opts: WriteOptions,
    ) -> impl Future<Output = Result<TxnResponse, MeridianError>> + Send;

    /// Compacts every range below `revision`. Returns the revision compacted at.
    fn compact(&self, revision: u64) -> impl Future<Output = Result<u64, MeridianError>> + Send;

    /// The cluster map as this node knows it, with leaders, terms and health.
    fn cluster_view(&self) -> impl Future<Output = Result<ClusterView, MeridianError>> + Send;

    /// This node's own status (etcd's `Maintenance.Status`).
    fn node_status(&self) -> impl Future<Output = Result<NodeStatus, MeridianError>> + Send;

    /// Whether this node is part of an initialised cluster and can reach the meta leader.
    fn ready(&self) -> impl Future<Output = Result<(), MeridianError>> + Send;

    /// `(cluster_id, node_id)` of this node, cheap (for etcd response headers). Zero while the
    /// node has not joined a cluster.
    fn identity(&self) -> (u64, u64);

    /// The node's limits on client input.
    fn limits(&self) -> &meridian_types::Limits;

    /// Counts one client request by operation and outcome (`ok` or the error code) and its
    /// latency, for `/metrics`.
    fn observe_request(&self, op: &'static str, outcome: Result<(), ErrorCode>, seconds: f64);

    /// The Prometheus text exposition of every metric of this node.
    fn metrics_text(&self) -> String;

    /// Starts draining `node` (idempotent): the placement driver moves its replicas and
    /// leaderships away. Returns what it still holds.
    fn drain_node(
        &self,
        node: u64,
    ) -> impl Future<Output = Result<DrainStatus, MeridianError>> + Send {
        async move {
            Err(MeridianError::invalid(format!(
                "draining node {node} is not supported here"
            )))
        }
    }

    /// Marks a node that holds nothing as removed; `not_drained` while it still holds replicas
    /// or votes in the meta group.
    fn remove_node(&self, node: u64) -> impl Future<Output = Result<(), MeridianError>> + Send {
        async move {
            Err(MeridianError::invalid(format!(
                "removing node {node} is not supported here"
            )))
        }
    }
}
