//! The MVCC key-value state machine of one range (etcd's revision model).
//!
//! Every write-bearing command gets one new revision, `max(revision + 1, hlc)`; each key keeps
//! the versions a read at a not-yet-compacted revision may see (see [`history`]). Reads, writes
//! and compaction live here; transaction execution and its rollback live in [`txn`].

mod events;
mod history;
mod leases;
mod txn;

pub use events::{EventBatch, EventKind, WatchEvent};

#[cfg(test)]
mod tests;

use crate::kv_types::*;
use history::KeyHistory;
use meridian_types::{ErrorCode, MeridianError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;

/// The MVCC store of one range. See the crate docs for the purity rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    revision: u64,
    compact_revision: u64,
    /// Every key with a version some allowed read may still see. A BTreeMap, not a HashMap:
    /// scans need key order, and the serialized snapshot must be the same on every replica.
    keys: BTreeMap<Vec<u8>, KeyHistory>,
    /// Leases this range has revoked ([`KvCommand::RevokeLease`]): a put with one is refused,
    /// so a put racing a revoke never leaves a key attached to a dead lease.
    #[serde(default)]
    revoked_leases: std::collections::BTreeSet<i64>,
}

/// The bounds of an etcd key range, in the form `BTreeMap::range` takes. `None` means the
/// range is empty (`range_end <= key`), which `BTreeMap::range` would reject with a panic.
type KeyBounds<'a> = Option<(Bound<&'a [u8]>, Bound<&'a [u8]>)>;

/// etcd's key range rule: empty `range_end` is the single key, `[0]` is every key `>= key`
/// (so `key == [0]` with it is every key), otherwise `[key, range_end)`.
fn key_bounds<'a>(key: &'a [u8], range_end: &'a [u8]) -> KeyBounds<'a> {
    if range_end.is_empty() {
        Some((Bound::Included(key), Bound::Included(key)))
    } else if range_end == [0] {
        Some((Bound::Included(key), Bound::Unbounded))
    } else if range_end > key {
        Some((Bound::Included(key), Bound::Excluded(range_end)))
    } else {
        None
    }
}

/// etcd rejects an empty key in a put, delete or read ("key is not provided").
fn require_key(key: &[u8]) -> Result<(), MeridianError> {
    if key.is_empty() {
        return Err(MeridianError::invalid("key is not provided"));
    }
    Ok(())
}

fn compacted_error(rev: u64, compact_revision: u64) -> MeridianError {
    MeridianError::new(
        ErrorCode::Compacted,
        format!("required revision {rev} has been compacted (compact revision {compact_revision})"),
    )
}

fn future_error(rev: u64, current: u64) -> MeridianError {
    MeridianError::new(
        ErrorCode::FutureRevision,
        format!("required revision {rev} is a future revision (current revision {current})"),
    )
}

impl KvState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The revision of the last write applied (0 before any write).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Versions older than this revision may be gone (0 before any compaction).
    pub fn compact_revision(&self) -> u64 {
        self.compact_revision
    }

    /// Applies one log entry. Errors leave the state unchanged.
    pub fn apply(&mut self, entry: &KvEntry) -> Result<KvResult, MeridianError> {
        match &entry.cmd {
            KvCommand::Txn(req) => self.apply_txn(req, entry.hlc).map(KvResult::Txn),
            KvCommand::Compact { revision } => {
                self.compact(*revision)?;
                Ok(KvResult::Compact {
                    revision: *revision,
                })
            }
            KvCommand::Advance => {
                self.revision = self.revision.max(entry.hlc);
                Ok(KvResult::Advance {
                    revision: self.revision,
                })
            }
            KvCommand::RevokeLease { lease } => {
                let deleted = self.revoke_lease(*lease, entry.hlc)?;
                Ok(KvResult::RevokeLease {
                    deleted,
                    revision: self.revision,
                })
            }
        }
    }

    /// Serves a read from the state as it is.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MeridianError> {
        self.read_range(req, self.revision)
    }

    /// The entries of `[key, range_end)` in key order, tombstoned keys included.
    fn scan<'a>(
        &'a self,
        key: &'a [u8],
        range_end: &'a [u8],
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a KeyHistory)> + 'a {
        key_bounds(key, range_end)
            .map(|b| self.keys.range::<[u8], _>(b))
            .into_iter()
            .flatten()
    }

    /// Checks a read's revision against `current` (the store's revision as the reader sees it,
    /// which inside a writing txn is the txn's own) and turns 0 into `current`.
    fn read_revision(&self, rev: u64, current: u64) -> Result<u64, MeridianError> {
        if rev == 0 {
            return Ok(current);
        }
        if rev > current {
            return Err(future_error(rev, current));
        }
        if rev < self.compact_revision {
            return Err(compacted_error(rev, self.compact_revision));
        }
        Ok(rev)
    }

    /// A read as if the store's revision were `current`; shared by [`KvState::range`] and the
    /// range ops of a txn, so both follow the same rules.
    fn read_range(&self, req: &RangeRequest, current: u64) -> Result<RangeResponse, MeridianError> {
        require_key(&req.key)?;
        let at = self.read_revision(req.revision, current)?;
        let mut resp = RangeResponse {
            revision: current,
            ..RangeResponse::default()
        };
        for (key, hist) in self.scan(&req.key, &req.range_end) {
            let Some((mod_revision, live)) = hist.live_at(at) else {
                continue;
            };
            resp.count += 1;
            // As etcd: a count-only read returns no kvs, and so never reports `more`.
            if req.count_only {
                continue;
            }
            if req.limit != 0 && resp.kvs.len() as u64 >= req.limit {
                resp.more = true;
                continue;
            }
            resp.kvs.push(live.to_kv(key, mod_revision, !req.keys_only));
        }
        Ok(resp)
    }

    /// Drops what no read at `revision` or later can see, then refuses reads below it.
    fn compact(&mut self, revision: u64) -> Result<(), MeridianError> {
        if revision <= self.compact_revision {
            return Err(compacted_error(revision, self.compact_revision));
        }
        if revision > self.revision {
            return Err(future_error(revision, self.revision));
        }
        self.keys.retain(|_, hist| hist.compact(revision));
        self.compact_revision = revision;
        Ok(())
    }
}
