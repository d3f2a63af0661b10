//! The openraft type configuration shared by every group.

use meridian_state::{Command, CommandResult};

openraft::declare_raft_types!(
    /// Meridian's Raft types: commands and results from the state crate, u64 node ids, the
    /// node's listen address as its Raft node.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        AsyncRuntime = crate::runtime::MeridianRuntime,
);

pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;
