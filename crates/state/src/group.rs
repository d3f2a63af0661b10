//! The state of one Raft group: a range's key-value store or the meta group's cluster map, and
//! the results of recent request ids so a retried write is applied once.

use crate::dedup::DedupTable;
use crate::kv::KvState;
use crate::kv_types::{KvEntry, KvResult};
use crate::lease::{LeaseCommand, LeaseTable};
use crate::meta::{ClusterMap, MetaCommand};
use crate::outbox::{OutboxEntry, OutboxResponse};
use crate::queue::{QueueEntry, QueueResult, QueueSet};
use crate::stream::{StreamEntry, StreamResult, StreamsState};
use meridian_types::MeridianError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A command in a group's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Kv(KvEntry),
    Meta(MetaCommand),
    /// A command to a stream partition hosted by this range.
    Stream(StreamEntry),
    /// A change to the lease table (meta group).
    Lease(LeaseCommand),
    /// Stream commands proposed together by a leader's batcher, applied in order, each as if
    /// alone (its own request id, its own result).
    StreamBatch(Vec<StreamEntry>),
    /// A work-queue command (see [`crate::queue`]).
    Queue(QueueEntry),
    /// Key-value commands proposed together by a leader's batcher, applied in order, each as
    /// if alone (its own request id, revision and result).
    KvBatch(Vec<KvEntry>),
    /// A key-value transaction that also publishes or sends messages held by this range, all
    /// or nothing (see [`crate::outbox`]).
    Outbox(OutboxEntry),
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Kv(e) => write!(
                f,
                "kv(hlc={}, request_id={:?})",
                e.hlc,
                e.request_id.map(|r| r.0)
            ),
            Command::Meta(m) => write!(
                f,
                "meta({})",
                match m {
                    MetaCommand::Init(_) => "init",
                    MetaCommand::UpsertNode(_) => "upsert_node",
                    MetaCommand::SetNodeState { .. } => "set_node_state",
                    MetaCommand::SetPlacement(_) => "set_placement",
                    MetaCommand::DeletePlacement { .. } => "delete_placement",
                    MetaCommand::SetRangeMembers { .. } => "set_range_members",
                    MetaCommand::SetMetaReplicas { .. } => "set_meta_replicas",
                    MetaCommand::AddSystemRanges { .. } => "add_system_ranges",
                    MetaCommand::CreateStream(_) => "create_stream",
                    MetaCommand::DeleteStream { .. } => "delete_stream",
                    MetaCommand::CreateQueue(_) => "create_queue",
                    MetaCommand::DeleteQueue { .. } => "delete_queue",
                    MetaCommand::DropUnclaimedRanges { .. } => "drop_unclaimed_ranges",
                }
            ),
            Command::Stream(e) => write!(
                f,
                "stream(now_ms={}, request_id={:?})",
                e.now_ms,
                e.request_id.map(|r| r.0)
            ),
            Command::Lease(l) => write!(f, "lease({l:?})"),
            Command::StreamBatch(v) => write!(f, "stream_batch({})", v.len()),
            Command::KvBatch(v) => write!(f, "kv_batch({})", v.len()),
            Command::Queue(q) => write!(f, "queue({}, now_ms={})", q.cmd.kind(), q.now_ms),
            Command::Outbox(e) => write!(
                f,
                "outbox(hlc={}, messages={}, request_id={:?})",
                e.hlc,
                e.txn.success.len() + e.txn.failure.len(),
                e.request_id.map(|r| r.0)
            ),
        }
    }
}

/// The outcome of applying a [`Command`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Kv(Result<KvResult, MeridianError>),
    Meta(Result<(), MeridianError>),
    Stream(Result<StreamResult, MeridianError>),
    Lease(Result<(), MeridianError>),
    /// One result per command of a [`Command::StreamBatch`], in order.
    StreamBatch(Vec<Result<StreamResult, MeridianError>>),
    /// Entries with no command (Raft's blank and membership entries).
    None,
    Queue(Result<QueueResult, MeridianError>),
    Outbox(Result<OutboxResponse, MeridianError>),
    /// One result per command of a [`Command::KvBatch`], in order.
    KvBatch(Vec<Result<KvResult, MeridianError>>),
}

/// Everything a group's state machine holds, pure and serializable (its snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub kv: KvState,
    pub meta: ClusterMap,
    dedup: DedupTable<Result<KvResult, MeridianError>>,
    /// Stream partitions hosted by this range.
    #[serde(default)]
    pub streams: StreamsState,
    #[serde(default)]
    stream_dedup: DedupTable<Result<StreamResult, MeridianError>>,
    /// The lease table (used in the meta group only).
    #[serde(default)]
    pub leases: LeaseTable,
    /// The work queues this range holds.
    #[serde(default)]
    pub queues: QueueSet,
    #[serde(default)]
    pub(crate) outbox_dedup: DedupTable<Result<OutboxResponse, MeridianError>>,
}

impl GroupState {
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        match cmd {
            Command::Kv(entry) => CommandResult::Kv(self.apply_kv(entry)),
            Command::KvBatch(entries) => {
                CommandResult::KvBatch(entries.iter().map(|e| self.apply_kv(e)).collect())
            }
            Command::Meta(m) => CommandResult::Meta(self.meta.apply(m)),
            Command::Stream(entry) => CommandResult::Stream(self.apply_stream(entry)),
            Command::StreamBatch(entries) => {
                CommandResult::StreamBatch(entries.iter().map(|e| self.apply_stream(e)).collect())
            }
            Command::Lease(l) => CommandResult::Lease(self.leases.apply(l)),
            Command::Queue(q) => CommandResult::Queue(self.queues.apply(q)),
            Command::Outbox(e) => {
                if let Some(done) = e.request_id.and_then(|id| self.outbox_dedup.get(id)) {
                    return CommandResult::Outbox(done.clone());
                }
                let result =
                    crate::outbox::apply(&mut self.kv, &mut self.streams, &mut self.queues, e);
                if let Some(id) = e.request_id {
                    self.outbox_dedup.insert(id, result.clone());
                }
                CommandResult::Outbox(result)
            }
        }
    }

    /// [`GroupState::apply`] for an entry nobody waits on (every entry on a follower): the same
    /// state, without a copy of each write's result for the answer.
    pub fn apply_unanswered(&mut self, cmd: &Command) {
        match cmd {
            Command::Kv(entry) => self.apply_kv_unanswered(entry),
            Command::KvBatch(entries) => entries.iter().for_each(|e| self.apply_kv_unanswered(e)),
            _ => {
                self.apply(cmd);
            }
        }
    }

    fn apply_kv_unanswered(&mut self, entry: &KvEntry) {
        match entry.request_id {
            Some(id) if self.dedup.get(id).is_some() => {}
            Some(id) => {
                let result = self.kv.apply(entry);
                self.dedup.insert(id, result);
            }
            // The result (a failed write's error included) is only ever an answer.
            None => {
                let _ = self.kv.apply(entry);
            }
        }
    }

    fn apply_kv(&mut self, entry: &KvEntry) -> Result<KvResult, MeridianError> {
        if let Some(done) = entry.request_id.and_then(|id| self.dedup.get(id)) {
            return done.clone();
        }
        let result = self.kv.apply(entry);
        if let Some(id) = entry.request_id {
            self.dedup.insert(id, result.clone());
        }
        result
    }

    fn apply_stream(&mut self, entry: &StreamEntry) -> Result<StreamResult, MeridianError> {
        if let Some(done) = entry.request_id.and_then(|id| self.stream_dedup.get(id)) {
            return done.clone();
        }
        let result = self.streams.apply(entry);
        if let Some(id) = entry.request_id {
            self.stream_dedup.insert(id, result.clone());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_types::{KvCommand, PutRequest, RequestOp, TxnRequest};
    use meridian_types::RequestId;

    fn put(id: u128, k: &str, hlc: u64) -> KvEntry {
        KvEntry {
            request_id: Some(RequestId(id)),
            hlc,
            cmd: KvCommand::Txn(TxnRequest {
                compare: vec![],
                success: vec![RequestOp::Put(PutRequest {
                    key: k.as_bytes().to_vec(),
                    value: b"v".to_vec(),
                    prev_kv: false,
                    lease: 0,
                    ignore_lease: false,
                    ignore_value: false,
                })],
                failure: vec![],
            }),
        }
    }

    fn revisions(r: &CommandResult) -> Vec<Option<u64>> {
        let CommandResult::KvBatch(v) = r else {
            panic!("{r:?}")
        };
        v.iter()
            .map(|r| match r {
                Ok(KvResult::Txn(t)) => Some(t.revision),
                _ => None,
            })
            .collect()
    }

    /// A batch applies each entry as if alone: its own revision, in order, even with an older
    /// clock reading than an earlier entry; a request id seen before (in the batch or before
    /// it) answers the first result and writes nothing.
    #[test]
    fn a_kv_batch_is_its_entries_in_order() {
        let mut g = GroupState::default();
        let alone = g.apply(&Command::Kv(put(1, "a", 10)));
        let CommandResult::Kv(Ok(KvResult::Txn(first))) = alone else {
            panic!("{alone:?}")
        };
        let batch = vec![
            put(2, "b", 20),
            put(3, "c", 15),
            put(2, "b", 20),
            put(1, "a", 10),
        ];
        let r = g.apply(&Command::KvBatch(batch));
        assert_eq!(
            revisions(&r),
            vec![Some(20), Some(21), Some(20), Some(first.revision)]
        );
        assert_eq!(g.kv.revision(), 21);
        // A bad entry fails alone.
        let r = g.apply(&Command::KvBatch(vec![put(4, "", 30), put(5, "d", 30)]));
        assert_eq!(revisions(&r), vec![None, Some(30)]);
    }

    /// A replica that answers nobody ends in the same state, byte for byte, as one that does:
    /// the same revisions, and the same results remembered for retried request ids.
    #[test]
    fn applying_unanswered_leaves_the_same_state() {
        let cmds = vec![
            Command::Kv(put(1, "a", 10)),
            Command::KvBatch(vec![
                put(2, "b", 20),
                put(3, "c", 15),
                put(2, "b", 20),
                put(1, "a", 10),
                put(4, "", 30),
            ]),
            Command::Kv(put(3, "c", 40)),
            Command::KvBatch(vec![put(5, "d", 30), put(6, "a", 50)]),
        ];
        let (mut answered, mut quiet) = (GroupState::default(), GroupState::default());
        for c in &cmds {
            answered.apply(c);
            quiet.apply_unanswered(c);
        }
        assert_eq!(answered, quiet);
        assert_eq!(
            postcard::to_allocvec(&answered).unwrap(),
            postcard::to_allocvec(&quiet).unwrap()
        );
        // The remembered result of a retried id is the one the leader answered.
        let retry = Command::Kv(put(2, "b", 99));
        assert_eq!(answered.apply(&retry), quiet.apply(&retry));
    }
}
