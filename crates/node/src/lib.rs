//! Layer: node. Wires one Meridian process together: the groups it hosts, the router (key →
//! range → leader), forwarding to leaders over node RPC, read consistency, health, metrics.
//!
//! Architecture invariant: nothing here knows HTTP, JSON or the etcd wire format; the api crate
//! maps those onto [`ClientApi`]. Nothing below this crate knows how keys map to ranges.

mod client_api;
mod config;
mod drain;
pub mod group_commit;
mod hlc;
mod kv;
mod kv_batch;
pub mod latency;
pub mod layout;
pub mod lease;
pub mod messages;
mod metrics;
mod node;
pub mod outbox;
mod placement;
pub mod placement_driver;
pub mod probe;
pub mod queue;
mod queue_batch;
pub mod queue_driver;
mod queue_metrics;
mod router;
pub mod stream;
pub mod stream_batch;
mod stream_maintenance;
mod stream_metrics;
pub mod system_ranges;
mod view;
pub mod watch;

pub use client_api::{
    BOUNDED_STALENESS_MAX, CONSISTENCY_FORMS, ClientApi, Consistency, RangeRead, ReadOptions,
    WriteOptions,
};
pub use config::{NODE_DEAD_AFTER_DEFAULT, NodeConfig, UNCLAIMED_RANGE_GRACE_DEFAULT};
pub use hlc::{Hlc, WallClock};
pub use latency::{LatencyRow, LatencyTable, RttStats};
pub use lease::{LeaseInfo, LeaseOp, LeaseReply};
pub use metrics::Metrics;
pub use node::DATA_FORMAT;
pub use node::Node;
pub use placement::{PlacementView, placement_views};
pub use queue::{QUEUE_WAIT_MAX, QueueInfo};
pub use view::{ClusterView, DrainStatus, LatencyView, NodeStatus, NodeView, RangeView};
pub use watch::{WatchMessage, WatchSpec, WatchStream};
