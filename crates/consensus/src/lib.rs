//! Layer: consensus. Many Raft groups per node on openraft: each group's log and vote in the
//! node's [`LogStore`](meridian_storage::LogStore), its state machine applying
//! [`Command`](meridian_state::Command)s to a [`GroupState`](meridian_state::GroupState), and
//! every group's messages multiplexed over the node's one [`Transport`](meridian_transport::Transport).
//!
//! Architecture invariant: openraft is used only inside this crate (its alpha API moves); the
//! rest of Meridian sees [`RaftGroup`] and plain Meridian types. This crate does not know keys,
//! ranges or client protocols.

mod entry_cache;
mod freshness;
mod group;
mod log_growth;
mod log_store;
mod membership;
mod network;
mod pipeline;
mod read_rounds;
mod runtime;
mod state_machine;
mod typ;

#[cfg(test)]
mod conformance;

pub use group::{GroupConfig, GroupStatus, Proposal, RaftGroup, Role};
pub use membership::{GroupMembership, LEARNER_CAUGHT_UP_LAG};
pub use network::RaftRouter;
pub use read_rounds::ReadRound;

/// The log id (term, leader and index) of a stored log record, for checks that compare the logs
/// of replicas (log matching); `None` when the record does not decode.
pub fn log_record_id(record: &[u8]) -> Option<String> {
    use openraft::entry::RaftEntry;
    let e: typ::Entry = postcard::from_bytes(record).ok()?;
    Some(e.log_id().to_string())
}
