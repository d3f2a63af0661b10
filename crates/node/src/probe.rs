//! The prober: a background task that pings every other node of the cluster map over node RPC
//! (`admin.ping`) and records the round trips in the node's [`LatencyTable`]. A ping carries
//! the sender's row of the matrix and its answer the responder's, so every node learns every
//! row one hop away. Runs on tokio time and through the node's transport, so a simulation's
//! virtual clock and network (or a simulated WAN) apply to it as to any other call.
//!
//! [`LatencyTable`]: crate::LatencyTable

use crate::messages::{M_PING, PingReply, PingRequest};
use crate::node::{Node, decode, encode};
use crate::view::LatencyView;
use meridian_state::NodeState;
use meridian_transport::Envelope;
use meridian_types::{GroupId, NodeId};
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

/// How often each peer is probed. One probe a second per peer keeps the traffic at a few
/// hundred bytes a second per pair while the EWMA follows a change within a few seconds.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a probe waits for its answer before it counts as failed. Well above any WAN round
/// trip; at most one probe per peer is in flight, so a slow peer is not probed in a pile-up.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A peer is healthy (in `GET /v1/cluster`) if it answered a probe this recently: a few
/// probe intervals, so one lost probe does not flip it.
pub const PEER_LIVE_WITHIN: Duration = Duration::from_secs(5);

/// Starts the prober of `node`; it stops when `stop` turns true.
pub(crate) fn spawn(node: Node, mut stop: watch::Receiver<bool>) {
    let span = tracing::info_span!("prober", node_id = node.id().0);
    tokio::spawn(
        async move {
            let in_flight: Arc<Mutex<BTreeSet<NodeId>>> = Arc::default();
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(PROBE_INTERVAL) => {}
                }
                if node.cluster_id() == 0 {
                    continue;
                }
                let Some(map) = node.map_arc() else {
                    continue;
                };
                node.latency().retain(|id| map.nodes.contains_key(&id));
                let me = node.id();
                let peers = map
                    .nodes
                    .values()
                    .filter(|n| n.id != me && n.state != NodeState::Removed)
                    .map(|n| n.id);
                for peer in peers {
                    if !in_flight.lock().insert(peer) {
                        continue;
                    }
                    let (node, in_flight) = (node.clone(), in_flight.clone());
                    tokio::spawn(
                        async move {
                            probe(&node, peer).await;
                            in_flight.lock().remove(&peer);
                        }
                        .in_current_span(),
                    );
                }
            }
        }
        .instrument(span),
    );
}

/// Pings `peer` once and records the outcome.
async fn probe(node: &Node, peer: NodeId) {
    let lat = node.latency();
    let m = node.metrics();
    let payload = match encode(&PingRequest { row: lat.all() }) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "encode ping");
            return;
        }
    };
    let env = node.envelope(peer, GroupId::META, M_PING, payload, PROBE_TIMEOUT);
    let t0 = Instant::now();
    let reply = node
        .inner
        .transport
        .call(env)
        .await
        .map_err(|e| e.to_string())
        .and_then(|b| decode::<PingReply>(&b).map_err(|e| e.to_string()));
    match reply {
        Ok(r) => {
            lat.record(peer, t0.elapsed());
            lat.set_row(peer, r.row);
            if let Some(s) = lat.rtt(peer) {
                let label = crate::metrics::PeerLabel::of(peer);
                m.peer_rtt_seconds
                    .get_or_create(&label)
                    .set(s.ewma.as_secs_f64());
                m.peer_rtt_p99_seconds
                    .get_or_create(&label)
                    .set(s.p99.as_secs_f64());
            }
        }
        Err(e) => {
            lat.record_failure(peer);
            m.peer_probe_failures
                .get_or_create(&crate::metrics::PeerLabel::of(peer))
                .inc();
            tracing::debug!(peer = peer.0, error = %e, "probe failed");
        }
    }
}

/// Answers `admin.ping`: keeps the sender's row, answers with this node's own.
pub(crate) fn serve_ping(node: &Node, env: &Envelope) -> Result<Vec<u8>, String> {
    let req: PingRequest = decode(&env.payload).map_err(|e| e.to_string())?;
    let lat = node.latency();
    if env.from != node.id() && env.from != NodeId(0) {
        lat.set_row(env.from, req.row);
    }
    encode(&PingReply { row: lat.all() })
}

/// The matrix as this node knows it: its own row, then every row its peers reported.
pub(crate) fn latency_view(node: &Node) -> Vec<LatencyView> {
    let lat = node.latency();
    let mut out: Vec<LatencyView> = lat
        .all()
        .into_iter()
        .map(|(to, s)| LatencyView::new(node.id(), to, &s, Duration::ZERO))
        .collect();
    for (from, age, row) in lat.rows() {
        out.extend(
            row.iter()
                .map(|(to, s)| LatencyView::new(from, *to, s, age)),
        );
    }
    out
}

/// Whether `peer` counts as healthy: this node itself, or a peer that answered a probe within
/// [`PEER_LIVE_WITHIN`].
pub(crate) fn is_healthy(node: &Node, peer: NodeId) -> bool {
    peer == node.id() || node.latency().is_live(peer, PEER_LIVE_WITHIN)
}
