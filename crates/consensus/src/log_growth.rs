//! The byte trigger for snapshots. openraft builds a snapshot every `snapshot_logs_max` entries
//! (100,000 by default); with values of up to 1 MiB that lets one group's log grow to about
//! 100 GB before it is purged. [`LogGrowth`] counts the bytes a replica appended since its last
//! snapshot and asks for one once they exceed the larger of a floor
//! (`GroupConfig::snapshot_log_bytes_min`) and the last snapshot's size. So the log before a
//! purge stays within about twice the state it rebuilds (or the floor), and no snapshot is written
//! for less log than its own size: building one serializes the whole state.
//!
//! openraft keeps `logs_kept_after_snapshot` entries (5,000) behind a snapshot for followers
//! that lag briefly; of 1 MiB entries that would keep 5 GB. After a snapshot it asked for, this
//! purges the log itself, keeping a quarter of the entries appended since the last snapshot
//! (about a quarter of the threshold in bytes) or `logs_kept_after_snapshot`, whichever is fewer.

use crate::group::GroupParts;
use openraft::async_runtime::WatchReceiver;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{OnceLock, Weak};
use std::time::Duration;

/// How long the purge after a requested snapshot waits for openraft to report the snapshot.
const SNAPSHOT_WAIT_MAX: Duration = Duration::from_secs(120);

pub(crate) struct LogGrowth {
    floor: u64,
    /// Entries openraft keeps behind a snapshot; the purge here keeps no more.
    keep_max: u64,
    since_snapshot: AtomicU64,
    entries_since_snapshot: AtomicU64,
    last_snapshot: AtomicU64,
    /// A snapshot was asked for and none was built since: ask once.
    requested: AtomicBool,
    /// The group to ask, set once it is open (weak: the group owns its log store).
    group: OnceLock<Weak<GroupParts>>,
}

impl LogGrowth {
    pub(crate) fn new(floor: u64, keep_max: u64) -> Self {
        Self {
            floor,
            keep_max,
            since_snapshot: AtomicU64::new(0),
            entries_since_snapshot: AtomicU64::new(0),
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

    /// The log grew by `entries` taking `bytes`; true the first time a snapshot is due (until
    /// one is built).
    pub(crate) fn appended(&self, entries: u64, bytes: u64) -> bool {
        self.entries_since_snapshot
            .fetch_add(entries, Ordering::Relaxed);
        let total = self.since_snapshot.fetch_add(bytes, Ordering::Relaxed) + bytes;
        total > self.threshold() && !self.requested.swap(true, Ordering::Relaxed)
    }

    /// A snapshot of `bytes` was built or installed: the log it covers will be purged.
    pub(crate) fn snapshotted(&self, bytes: u64) {
        self.last_snapshot.store(bytes, Ordering::Relaxed);
        self.since_snapshot.store(0, Ordering::Relaxed);
        self.entries_since_snapshot.store(0, Ordering::Relaxed);
        self.requested.store(false, Ordering::Relaxed);
    }

    /// Entries to keep behind a snapshot asked for now: a quarter of those appended since the
    /// last one, at most `keep_max`.
    fn keep(&self) -> u64 {
        (self.entries_since_snapshot.load(Ordering::Relaxed) / 4).min(self.keep_max)
    }

    /// Asks the group's Raft to build a snapshot now, and once openraft reports it, purges the
    /// log behind it down to [`keep`](Self::keep) entries (in the background).
    pub(crate) fn request_snapshot(&self) {
        let Some(parts) = self.group.get().and_then(Weak::upgrade) else {
            // Not open yet (or closing): ask again at the next append.
            self.requested.store(false, Ordering::Relaxed);
            return;
        };
        let keep = self.keep();
        tracing::info!(
            group_id = parts.group.0,
            log_bytes = self.since_snapshot.load(Ordering::Relaxed),
            keep,
            "log bytes since the last snapshot passed the threshold: building one"
        );
        tokio::spawn(async move {
            let before = parts
                .raft
                .metrics()
                .borrow_watched()
                .snapshot
                .map(|l| l.index);
            if let Err(e) = parts.raft.trigger().snapshot().await {
                tracing::debug!(group_id = parts.group.0, error = %e, "snapshot not triggered");
                return;
            }
            let built = parts
                .raft
                .wait(Some(SNAPSHOT_WAIT_MAX))
                .metrics(
                    |m| m.snapshot.map(|l| l.index) > before,
                    "the requested snapshot",
                )
                .await
                .map(|m| m.snapshot.map(|l| l.index));
            if let Ok(Some(index)) = built
                && index > keep
            {
                // openraft purges only what a snapshot covers, once replication no longer
                // reads it.
                if let Err(e) = parts.raft.trigger().purge_log(index - keep).await {
                    tracing::debug!(group_id = parts.group.0, error = %e, "log purge not triggered");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_past_the_larger_of_the_floor_and_the_last_snapshot() {
        let g = LogGrowth::new(1_000, 5_000);
        assert!(!g.appended(1, 600));
        assert!(!g.appended(1, 400), "exactly the floor is not past it");
        assert!(g.appended(1, 1), "past the floor");
        assert!(
            !g.appended(1, 5_000),
            "asked once until a snapshot is built"
        );
        g.snapshotted(3_000);
        assert!(
            !g.appended(1, 2_000),
            "the last snapshot (3,000) is now the threshold"
        );
        assert!(g.appended(1, 1_001));
        g.snapshotted(10);
        assert!(
            !g.appended(1, 1_000),
            "a small snapshot leaves the floor as the threshold"
        );
        assert!(g.appended(1, 1));
    }

    #[test]
    fn keeps_a_quarter_of_the_entries_since_the_snapshot_at_most_the_configured_count() {
        let g = LogGrowth::new(1_000, 50);
        g.appended(40, 10);
        assert_eq!(g.keep(), 10);
        g.appended(400, 10);
        assert_eq!(g.keep(), 50, "never more than openraft keeps");
        g.snapshotted(0);
        assert_eq!(g.keep(), 0);
    }
}
