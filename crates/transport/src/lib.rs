//! Layer: transport. Node-to-node RPC: one call shape (an [`Envelope`] naming its group and
//! method, answered with bytes), a gRPC implementation with one channel per peer node (calls
//! share one long-lived stream on it), a simulated network for tests that partitions, delays
//! and drops per link, and a simulated WAN (per-region-pair round trips from a table) that wraps
//! any transport.
//!
//! Architecture invariant: payloads are opaque bytes here; this crate knows no Raft message,
//! no key and no range.

mod coalesce;
mod envelope;
mod error;
mod grpc;
mod grpc_stream;
mod sim;
mod wan;

pub use coalesce::{COALESCE_BUFFER_MAX, CoalescingIo, PONG_HOLD_MAX};
pub use envelope::{Envelope, Handler, Transport};
pub use error::{TransportError, WanTableError};
pub use grpc::{Connector, GrpcTransport, NodeRpcServer, PeerStream, node_rpc_service};
pub use grpc_stream::{STREAM_CALLS_IN_FLIGHT_MAX, STREAM_PAYLOAD_BYTES_MAX};
pub use sim::{LinkRule, SimNetwork, SimTransport};
pub use wan::{LOCAL_DEFAULT, WAN_RTT_MAX, WanLink, WanTable, WanTransport};
