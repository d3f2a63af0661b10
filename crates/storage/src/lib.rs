//! Layer: storage. Durable bytes for every Raft group of a node: log records, small metadata
//! (vote, committed index), snapshots, and the node's own identity.
//!
//! Architecture invariant: this crate stores opaque, checksummed byte records keyed by
//! `(GroupId, index)`. It knows neither Raft's types nor the state machines' formats — the
//! consensus layer encodes those. One engine (fjall), one fsync path: appends are buffered, and
//! one flusher thread persists once for every append of every group that arrived meanwhile
//! (group commit), then reports each as durable.

mod disk_store;
mod error;
pub mod failpoints;
mod flusher;
mod log_store;
mod record;

pub use disk_store::{DiskStore, DiskStoreConfig};
pub use error::StorageError;
pub use flusher::FsyncObserver;
pub use log_store::{DurableCallback, LogStore};
pub use record::{decode_record, encode_record};
