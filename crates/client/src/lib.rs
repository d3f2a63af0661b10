//! Layer: client. The Rust SDK of Meridian: reads and writes keys over etcd's v3 gRPC `KV`
//! service (the same path `etcdctl` and etcd's benchmark take) and reads the cluster map over
//! the HTTP/JSON API, failing over between endpoints with bounded attempts and a per-call
//! timeout.
//!
//! Architecture invariant: this crate knows the wire protocols a node serves to clients, not
//! Raft, storage or routing. Any node accepts any request; the [`Topology`] built from the
//! cluster map is only a hint for sending a request straight to a range's leader (or, for
//! bounded and local reads, to the nearest replica). It depends
//! on `meridian-node` only for the JSON shape of `GET /v1/cluster` ([`ClusterView`]).
//!
//! Codemap:
//! - [`Client`] (`client.rs`): the calls and the failover loop;
//! - [`ClientError`] (`error.rs`): errors with stable codes, and which may fail over;
//! - `http_json.rs`: `GET` of JSON routes and HTTP errors as [`ClientError`]s;
//! - `endpoint.rs`: endpoint parsing and lazy gRPC channels (also for tools that drive the
//!   generated etcd clients directly, like `meridian bench`);
//! - [`Topology`] (`topology.rs`): key → range → leader and replica addresses, and
//!   [`order_targets`], the pure choice of where a call goes;
//! - `routing.rs`: the learned topology, round trips and [`SessionTokens`] (read-your-writes on
//!   follower reads);
//! - `keys.rs`: etcd's prefix and range-end conventions;
//! - [`Publisher`] (`publisher.rs`): concurrent stream publishes sharing one `PublishStream` call.

mod client;
mod config;
mod consistency;
mod endpoint;
mod error;
mod http_json;
mod key_value;
mod keys;
mod publisher;
mod results;
mod routing;
mod topology;

pub use client::{Client, IDEMPOTENCY_METADATA};
pub use config::{
    ATTEMPTS_MAX, CALL_TIMEOUT, CONNECT_TIMEOUT, ClientConfig, RESPONSE_BYTES_MAX, RETRY_BACKOFF,
    RETRY_BACKOFF_MAX,
};
pub use consistency::{
    CONSISTENCY_METADATA, Consistency, MIN_REVISION_METADATA, STALENESS_METADATA,
};
pub use endpoint::{DEFAULT_PORT, lazy_channel, parse_endpoint, parse_endpoints};
pub use error::{ClientError, Idempotence};
pub use key_value::KeyValue;
pub use keys::{prefix_range_end, scan_bounds};
pub use meridian_node::{ClusterView, NodeView, RangeView};
pub use publisher::{PUBLISHER_IN_FLIGHT_MAX, Publisher};
pub use results::{CasResult, DeleteResult, GetResult, PutResult, ScanOptions, ScanPage};
pub use routing::{SessionTokens, TOPOLOGY_REFRESH};
pub use topology::{RangeRoute, Topology, order_targets};
