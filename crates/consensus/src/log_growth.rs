//! The byte trigger for snapshots. openraft builds a snapshot every `snapshot_logs_max` entries
//! (100,000 by default); with values of up to 1 MiB that lets one group's log grow to about
//! 100 GB before it is purged. [`LogGrowth`] counts the bytes a replica appended since its last
//! snapshot and asks for one once they exceed the larger of a floor
//! (`GroupConfig::snapshot_log_bytes_min`) and the last snapshot's size. So the log before a
//! purge stays within about twice the state it rebuilds (or the floor), and no snapshot is written
//! for less log than its own size: building one serializes the whole state.

use crate::group::GroupParts;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{OnceLock, Weak};

pub(crate) struct LogGrowth {
    floor: u64,
    since_snapshot: AtomicU64,
    last_snapshot: AtomicU64,
    /// A snapshot was asked for and none was built since: ask once.
    requested: AtomicBool,
    /// The group to ask, set once it is open (weak: the group owns its log store).
    group: OnceLock<Weak<GroupParts>>,
}

impl LogGrowth {
    pub(crate) fn new(floor: u64) -> Self {
        Self {
            floor,
            since_snapshot: AtomicU64::new(0),
            last_snapshot: AtomicU64::new(0),
            requested: AtomicBool::new(false),
            group: OnceLock::new(),
        }
    }

    pub(crate) fn attach(&self, group: Weak<GroupParts>) {
        let _ = self.group.set(group);
    }

    /// The bytes appended since the last snapshot above which another is due.
    fn threshold(&self) -> u64 {
        self.floor.max(self.last_snapshot.load(Ordering::Relaxed))
    }

    /// The log grew by `bytes`; true the first time a snapshot is due (until one is built).
    pub(crate) fn appended(&self, bytes: u64) -> bool {
        let total = self.since_snapshot.fetch_add(bytes, Ordering::Relaxed) + bytes;
        total > self.threshold() && !self.requested.swap(true, Ordering::Relaxed)
    }

    /// A snapshot of `bytes` was built or installed: the log it covers will be purged.
    pub(crate) fn snapshotted(&self, bytes: u64) {
        self.last_snapshot.store(bytes, Ordering::Relaxed);
        self.since_snapshot.store(0, Ordering::Relaxed);
        self.requested.store(false, Ordering::Relaxed);
    }

    /// Asks the group's Raft to build a snapshot now (in the background).
    pub(crate) fn request_snapshot(&self) {
        let Some(parts) = self.group.get().and_then(Weak::upgrade) else {
            return;
        };
        tracing::info!(
            group_id = parts.group.0,
            log_bytes = self.since_snapshot.load(Ordering::Relaxed),
            "log bytes since the last snapshot passed the threshold: building one"
        );
        tokio::spawn(async move {
            if let Err(e) = parts.raft.trigger().snapshot().await {
                tracing::debug!(group_id = parts.group.0, error = %e, "snapshot not triggered");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_past_the_larger_of_the_floor_and_the_last_snapshot() {
        let g = LogGrowth::new(1_000);
        assert!(!g.appended(600));
        assert!(!g.appended(400), "exactly the floor is not past it");
        assert!(g.appended(1), "past the floor");
        assert!(!g.appended(5_000), "asked once until a snapshot is built");
        g.snapshotted(3_000);
        assert!(
            !g.appended(2_000),
            "the last snapshot (3,000) is now the threshold"
        );
        assert!(g.appended(1_001));
        g.snapshotted(10);
        assert!(
            !g.appended(1_000),
            "a small snapshot leaves the floor as the threshold"
        );
        assert!(g.appended(1));
    }
}
