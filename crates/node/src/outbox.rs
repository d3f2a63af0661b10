//! A transaction that also writes messages (the outbox pattern without an outbox): keys, stream
//! partitions and queues of one range change together or not at all. The node resolves each
//! message to its partition or queue, checks that all of them and every key live in the same
//! range (a stream or queue created with `colocate` sits in the key-value range of its key),
//! and the range leader proposes one [`OutboxEntry`]; the state machine does the rest
//! (`meridian_state::outbox`).

use crate::client_api::WriteOptions;
use crate::messages::{GroupOp, GroupReply};
use crate::node::Node;
use meridian_consensus::RaftGroup;
use meridian_state::outbox::{
    MessageOp, OUTBOX_MESSAGE_OPS_MAX, OutboxEntry, OutboxResponse, OutboxTxn,
};
use meridian_state::queue::SendMessage;
use meridian_state::stream::{NewMessage, partition_for_key};
use meridian_state::{Command, CommandResult, TxnRequest};
use meridian_types::{ErrorCode, GroupId, MeridianError, RangeId, RequestId};

/// One message written with a transaction.
#[derive(Clone, Debug)]
pub enum OutboxMessage {
    /// To a stream: to `partition`, else the partition of the message's key, else partition 0.
    Publish {
        stream: String,
        partition: Option<u32>,
        message: NewMessage,
    },
    Send {
        queue: String,
        message: SendMessage,
    },
}

/// A key-value transaction and the messages each branch writes.
#[derive(Clone, Debug, Default)]
pub struct OutboxRequest {
    pub txn: TxnRequest,
    /// Written when the compares hold.
    pub success: Vec<OutboxMessage>,
    /// Written when they do not.
    pub failure: Vec<OutboxMessage>,
}

impl Node {
    /// Runs a transaction with messages: checks it, finds its one range, and has that range's
    /// leader apply it.
    pub(crate) async fn outbox_txn(
        &self,
        req: OutboxRequest,
        opts: WriteOptions,
    ) -> Result<OutboxResponse, MeridianError> {
        let n = req.success.len() + req.failure.len();
        if n > OUTBOX_MESSAGE_OPS_MAX {
            return Err(MeridianError::new(
                ErrorCode::TooManyTxnOps,
                format!("a transaction carries at most {OUTBOX_MESSAGE_OPS_MAX} messages, not {n}"),
            ));
        }
        self.check_txn(&req.txn, n)?;
        let mut range = self
            .txn_keys_range(&req.txn)?
            .map(|r| (r, "its keys".to_string()));
        let mut resolve =
            async |msgs: Vec<OutboxMessage>| -> Result<Vec<MessageOp>, MeridianError> {
                let mut ops = Vec::with_capacity(msgs.len());
                for m in msgs {
                    let (op, at, what) = self.resolve_message(m).await?;
                    match &range {
                        Some((r, _)) if *r == at => {}
                        Some((r, first)) => {
                            return Err(MeridianError::new(
                                ErrorCode::CrossRangeTxn,
                                format!(
                                    "a transaction must stay within one range: {first} live in \
                                 range {r}, {what} in range {at}; create the stream or queue \
                                 with `colocate` set to one of the transaction's keys"
                                ),
                            ));
                        }
                        None => range = Some((at, what)),
                    }
                    ops.push(op);
                }
                Ok(ops)
            };
        let success = resolve(req.success).await?;
        let failure = resolve(req.failure).await?;
        let range = match range {
            Some((r, _)) => r,
            None => {
                let map = self.map_or_err()?;
                *map.ranges
                    .keys()
                    .next()
                    .ok_or_else(|| MeridianError::invalid("no range"))?
            }
        };
        self.check_leases(&req.txn.success).await?;
        self.check_leases(&req.txn.failure).await?;
        let op = GroupOp::Outbox {
            txn: OutboxTxn {
                txn: req.txn,
                success,
                failure,
            },
            request_id: crate::kv::new_request_id(opts),
            seen_revision: 0,
        };
        match self.execute(range.group(), op).await? {
            GroupReply::Outbox(r) => Ok(r),
            other => Err(MeridianError::internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// The op a message becomes, the range it lives in, and how to name it in an error.
    async fn resolve_message(
        &self,
        m: OutboxMessage,
    ) -> Result<(MessageOp, RangeId, String), MeridianError> {
        match m {
            OutboxMessage::Publish {
                stream,
                partition,
                message,
            } => {
                let streams = self.streams();
                let spec = streams.spec(&stream).await?;
                streams.check_messages(std::slice::from_ref(&message))?;
                let p = match (partition, &message.key) {
                    (Some(p), _) => p,
                    (None, Some(k)) => partition_for_key(k, spec.partitions),
                    (None, None) => 0,
                };
                let at = *spec.ranges.get(p as usize).ok_or_else(|| {
                    MeridianError::invalid(format!(
                        "stream {stream} has partitions 0 to {}",
                        spec.partitions.saturating_sub(1)
                    ))
                })?;
                let what = format!("stream partition {stream}/{p}");
                let op = MessageOp::Publish {
                    stream,
                    partition: p,
                    messages: vec![message],
                };
                Ok((op, at, what))
            }
            OutboxMessage::Send { queue, message } => {
                self.check_queue_bodies(std::slice::from_ref(&message))?;
                message.validate()?;
                let spec = self.queue_spec(&queue).await?;
                let what = format!("queue {queue}");
                let op = MessageOp::Send {
                    queue,
                    messages: vec![message],
                };
                Ok((op, spec.range, what))
            }
        }
    }

    /// On the range leader: makes sure each partition written is created here, stamps the
    /// entry with this leader's clocks and proposes it.
    pub(crate) async fn outbox_local(
        &self,
        g: &RaftGroup,
        group: GroupId,
        txn: OutboxTxn,
        request_id: RequestId,
        seen_revision: u64,
    ) -> Result<GroupReply, MeridianError> {
        if !g.is_leader() {
            return Err(MeridianError::not_leader(group, g.leader()));
        }
        let mut sends = false;
        for op in txn.message_ops() {
            match op {
                MessageOp::Publish {
                    stream, partition, ..
                } => self.ensure_partition(g, group, stream, *partition).await?,
                MessageOp::Send { .. } => sends = true,
            }
        }
        self.inner.hlc.observe(seen_revision);
        let entry = OutboxEntry {
            request_id: Some(request_id),
            hlc: self.inner.hlc.now(),
            now_ms: self.inner.cfg.clock.now_ms(),
            txn,
        };
        let res = g.propose(Command::Outbox(entry)).await;
        if sends {
            self.inner.queues.wake(group);
        }
        match res? {
            CommandResult::Outbox(r) => r.map(GroupReply::Outbox),
            other => Err(MeridianError::internal(format!(
                "unexpected result {other:?}"
            ))),
        }
    }
}
