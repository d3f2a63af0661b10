//! Layer: consensus. Many Raft groups per node on openraft: each group's log and vote in the
//! node's [`LogStore`](meridian_storage::LogStore), its state machine applying
//! [`Command`](meridian_state::Command)s to a [`GroupState`](meridian_state::GroupState), and
//! every group's messages multiplexed over the node's one [`Transport`](meridian_transport::Transport).
//!
//! Architecture invariant: openraft is used only inside this crate (its alpha API moves); the
//! rest of Meridian sees [`RaftGroup`] and plain Meridian types. This crate does not know keys,
//! ranges or client protocols.

mod group;
mod log_store;
mod network;
mod state_machine;
mod typ;

#[cfg(test)]
mod conformance;

pub use group::{GroupConfig, GroupStatus, RaftGroup, Role};
pub use network::RaftRouter;
