//! The change feed of a range, read back from its MVCC history: what a watch sends.
//!
//! Every write leaves a version in its key's history (a tombstone for a delete), so the events
//! after a revision are the versions newer than it, as long as compaction has not dropped them.
//! A watch therefore needs no separate event log: it reads the applied state of whichever
//! replica serves it, and a watcher that resumes from a revision gets exactly the events it has
//! not seen (the revision is the cursor; nothing is repeated, nothing skipped).

use super::KvState;
use super::history::KeyHistory;
use crate::kv_types::KeyValue;
use serde::{Deserialize, Serialize};

/// Whether an event is a put or a delete (etcd's `mvccpb.Event.EventType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key (etcd's `mvccpb.Event`). A delete's `kv` has only the key and the
/// delete's revision as `mod_revision` (etcd's rule).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The key's version before this change, when asked for and still in the history.
    pub prev_kv: Option<KeyValue>,
}

/// What [`KvState::events_after`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    /// In revision order; the events of one revision (one txn) in key order.
    pub events: Vec<WatchEvent>,
    /// Every event of the watched keys at or below this revision is in `events` or was before
    /// `after`: the cursor to ask from next time.
    pub cursor: u64,
}

impl KeyHistory {
    /// The events of this key with a revision in `(after, upto]`, oldest first.
    fn events_in(
        &self,
        key: &[u8],
        after: u64,
        upto: u64,
        prev_kv: bool,
        out: &mut Vec<WatchEvent>,
    ) {
        let versions = self.versions();
        let from = versions.partition_point(|v| v.mod_revision <= after);
        for (i, v) in versions.iter().enumerate().skip(from) {
            if v.mod_revision > upto {
                break;
            }
            let prev = if prev_kv {
                i.checked_sub(1)
                    .and_then(|j| versions.get(j))
                    .and_then(|p| p.live.as_ref().map(|l| l.to_kv(key, p.mod_revision, true)))
            } else {
                None
            };
            let (kind, kv) = match &v.live {
                Some(l) => (EventKind::Put, l.to_kv(key, v.mod_revision, true)),
                None => (
                    EventKind::Delete,
                    KeyValue {
                        key: key.to_vec(),
                        mod_revision: v.mod_revision,
                        ..KeyValue::default()
                    },
                ),
            };
            out.push(WatchEvent {
                kind,
                kv,
                prev_kv: prev,
            });
        }
    }
}

impl KvState {
    /// The events of the keys in `[key, range_end)` (etcd's range rule) with a revision above
    /// `after`, oldest first, at most about `max_events` of them (never splitting a revision).
    ///
    /// `Err(compact_revision)` when compaction may have dropped some of them: a revision at or
    /// below the compact revision can no longer be replayed.
    pub fn events_after(
        &self,
        key: &[u8],
        range_end: &[u8],
        after: u64,
        prev_kv: bool,
        max_events: usize,
    ) -> Result<EventBatch, u64> {
        if self.compact_revision > 0 && after < self.compact_revision {
            return Err(self.compact_revision);
        }
        let current = self.revision;
        if after >= current {
            return Ok(EventBatch {
                events: Vec::new(),
                cursor: current.max(after),
            });
        }
        let mut events = Vec::new();
        for (k, hist) in self.scan(key, range_end) {
            hist.events_in(k, after, current, prev_kv, &mut events);
        }
        // Stable: within a revision the scan's key order stays.
        events.sort_by_key(|e| e.kv.mod_revision);
        let mut cursor = current;
        if events.len() > max_events.max(1) {
            let last = events[max_events.max(1) - 1].kv.mod_revision;
            events.retain(|e| e.kv.mod_revision <= last);
            cursor = last;
        }
        Ok(EventBatch { events, cursor })
    }
}
