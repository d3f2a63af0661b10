//! The openraft type configuration shared by every group.

use meridian_state::{Command, CommandResult};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// A command as Raft carries it: shared, so one entry held in the log cache
/// ([`crate::entry_cache`]) goes to every replication stream and to the state machine without
/// a copy. Encoded as the bare [`Command`], so the log's bytes are what they were before.
#[derive(Clone, Debug)]
pub struct SharedCommand(pub Arc<Command>);

impl Serialize for SharedCommand {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Command::deserialize(d).map(|c| Self(Arc::new(c)))
    }
}

impl fmt::Display for SharedCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

openraft::declare_raft_types!(
    /// Meridian's Raft types: commands and results from the state crate, u64 node ids, the
    /// node's listen address as its Raft node.
    pub TypeConfig:
        D = SharedCommand,
        R = CommandResult,
        AsyncRuntime = crate::runtime::MeridianRuntime,
);

pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;
