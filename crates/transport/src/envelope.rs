//! The one call shape between nodes.

use crate::error::TransportError;
use futures::future::BoxFuture;
use meridian_types::{ClusterId, GroupId, NodeId};
use std::time::Duration;

/// One node-to-node request. Every message names its group, so one connection per peer carries
/// every group.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The sender's cluster; 0 before it joined one. Receivers reject a mismatch.
    pub cluster_id: ClusterId,
    pub from: NodeId,
    pub to: NodeId,
    pub group: GroupId,
    /// What the payload is, e.g. `raft.append`, `kv.forward`, `admin.hello`.
    pub method: String,
    pub payload: Vec<u8>,
    /// How long the caller waits for the answer.
    pub timeout: Duration,
}

/// Sends envelopes to other nodes.
pub trait Transport: Send + Sync + 'static {
    fn call(&self, env: Envelope) -> BoxFuture<'static, Result<Vec<u8>, TransportError>>;

    /// Tells the transport where a node listens (from the cluster map).
    fn set_peer_addr(&self, node: NodeId, addr: String);

    /// Tells the transport a node's region (from the cluster map). Only a transport that
    /// simulates distance ([`crate::WanTransport`]) uses it.
    fn set_peer_region(&self, _node: NodeId, _region: String) {}

    /// Calls an address directly, before the node behind it is known (init, join).
    fn call_addr(
        &self,
        addr: &str,
        env: Envelope,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>>;
}

/// Serves envelopes that arrive at a node. An `Err` is an application-level failure that is
/// returned to the caller as [`TransportError::Remote`].
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, env: Envelope) -> BoxFuture<'static, Result<Vec<u8>, String>>;
}
