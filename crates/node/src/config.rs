//! A node's configuration.

use meridian_consensus::GroupConfig;
use meridian_types::{Limits, NodeId};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// The address other nodes and clients reach this node at (`host:port`).
    pub advertise_addr: String,
    pub data_dir: PathBuf,
    pub region: String,
    pub zone: String,
    /// Addresses of existing members to join through; empty for a node that waits for `init`.
    pub join: Vec<String>,
    /// fsync every append before acknowledging it. Off only for experiments.
    pub fsync: bool,
    pub raft: GroupConfig,
    pub limits: Limits,
    /// How long a client request may take, retries and forwarding included.
    pub request_timeout: Duration,
    /// The wall clock the hybrid logical clock reads (the system clock but in simulations).
    pub clock: crate::WallClock,
    /// A node that has answered no probe for this long counts as dead: the placement driver
    /// replaces its replicas. Default [`NODE_DEAD_AFTER_DEFAULT`].
    pub node_dead_after: Duration,
    /// A system range no stream or queue has claimed for this long (its creator crashed between
    /// allocating it and creating the object) is removed by the meta leader. Default
    /// [`UNCLAIMED_RANGE_GRACE_DEFAULT`].
    pub unclaimed_range_grace: Duration,
}

/// Default of [`NodeConfig::unclaimed_range_grace`]: far beyond the few seconds between a
/// creator's allocation and its claim.
pub const UNCLAIMED_RANGE_GRACE_DEFAULT: Duration = Duration::from_secs(60);

/// Default of [`NodeConfig::node_dead_after`]: long enough that a restart or a short network
/// cut does not cause a wave of replica moves.
pub const NODE_DEAD_AFTER_DEFAULT: Duration = Duration::from_secs(60);

impl NodeConfig {
    pub fn new(
        id: NodeId,
        advertise_addr: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            id,
            advertise_addr: advertise_addr.into(),
            data_dir: data_dir.into(),
            region: "default".into(),
            zone: "default".into(),
            join: Vec::new(),
            fsync: true,
            raft: GroupConfig::default(),
            limits: Limits::default(),
            request_timeout: Duration::from_secs(10),
            clock: crate::WallClock::system(),
            node_dead_after: NODE_DEAD_AFTER_DEFAULT,
            unclaimed_range_grace: UNCLAIMED_RANGE_GRACE_DEFAULT,
        }
    }
}
