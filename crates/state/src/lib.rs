//! Layer: state. Pure, deterministic state machines: the MVCC key-value store of a range, its
//! work queues (`queue`), and the cluster map of the meta group.
//!
//! Architecture invariant: no tokio, no clock, no randomness, no IO. A state machine is a pure
//! function of `(state, entry)`: time and revision arrive inside the entry, stamped by the
//! leader, so every replica that applies the same log holds the same state, byte for byte.
//! This crate does not know Raft, the network or the disk.

pub mod dedup;
pub mod group;
pub mod kv;
pub mod kv_types;
pub mod lease;
pub mod meta;
pub mod meta_system;
pub mod outbox;
pub mod placement;
pub mod placement_check;
pub mod placement_plan;
pub mod queue;
pub mod stream;
pub mod stream_group;

pub use dedup::DedupTable;
pub use group::{Command, CommandResult, GroupState};
pub use kv::{EventBatch, EventKind, KvState, WatchEvent};
pub use kv_types::*;
pub use lease::{LeaseCommand, LeaseRecord, LeaseTable};
pub use meta::{ClusterMap, MetaCommand, NodeInfo, NodeState, RangeInfo, StreamSpec, SystemRange};
pub use placement::{PlacementRule, Survival};
pub use placement_check::{assign, assign_spread, meets, validate_rule};
pub use queue::{QueueCommand, QueueEntry, QueueResult, QueueSet, QueueSpec};
