//! The newest entries of one group's log, kept in memory as appended, so the replication
//! streams (one per follower) and the state machine read them without a disk read, a checksum
//! and a decode each. The cache always ends at the log's last entry, or is empty.

use crate::typ::Entry;
use openraft::entry::RaftEntry;
use std::collections::VecDeque;

/// Most entries one group keeps in memory beyond the log on disk.
pub const LOG_CACHE_ENTRIES_MAX: usize = 512;
/// Most encoded bytes of entries one group keeps in memory (the newest always stays).
pub const LOG_CACHE_BYTES_MAX: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct EntryCache {
    /// Consecutive entries ending at the log's last one, each with its encoded size.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl EntryCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.index())
    }

    fn end_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.index() + 1)
    }

    /// Entries just appended to the log (consecutive, each with its encoded size).
    pub(crate) fn extend(&mut self, appended: Vec<(Entry, usize)>) {
        let Some(first) = appended.first().map(|(e, _)| e.index()) else {
            return;
        };
        if self.end_index().is_some_and(|end| end != first) {
            // Not a continuation (openraft truncates before it overwrites): start afresh.
            self.clear();
        }
        for (e, size) in appended {
            self.bytes += size;
            self.entries.push_back((e, size));
        }
        while self.entries.len() > LOG_CACHE_ENTRIES_MAX
            || (self.bytes > LOG_CACHE_BYTES_MAX && self.entries.len() > 1)
        {
            if let Some((_, size)) = self.entries.pop_front() {
                self.bytes -= size;
            }
        }
    }

    /// The log lost every entry after `last` (all of them when `None`).
    pub(crate) fn truncate_after(&mut self, last: Option<u64>) {
        while let Some((e, size)) = self.entries.back() {
            if last.is_some_and(|l| e.index() <= l) {
                break;
            }
            self.bytes -= *size;
            self.entries.pop_back();
        }
    }

    /// The log lost every entry up to and including `upto`.
    pub(crate) fn purge_upto(&mut self, upto: u64) {
        while let Some((e, size)) = self.entries.front() {
            if e.index() > upto {
                break;
            }
            self.bytes -= *size;
            self.entries.pop_front();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries `[start, end)`, or `None` unless the cache holds every one of them (the caller
    /// then reads the disk).
    pub(crate) fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        if start < first || end > self.end_index()? || start > end {
            return None;
        }
        let from = usize::try_from(start - first).ok()?;
        let to = usize::try_from(end - first).ok()?;
        Some(
            self.entries
                .range(from..to)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typ::LogId;

    fn lid(index: u64) -> LogId {
        use openraft::vote::RaftLeaderId;
        LogId::new(openraft::impls::leader_id_adv::LeaderId::new(1, 1), index)
    }

    fn entries(from: u64, to: u64) -> Vec<(Entry, usize)> {
        (from..to).map(|i| (Entry::new_blank(lid(i)), 10)).collect()
    }

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.index()).collect())
    }

    #[test]
    fn answers_only_ranges_it_holds_whole() {
        let mut c = EntryCache::default();
        assert_eq!(indexes(c.get(1, 2)), None);
        c.extend(entries(5, 10));
        assert_eq!(indexes(c.get(5, 10)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(indexes(c.get(7, 9)), Some(vec![7, 8]));
        assert_eq!(indexes(c.get(9, 9)), Some(vec![]));
        assert_eq!(indexes(c.get(4, 8)), None, "starts before the cache");
        assert_eq!(
            indexes(c.get(8, 11)),
            None,
            "ends after the log's last entry"
        );
        assert_eq!(
            indexes(c.get(8, u64::MAX)),
            None,
            "unbounded reads go to the disk"
        );
    }

    #[test]
    fn follows_truncation_purge_and_overwrite() {
        let mut c = EntryCache::default();
        c.extend(entries(1, 11));
        c.truncate_after(Some(6));
        assert_eq!(indexes(c.get(6, 8)), None);
        assert_eq!(indexes(c.get(5, 7)), Some(vec![5, 6]));
        c.purge_upto(3);
        assert_eq!(indexes(c.get(3, 5)), None);
        assert_eq!(indexes(c.get(4, 7)), Some(vec![4, 5, 6]));
        // A continuation extends; anything else starts the cache afresh.
        c.extend(entries(7, 9));
        assert_eq!(indexes(c.get(4, 9)), Some(vec![4, 5, 6, 7, 8]));
        c.extend(entries(20, 22));
        assert_eq!(indexes(c.get(8, 9)), None);
        assert_eq!(indexes(c.get(20, 22)), Some(vec![20, 21]));
        c.truncate_after(None);
        assert_eq!(indexes(c.get(20, 21)), None);
        assert_eq!(c.bytes, 0);
    }

    #[test]
    fn keeps_the_newest_within_its_bounds() {
        let mut c = EntryCache::default();
        c.extend(entries(0, LOG_CACHE_ENTRIES_MAX as u64 + 10));
        assert_eq!(c.entries.len(), LOG_CACHE_ENTRIES_MAX);
        assert_eq!(c.first_index(), Some(10));
        let mut c = EntryCache::default();
        let big = LOG_CACHE_BYTES_MAX / 3 + 1;
        c.extend((0..5).map(|i| (Entry::new_blank(lid(i)), big)).collect());
        assert_eq!(c.first_index(), Some(3));
        assert!(c.bytes <= LOG_CACHE_BYTES_MAX);
        // One entry over the bound on its own still stays: it is the log's last.
        c.extend(vec![(Entry::new_blank(lid(5)), LOG_CACHE_BYTES_MAX * 2)]);
        assert_eq!(indexes(c.get(5, 6)), Some(vec![5]));
    }
}
