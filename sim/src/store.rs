//! A node's disk in the simulation: a `LogStore` in memory with the power-loss semantics of the
//! real one. Writes land in the "page cache" at once (readable), and become durable only when the
//! simulated flusher syncs them (one sync for every write made meanwhile — group commit, as
//! `DiskStore`'s flusher). A crash throws away whatever was not synced, so code that acknowledges
//! before the sync loses acknowledged writes here, as it would on a real power cut.

use meridian_storage::{DurableCallback, LogStore, StorageError};
use meridian_types::GroupId;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Simulated time one sync takes: between these bounds, drawn from the run's seeded generator.
pub const SYNC_LATENCY_MIN: Duration = Duration::from_millis(1);
pub const SYNC_LATENCY_MAX: Duration = Duration::from_millis(12);

#[derive(Clone, Default)]
struct Data {
    log: BTreeMap<(u64, u64), Vec<u8>>,
    meta: BTreeMap<(u64, String), Vec<u8>>,
    blobs: BTreeMap<(u64, String), Vec<u8>>,
}

enum Op {
    Append(u64, Vec<(u64, Vec<u8>)>),
    Truncate(u64, Option<u64>),
    Purge(u64, u64),
    Meta(u64, String, Vec<u8>),
    RemoveGroup(u64),
}

impl Data {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(g, recs) => {
                for (i, b) in recs {
                    self.log.insert((*g, *i), b.clone());
                }
            }
            Op::Truncate(g, after) => {
                let from = after.map(|a| a + 1).unwrap_or(0);
                let doomed: Vec<_> = self
                    .log
                    .range((*g, from)..=(*g, u64::MAX))
                    .map(|(k, _)| *k)
                    .collect();
                for k in doomed {
                    self.log.remove(&k);
                }
            }
            Op::Purge(g, upto) => {
                let doomed: Vec<_> = self
                    .log
                    .range((*g, 0)..=(*g, *upto))
                    .map(|(k, _)| *k)
                    .collect();
                for k in doomed {
                    self.log.remove(&k);
                }
            }
            Op::Meta(g, name, v) => {
                self.meta.insert((*g, name.clone()), v.clone());
            }
            Op::RemoveGroup(g) => {
                self.log.retain(|k, _| k.0 != *g);
                self.meta.retain(|k, _| k.0 != *g);
                self.blobs.retain(|k, _| k.0 != *g);
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    /// What a reader sees: durable state plus unsynced writes.
    current: Data,
    /// What survives a crash.
    durable: Data,
    /// Writes not yet synced, in order.
    pending: Vec<Op>,
    /// Appends waiting for the next sync.
    waiting: Vec<DurableCallback>,
    sync_scheduled: bool,
    syncs: u64,
}

/// One node's simulated disk; survives the node's crashes (the harness keeps it).
#[derive(Clone, Default)]
pub struct MemStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Power loss: every unsynced write is gone. Called when the node restarts.
    pub fn crash(&self) {
        let mut s = self.inner.lock();
        s.current = s.durable.clone();
        s.pending.clear();
        s.waiting.clear();
        s.sync_scheduled = false;
    }

    fn sync_now(s: &mut Inner) -> Vec<DurableCallback> {
        let ops = std::mem::take(&mut s.pending);
        for op in &ops {
            s.durable.apply(op);
        }
        s.syncs += 1;
        std::mem::take(&mut s.waiting)
    }

    fn write(&self, op: Op) {
        let mut s = self.inner.lock();
        s.current.apply(&op);
        s.pending.push(op);
    }

    fn schedule_sync(&self) {
        let mut s = self.inner.lock();
        if s.sync_scheduled {
            return;
        }
        s.sync_scheduled = true;
        drop(s);
        let me = self.clone();
        // Runs on the node's runtime: a crash drops it, and with it the unsynced writes.
        tokio::spawn(async move {
            let ms = meridian_types::rng::with(|r| {
                rand::Rng::random_range(
                    r,
                    SYNC_LATENCY_MIN.as_millis() as u64..=SYNC_LATENCY_MAX.as_millis() as u64,
                )
            });
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let cbs = {
                let mut s = me.inner.lock();
                s.sync_scheduled = false;
                Self::sync_now(&mut s)
            };
            for cb in cbs {
                cb(Ok(()));
            }
        });
    }

    /// Log records of a group, for the log-matching check.
    pub fn log_of(&self, group: u64) -> BTreeMap<u64, Vec<u8>> {
        let s = self.inner.lock();
        s.current
            .log
            .range((group, 0)..=(group, u64::MAX))
            .map(|((_, i), b)| (*i, b.clone()))
            .collect()
    }

    pub fn syncs(&self) -> u64 {
        self.inner.lock().syncs
    }
}

impl LogStore for MemStore {
    fn append(
        &self,
        group: GroupId,
        records: Vec<(u64, Vec<u8>)>,
        on_durable: DurableCallback,
    ) -> Result<(), StorageError> {
        self.write(Op::Append(group.0, records));
        self.inner.lock().waiting.push(on_durable);
        self.schedule_sync();
        Ok(())
    }

    fn read_log(
        &self,
        group: GroupId,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let s = self.inner.lock();
        Ok(s.current
            .log
            .range((group.0, start)..(group.0, end))
            .map(|((_, i), b)| (*i, b.clone()))
            .collect())
    }

    fn last_log(&self, group: GroupId) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let s = self.inner.lock();
        Ok(s.current
            .log
            .range((group.0, 0)..=(group.0, u64::MAX))
            .next_back()
            .map(|((_, i), b)| (*i, b.clone())))
    }

    fn truncate_after(&self, group: GroupId, after: Option<u64>) -> Result<(), StorageError> {
        self.write(Op::Truncate(group.0, after));
        Ok(())
    }

    fn purge_upto(&self, group: GroupId, upto: u64) -> Result<(), StorageError> {
        self.write(Op::Purge(group.0, upto));
        Ok(())
    }

    fn put_meta(
        &self,
        group: GroupId,
        name: &str,
        value: &[u8],
        sync: bool,
    ) -> Result<(), StorageError> {
        self.write(Op::Meta(group.0, name.to_string(), value.to_vec()));
        if sync {
            // One journal: syncing this write syncs every earlier one too.
            let cbs = Self::sync_now(&mut self.inner.lock());
            for cb in cbs {
                cb(Ok(()));
            }
        }
        Ok(())
    }

    fn get_meta(&self, group: GroupId, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .inner
            .lock()
            .current
            .meta
            .get(&(group.0, name.to_string()))
            .cloned())
    }

    fn put_blob(&self, group: GroupId, name: &str, value: &[u8]) -> Result<(), StorageError> {
        // A file of its own, fsynced before the rename: durable at once, outside the journal.
        let mut s = self.inner.lock();
        let k = (group.0, name.to_string());
        s.current.blobs.insert(k.clone(), value.to_vec());
        s.durable.blobs.insert(k, value.to_vec());
        Ok(())
    }

    fn get_blob(&self, group: GroupId, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .inner
            .lock()
            .current
            .blobs
            .get(&(group.0, name.to_string()))
            .cloned())
    }

    fn remove_group(&self, group: GroupId) -> Result<(), StorageError> {
        self.write(Op::RemoveGroup(group.0));
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        let s = self.inner.lock();
        s.current.log.values().map(|v| v.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loses_exactly_the_unsynced_writes() {
        let s = MemStore::new();
        let g = GroupId(1);
        s.put_meta(g, "a", b"1", true).unwrap();
        s.write(Op::Append(1, vec![(1, b"x".to_vec())]));
        assert_eq!(s.read_log(g, 0, 10).unwrap().len(), 1);
        s.crash();
        assert!(s.read_log(g, 0, 10).unwrap().is_empty());
        assert_eq!(s.get_meta(g, "a").unwrap(), Some(b"1".to_vec()));
        s.write(Op::Append(1, vec![(1, b"y".to_vec())]));
        s.put_meta(g, "b", b"2", true).unwrap();
        s.crash();
        assert_eq!(s.read_log(g, 0, 10).unwrap(), vec![(1, b"y".to_vec())]);
    }
}
