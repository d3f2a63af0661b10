//! The stored versions of one key: the unit the MVCC map is made of.
//!
//! A key's history is a short vector ordered by revision, oldest first, so the latest version is
//! the last element (an O(1) look-up for the common latest read) and a read at an old revision
//! is a binary search. A delete is stored as a tombstone (`live: None`) because reads at a
//! revision before the delete must still see the value.

use crate::kv_types::KeyValue;
use serde::{Deserialize, Serialize};

/// The content of a live version; the key itself is stored once, as the map key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Live {
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub version: u64,
    pub lease: i64,
}

/// One version of a key: what a put or delete at `mod_revision` left behind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Version {
    pub mod_revision: u64,
    /// `None` is a tombstone: the key was deleted at `mod_revision`.
    pub live: Option<Live>,
}

/// All versions of one key a read may still see, oldest first, revisions strictly increasing.
///
/// Invariant kept by the writers: a tombstone always follows a live version (deleting an absent
/// key writes nothing), so a history is never just tombstones unless compaction trimmed it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct KeyHistory {
    versions: Vec<Version>,
}

impl Live {
    /// The etcd view of this version. `with_value` false serves `keys_only` without copying
    /// the value.
    pub fn to_kv(&self, key: &[u8], mod_revision: u64, with_value: bool) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: if with_value {
                self.value.clone()
            } else {
                Vec::new()
            },
            create_revision: self.create_revision,
            mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

impl KeyHistory {
    /// Every version kept, oldest first.
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// The live version as of the newest write, with its mod revision.
    pub fn latest_live(&self) -> Option<(u64, &Live)> {
        let last = self.versions.last()?;
        last.live.as_ref().map(|l| (last.mod_revision, l))
    }

    /// The live version a read at revision `at` sees, with its mod revision.
    pub fn live_at(&self, at: u64) -> Option<(u64, &Live)> {
        // Fast path: most reads are at the latest revision.
        if let Some(last) = self.versions.last()
            && last.mod_revision <= at
        {
            return last.live.as_ref().map(|l| (last.mod_revision, l));
        }
        let idx = self.versions.partition_point(|v| v.mod_revision <= at);
        let v = self.versions.get(idx.checked_sub(1)?)?;
        v.live.as_ref().map(|l| (v.mod_revision, l))
    }

    /// Writes `value` at `rev`. A key that is absent or deleted is (re)created with version 1;
    /// otherwise the version counts on. A second write at the same revision (the same txn)
    /// replaces the first, as the sub-revision order of etcd would make the last one visible.
    pub fn put(&mut self, rev: u64, value: Vec<u8>, lease: i64) {
        let (create_revision, version) = match self.latest_live() {
            Some((_, l)) => (l.create_revision, l.version.saturating_add(1)),
            None => (rev, 1),
        };
        let record = Version {
            mod_revision: rev,
            live: Some(Live {
                value,
                create_revision,
                version,
                lease,
            }),
        };
        match self.versions.last_mut() {
            Some(last) if last.mod_revision == rev => *last = record,
            _ => self.versions.push(record),
        }
    }

    /// Deletes the key at `rev`; the caller only calls it on a live key. A version written
    /// earlier in the same txn is dropped first, so the history keeps one entry per revision
    /// and a key created and deleted by one txn leaves nothing behind.
    pub fn delete(&mut self, rev: u64) {
        if self.versions.last().is_some_and(|v| v.mod_revision == rev) {
            self.versions.pop();
        }
        if self.latest_live().is_some() {
            self.versions.push(Version {
                mod_revision: rev,
                live: None,
            });
        }
    }

    /// Undoes every write at `rev` or later: the rollback of a failed txn, whose writes are
    /// all at its own revision, newer than anything it found.
    pub fn truncate_from(&mut self, rev: u64) {
        let keep = self.versions.partition_point(|v| v.mod_revision < rev);
        self.versions.truncate(keep);
    }

    /// Drops the versions no read at `at` or later can see: everything before the latest
    /// version at or before `at`, and that version too if it is a tombstone. Returns whether
    /// anything is left.
    pub fn compact(&mut self, at: u64) -> bool {
        let idx = self.versions.partition_point(|v| v.mod_revision <= at);
        let Some(latest) = idx.checked_sub(1) else {
            return true;
        };
        let keep_from = if self.versions[latest].live.is_some() {
            latest
        } else {
            idx
        };
        self.versions.drain(..keep_from);
        // A hot key may have had many versions; give the slots back once most are gone.
        if self.versions.capacity() > 2 * self.versions.len() + 4 {
            self.versions.shrink_to_fit();
        }
        !self.versions.is_empty()
    }
}
