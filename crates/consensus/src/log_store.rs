//! openraft's log storage for one group, on the node's shared [`LogStore`].

use crate::entry_cache::EntryCache;
use crate::log_growth::LogGrowth;
use crate::typ::{Entry, LogId, TypeConfig, Vote};
use meridian_storage::LogStore;
use meridian_types::GroupId;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

const META_VOTE: &str = "raft.vote";
const META_COMMITTED: &str = "raft.committed";
const META_PURGED: &str = "raft.purged";

/// Cloned as openraft's log readers (one per replication stream and the state machine's);
/// the clones share the entry cache.
#[derive(Clone)]
pub(crate) struct GroupLogStore {
    group: GroupId,
    store: Arc<dyn LogStore>,
    /// Entries are added after the disk has them and removed before the disk loses them, so a
    /// read the cache answers gives what the disk would.
    cache: Arc<parking_lot::Mutex<EntryCache>>,
    /// Bytes appended since the last snapshot: asks for one when the log grows too big.
    growth: Arc<LogGrowth>,
}

impl GroupLogStore {
    pub(crate) fn new(group: GroupId, store: Arc<dyn LogStore>, growth: Arc<LogGrowth>) -> Self {
        Self {
            group,
            store,
            cache: Arc::default(),
            growth,
        }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, name: &str) -> io::Result<Option<T>> {
        match self.store.get_meta(self.group, name)? {
            None => Ok(None),
            Some(bytes) => postcard::from_bytes(&bytes).map(Some).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("decode {name}: {e}"))
            }),
        }
    }

    fn put<T: serde::Serialize>(&self, name: &str, v: &T, sync: bool) -> io::Result<()> {
        let bytes = postcard::to_allocvec(v).map_err(io::Error::other)?;
        self.store.put_meta(self.group, name, &bytes, sync)?;
        Ok(())
    }
}

fn decode_entry(index: u64, bytes: &[u8]) -> io::Result<Entry> {
    postcard::from_bytes(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("decode log entry {index}: {e}"),
        )
    })
}

impl RaftLogReader<TypeConfig> for GroupLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        if let Some(entries) = self.cache.lock().get(start, end) {
            return Ok(entries);
        }
        let records = self.store.read_log(self.group, start, end)?;
        records.iter().map(|(i, b)| decode_entry(*i, b)).collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get(META_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for GroupLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let purged: Option<LogId> = self.get(META_PURGED)?;
        let last = match self.store.last_log(self.group)? {
            Some((i, b)) => Some(decode_entry(i, &b)?.log_id()),
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // A vote must be durable before it is acted on: fsync now.
        self.put(META_VOTE, vote, true)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not fsynced: after a crash a smaller committed index only means re-learning it.
        self.put(META_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get::<Option<LogId>>(META_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        let mut appended = Vec::new();
        let mut total = 0u64;
        for e in entries {
            let bytes = postcard::to_allocvec(&e).map_err(io::Error::other)?;
            let size = bytes.len();
            total += size as u64;
            records.push((e.index(), bytes));
            appended.push((e, size));
        }
        if self.growth.appended(appended.len() as u64, total) {
            self.growth.request_snapshot();
        }
        self.store.append(
            self.group,
            records,
            Box::new(move |r| callback.io_completed(r)),
        )?;
        self.cache.lock().extend(appended);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let last = last_log_id.map(|l| l.index());
        self.cache.lock().truncate_after(last);
        self.store.truncate_after(self.group, last)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Record the purge point first, so a crash between the two never hides purged entries.
        self.put(META_PURGED, &log_id, true)?;
        self.cache.lock().purge_upto(log_id.index());
        meridian_storage::crash_point!("consensus::log::purge::after_mark");
        self.store.purge_upto(self.group, log_id.index())?;
        Ok(())
    }
}
