//! One atomic write across keys and messages of the same range: a key-value transaction whose
//! chosen branch also publishes to stream partitions and sends to queues that live in that range
//! (the outbox pattern without an outbox table).
//!
//! All or nothing: the message ops of the chosen branch are checked against the state first
//! (the partition or queue is here, the queue has room, each message is well formed), then the
//! key-value part runs (which rolls itself back on error), and only then are the messages
//! appended, which cannot fail once checked. An error changes nothing.

use crate::kv::KvState;
use crate::kv_types::{KvCommand, KvEntry, KvResult, TxnRequest, TxnResponse};
use crate::queue::{QueueCommand, QueueEntry, QueueResult, QueueSet, SendMessage, SendOutcome};
use crate::stream::{
    NewMessage, PublishAck, StreamCommand, StreamEntry, StreamResult, StreamsState,
};
use meridian_types::{ErrorCode, MeridianError, RequestId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most message ops one outbox transaction carries (both branches together).
pub const OUTBOX_MESSAGE_OPS_MAX: usize = 64;

/// A message written with a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageOp {
    Publish {
        stream: String,
        partition: u32,
        messages: Vec<NewMessage>,
    },
    Send {
        queue: String,
        messages: Vec<SendMessage>,
    },
}

/// What a [`MessageOp`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageOpResult {
    Published {
        stream: String,
        partition: u32,
        acks: Vec<PublishAck>,
    },
    Sent {
        queue: String,
        outcomes: Vec<SendOutcome>,
    },
}

/// A key-value transaction and the messages each branch writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxTxn {
    pub txn: TxnRequest,
    /// Written when the compares hold.
    pub success: Vec<MessageOp>,
    /// Written when they do not.
    pub failure: Vec<MessageOp>,
}

impl OutboxTxn {
    pub fn message_ops(&self) -> impl Iterator<Item = &MessageOp> {
        self.success.iter().chain(self.failure.iter())
    }
}

/// An [`OutboxTxn`] in a range's log, stamped by the leader with its hybrid clock (the
/// revision) and its wall clock (message times, queue deadlines).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub request_id: Option<RequestId>,
    pub hlc: u64,
    pub now_ms: u64,
    pub txn: OutboxTxn,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxResponse {
    pub txn: TxnResponse,
    /// One per message op of the branch that ran, in order.
    pub messages: Vec<MessageOpResult>,
}

/// Checks the message ops that will run, without changing anything.
fn check(
    streams: &StreamsState,
    queues: &QueueSet,
    ops: &[MessageOp],
) -> Result<(), MeridianError> {
    let mut queued: BTreeMap<&str, usize> = BTreeMap::new();
    for op in ops {
        match op {
            MessageOp::Publish {
                stream,
                partition,
                messages,
            } => {
                if streams.partition(stream, *partition).is_none() {
                    return Err(MeridianError::new(
                        ErrorCode::RangeMoved,
                        format!("partition {stream}/{partition} is not in this range"),
                    ));
                }
                if messages.is_empty() {
                    return Err(MeridianError::invalid(
                        "a publish carries at least one message",
                    ));
                }
            }
            MessageOp::Send { queue, messages } => {
                let before = queued.entry(queue).or_default();
                queues.check_send(queue, *before, messages)?;
                *before += messages.len();
            }
        }
    }
    Ok(())
}

/// Applies an outbox entry to a range's parts. An error leaves all of them unchanged.
pub fn apply(
    kv: &mut KvState,
    streams: &mut StreamsState,
    queues: &mut QueueSet,
    e: &OutboxEntry,
) -> Result<OutboxResponse, MeridianError> {
    let n = e.txn.success.len() + e.txn.failure.len();
    if n > OUTBOX_MESSAGE_OPS_MAX {
        return Err(MeridianError::invalid(format!(
            "a transaction carries at most {OUTBOX_MESSAGE_OPS_MAX} message operations, not {n}"
        )));
    }
    let holds = e.txn.txn.compare.iter().all(|c| kv.compare_holds(c));
    let ops = if holds {
        &e.txn.success
    } else {
        &e.txn.failure
    };
    check(streams, queues, ops)?;
    let kv_entry = KvEntry {
        request_id: None,
        hlc: e.hlc,
        cmd: KvCommand::Txn(e.txn.txn.clone()),
    };
    let txn = match kv.apply(&kv_entry)? {
        KvResult::Txn(t) => t,
        other => return Err(MeridianError::internal(format!("unexpected {other:?}"))),
    };
    debug_assert_eq!(txn.succeeded, holds);
    let mut messages = Vec::with_capacity(ops.len());
    for op in ops {
        // Checked above: neither can fail now.
        messages.push(match op {
            MessageOp::Publish {
                stream,
                partition,
                messages,
            } => {
                let entry = StreamEntry {
                    now_ms: e.now_ms,
                    request_id: None,
                    cmd: StreamCommand::Publish {
                        stream: stream.clone(),
                        partition: *partition,
                        messages: messages.clone(),
                    },
                };
                match streams.apply(&entry) {
                    Ok(StreamResult::Published(acks)) => MessageOpResult::Published {
                        stream: stream.clone(),
                        partition: *partition,
                        acks,
                    },
                    other => unreachable_after_check(other)?,
                }
            }
            MessageOp::Send { queue, messages } => {
                let entry = QueueEntry {
                    now_ms: e.now_ms,
                    cmd: QueueCommand::Send {
                        queue: queue.clone(),
                        messages: messages.clone(),
                    },
                };
                match queues.apply(&entry) {
                    Ok(QueueResult::Sent(outcomes)) => MessageOpResult::Sent {
                        queue: queue.clone(),
                        outcomes,
                    },
                    other => unreachable_after_check(other)?,
                }
            }
        });
    }
    Ok(OutboxResponse { txn, messages })
}

fn unreachable_after_check<T: std::fmt::Debug, R>(r: T) -> Result<R, MeridianError> {
    Err(MeridianError::internal(format!(
        "a checked message op failed: {r:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{Command, CommandResult, GroupState};
    use crate::kv_types::{Compare, CompareOp, CompareTarget, PutRequest, RangeRequest, RequestOp};
    use crate::queue::QueueConfig;
    use crate::stream::Retention;
    use proptest::prelude::*;

    /// A range holding stream `s` (partition 0) and queue `q`.
    fn range() -> GroupState {
        let mut g = GroupState::default();
        g.apply(&Command::Stream(StreamEntry {
            now_ms: 1,
            request_id: None,
            cmd: StreamCommand::CreatePartition {
                stream: "s".into(),
                partition: 0,
                uid: 7,
                retention: Retention::default(),
            },
        }));
        g.apply(&Command::Queue(QueueEntry {
            now_ms: 1,
            cmd: QueueCommand::Create {
                name: "q".into(),
                config: QueueConfig::default(),
            },
        }));
        g
    }

    fn put(k: &str, v: &str) -> RequestOp {
        RequestOp::Put(PutRequest {
            key: k.as_bytes().to_vec(),
            value: v.as_bytes().to_vec(),
            prev_kv: false,
            lease: 0,
            ignore_lease: false,
            ignore_value: false,
        })
    }

    fn publish(stream: &str, v: &str) -> MessageOp {
        MessageOp::Publish {
            stream: stream.into(),
            partition: 0,
            messages: vec![NewMessage {
                payload: v.as_bytes().to_vec(),
                ..Default::default()
            }],
        }
    }

    fn send(queue: &str, v: &str) -> MessageOp {
        MessageOp::Send {
            queue: queue.into(),
            messages: vec![SendMessage {
                body: v.as_bytes().to_vec(),
                ..Default::default()
            }],
        }
    }

    fn version_is(k: &str, v: u64) -> Compare {
        Compare {
            key: k.as_bytes().to_vec(),
            range_end: Vec::new(),
            op: CompareOp::Equal,
            target: CompareTarget::Version(v),
        }
    }

    fn outbox(
        g: &mut GroupState,
        id: u128,
        txn: OutboxTxn,
    ) -> Result<OutboxResponse, MeridianError> {
        let e = OutboxEntry {
            request_id: Some(RequestId(id)),
            hlc: 0,
            now_ms: 10,
            txn,
        };
        match g.apply(&Command::Outbox(e)) {
            CommandResult::Outbox(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn stream_len(g: &GroupState) -> u64 {
        g.streams.partition("s", 0).unwrap().end_offset()
    }

    fn queue_len(g: &GroupState) -> u64 {
        g.queues.get("q").unwrap().stats(10).ready
    }

    fn value(g: &GroupState, k: &str) -> Option<Vec<u8>> {
        let r =
            g.kv.range(&RangeRequest {
                key: k.as_bytes().to_vec(),
                ..Default::default()
            })
            .unwrap();
        r.kvs.first().map(|kv| kv.value.clone())
    }

    #[test]
    fn keys_and_messages_are_written_together_once() {
        let mut g = range();
        let txn = OutboxTxn {
            txn: TxnRequest {
                compare: vec![version_is("order/7", 0)],
                success: vec![put("order/7", "paid")],
                failure: vec![],
            },
            success: vec![publish("s", "order 7 paid"), send("q", "ship 7")],
            failure: vec![send("q", "order 7 seen twice")],
        };
        let r = outbox(&mut g, 1, txn.clone()).unwrap();
        assert!(r.txn.succeeded);
        assert_eq!(r.messages.len(), 2);
        assert!(
            matches!(&r.messages[0], MessageOpResult::Published { acks, .. } if acks[0].offset == 0)
        );
        assert_eq!((stream_len(&g), queue_len(&g)), (1, 1));
        assert_eq!(value(&g, "order/7").as_deref(), Some(&b"paid"[..]));
        // The same request id again: the first answer, nothing written twice.
        assert_eq!(outbox(&mut g, 1, txn.clone()).unwrap(), r);
        assert_eq!((stream_len(&g), queue_len(&g)), (1, 1));
        // A new request: the compare fails now, so the failure branch's message goes out.
        let r = outbox(&mut g, 2, txn).unwrap();
        assert!(!r.txn.succeeded);
        assert!(matches!(&r.messages[..], [MessageOpResult::Sent { .. }]));
        assert_eq!((stream_len(&g), queue_len(&g)), (1, 2));
    }

    #[test]
    fn a_failing_part_writes_nothing() {
        let base = range();
        let cases = [
            // A queue this range does not hold.
            (
                vec![put("a", "1")],
                vec![publish("s", "m"), send("nope", "m")],
            ),
            // A partition this range does not hold.
            (
                vec![put("a", "1")],
                vec![send("q", "m"), publish("other", "m")],
            ),
            // A bad key-value op (an empty key) after good messages.
            (
                vec![put("a", "1"), put("", "x")],
                vec![publish("s", "m"), send("q", "m")],
            ),
            // An empty send.
            (
                vec![put("a", "1")],
                vec![MessageOp::Send {
                    queue: "q".into(),
                    messages: vec![],
                }],
            ),
        ];
        for (i, (kv, msgs)) in cases.into_iter().enumerate() {
            let mut g = base.clone();
            let txn = OutboxTxn {
                txn: TxnRequest {
                    compare: vec![],
                    success: kv,
                    failure: vec![],
                },
                success: msgs,
                failure: vec![],
            };
            outbox(&mut g, 10 + i as u128, txn).expect_err("must fail");
            let mut unchanged = base.clone();
            // Only the remembered answer differs.
            unchanged.outbox_dedup = g.outbox_dedup.clone();
            assert_eq!(g, unchanged, "case {i} changed the range");
        }
    }

    proptest! {
        /// Any mix of good and bad transactions: each either writes all of its keys and
        /// messages or nothing at all.
        #[test]
        fn all_or_nothing(txns in proptest::collection::vec(
            (any::<bool>(), 0usize..3, proptest::collection::vec((any::<bool>(), any::<bool>()), 0..4)),
            1..20,
        )) {
            let mut g = range();
            for (i, (bad_key, n_keys, msgs)) in txns.into_iter().enumerate() {
                let mut kv: Vec<RequestOp> =
                    (0..n_keys).map(|k| put(&format!("k{i}-{k}"), "v")).collect();
                if bad_key {
                    kv.push(put("", "x"));
                }
                let ops: Vec<MessageOp> = msgs
                    .iter()
                    .map(|&(to_stream, good)| match (to_stream, good) {
                        (true, true) => publish("s", "m"),
                        (true, false) => publish("gone", "m"),
                        (false, true) => send("q", "m"),
                        (false, false) => send("gone", "m"),
                    })
                    .collect();
                let fails = bad_key || msgs.iter().any(|&(_, good)| !good);
                let before = (stream_len(&g), queue_len(&g), g.kv.revision());
                let txn = OutboxTxn {
                    txn: TxnRequest { compare: vec![], success: kv, failure: vec![] },
                    success: ops,
                    failure: vec![],
                };
                let r = outbox(&mut g, i as u128, txn);
                let after = (stream_len(&g), queue_len(&g), g.kv.revision());
                prop_assert_eq!(r.is_err(), fails);
                if fails {
                    prop_assert_eq!(before, after);
                    for k in 0..n_keys {
                        let key = format!("k{i}-{k}");
                        prop_assert!(value(&g, &key).is_none());
                    }
                } else {
                    let pubs = msgs.iter().filter(|m| m.0).count() as u64;
                    let sends = msgs.len() as u64 - pubs;
                    prop_assert_eq!(after.0, before.0 + pubs);
                    prop_assert_eq!(after.1, before.1 + sends);
                    for k in 0..n_keys {
                        let key = format!("k{i}-{k}");
                        prop_assert!(value(&g, &key).is_some());
                    }
                }
            }
        }
    }
}
