//! The shapes of the queue state machine: configuration, messages, commands and results, and
//! the limits on each.

use meridian_types::{ErrorCode, MeridianError, RangeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Longest visibility timeout, delay or extension: 12 hours (SQS's limit).
pub const QUEUE_TIMEOUT_MS_MAX: u64 = 12 * 3600 * 1000;
/// Most deliveries a queue may allow a message before it is dead.
pub const MAX_DELIVERIES_MAX: u32 = 1000;
/// Most messages (ready, in flight and dead) one queue holds.
pub const QUEUE_MESSAGES_MAX: usize = 1_000_000;
/// Most messages one receive returns.
pub const RECEIVE_MAX: u32 = 256;
/// Most messages one send carries.
pub const SEND_BATCH_MAX: usize = 256;
/// Longest group key or deduplication id, in bytes.
pub const QUEUE_ID_BYTES_MAX: usize = 128;
/// Most attributes on one message.
pub const ATTRIBUTES_MAX: usize = 16;
/// Longest attribute name or value, in bytes.
pub const ATTRIBUTE_BYTES_MAX: usize = 256;
/// Longest error text kept with a message; longer text is cut.
pub const ERROR_TEXT_BYTES_MAX: usize = 1024;
/// Default deduplication window: 5 minutes (SQS's).
pub const DEDUP_WINDOW_MS_DEFAULT: u64 = 5 * 60 * 1000;
/// Most deduplication ids one queue remembers; the oldest is forgotten first.
pub const DEDUP_IDS_MAX: usize = 100_000;

/// How a queue behaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    /// How long a delivered message stays invisible before it is delivered again.
    pub visibility_timeout_ms: u64,
    /// After this many deliveries without an ack a message is dead.
    pub max_deliveries: u32,
    /// Where dead messages go; `None` keeps them in this queue's dead set.
    pub dead_letter: Option<String>,
    /// Delay of a message sent without one.
    pub delay_ms: u64,
    /// How long a deduplication id is remembered.
    pub dedup_window_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            visibility_timeout_ms: 30_000,
            max_deliveries: 5,
            dead_letter: None,
            delay_ms: 0,
            dedup_window_ms: DEDUP_WINDOW_MS_DEFAULT,
        }
    }
}

impl QueueConfig {
    /// Checks every field against its limit.
    pub fn validate(&self) -> Result<(), MeridianError> {
        if self.visibility_timeout_ms == 0 || self.visibility_timeout_ms > QUEUE_TIMEOUT_MS_MAX {
            return Err(MeridianError::invalid(format!(
                "visibility timeout must be 1 ms to {QUEUE_TIMEOUT_MS_MAX} ms"
            )));
        }
        if self.max_deliveries == 0 || self.max_deliveries > MAX_DELIVERIES_MAX {
            return Err(MeridianError::invalid(format!(
                "max deliveries must be 1 to {MAX_DELIVERIES_MAX}"
            )));
        }
        if self.delay_ms > QUEUE_TIMEOUT_MS_MAX || self.dedup_window_ms > QUEUE_TIMEOUT_MS_MAX {
            return Err(MeridianError::invalid(format!(
                "delay and deduplication window must be at most {QUEUE_TIMEOUT_MS_MAX} ms"
            )));
        }
        if let Some(d) = &self.dead_letter {
            super::validate_queue_name(d)?;
        }
        Ok(())
    }
}

/// A queue in the cluster's catalogue (the meta group's map): its configuration and the range
/// its messages live in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSpec {
    pub name: String,
    pub range: RangeId,
    pub config: QueueConfig,
}

/// A message's id, unique within its range, growing in send order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Names one delivery of a message: `<id>.<delivery>`. Acks, nacks and extensions must show
/// the receipt of the message's current delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Receipt {
    pub id: MessageId,
    /// 1 for the first delivery.
    pub delivery: u32,
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id.0, self.delivery)
    }
}

impl FromStr for Receipt {
    type Err = MeridianError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MeridianError::invalid(format!("bad receipt {s:?}; expected <id>.<delivery>"));
        let (id, d) = s.split_once('.').ok_or_else(bad)?;
        Ok(Receipt {
            id: MessageId(id.parse().map_err(|_| bad())?),
            delivery: d.parse().map_err(|_| bad())?,
        })
    }
}

/// Where a message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageState {
    /// Waiting; deliverable from `visible_at_ms` (and, in a group, once it heads the group).
    Ready { visible_at_ms: u64 },
    /// Delivered; returns to ready at `deadline_ms` unless acked first.
    InFlight { deadline_ms: u64 },
    /// Delivered `max_deliveries` times without an ack.
    Dead { at_ms: u64 },
}

/// One message and its history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    /// Messages of one group are delivered one at a time, in send order.
    pub group: Option<String>,
    pub dedup_id: Option<String>,
    pub enqueued_ms: u64,
    /// Deliveries so far.
    pub deliveries: u32,
    /// Why the last delivery failed (a nack's text, or a timeout).
    pub last_error: Option<String>,
    pub state: MessageState,
}

/// One message to send.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessage {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    pub group: Option<String>,
    /// A second send with the same id within the queue's window returns the first's id.
    pub dedup_id: Option<String>,
    /// `None`: the queue's default delay.
    pub delay_ms: Option<u64>,
}

impl SendMessage {
    /// Checks the message's shape against the limits (the body's size is the node's business).
    pub fn validate(&self) -> Result<(), MeridianError> {
        for (what, v) in [
            ("group key", &self.group),
            ("deduplication id", &self.dedup_id),
        ] {
            if let Some(v) = v
                && (v.is_empty() || v.len() > QUEUE_ID_BYTES_MAX)
            {
                return Err(MeridianError::invalid(format!(
                    "a {what} must be 1 to {QUEUE_ID_BYTES_MAX} bytes"
                )));
            }
        }
        if self.attributes.len() > ATTRIBUTES_MAX {
            return Err(MeridianError::invalid(format!(
                "a message carries at most {ATTRIBUTES_MAX} attributes"
            )));
        }
        if self.attributes.iter().any(|(k, v)| {
            k.is_empty() || k.len() > ATTRIBUTE_BYTES_MAX || v.len() > ATTRIBUTE_BYTES_MAX
        }) {
            return Err(MeridianError::invalid(format!(
                "attribute names must be 1 to {ATTRIBUTE_BYTES_MAX} bytes, values at most {ATTRIBUTE_BYTES_MAX}"
            )));
        }
        if self.delay_ms.is_some_and(|d| d > QUEUE_TIMEOUT_MS_MAX) {
            return Err(MeridianError::invalid(format!(
                "a delay is at most {QUEUE_TIMEOUT_MS_MAX} ms"
            )));
        }
        Ok(())
    }
}

/// A command on a range's queues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueCommand {
    /// Creates the queue, or replaces its configuration (its messages stay).
    Create { name: String, config: QueueConfig },
    /// Drops the queue and its messages (none is not an error).
    Delete { name: String },
    Send {
        queue: String,
        messages: Vec<SendMessage>,
    },
    /// Delivers up to `max` visible messages, oldest first.
    Receive {
        queue: String,
        max: u32,
        /// `None`: the queue's visibility timeout.
        visibility_timeout_ms: Option<u64>,
    },
    Ack {
        queue: String,
        receipts: Vec<Receipt>,
    },
    /// Gives a delivery up: the message is ready again after `delay_ms` (or dead).
    Nack {
        queue: String,
        receipt: Receipt,
        delay_ms: u64,
        error: String,
    },
    /// Sets a delivery's deadline to `now + timeout_ms`.
    Extend {
        queue: String,
        receipt: Receipt,
        timeout_ms: u64,
    },
    /// Lets time pass for every queue (proposed by the leader when a deadline passes).
    Tick,
    /// Forgets dead messages the leader has moved to the dead-letter queue.
    RemoveDead { queue: String, ids: Vec<MessageId> },
    /// Several commands in one entry, applied in order at the same time (the leader merges
    /// concurrent requests). Each has its own result; a batch may not nest.
    Batch(Vec<QueueCommand>),
}

impl QueueCommand {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            QueueCommand::Create { .. } => "create",
            QueueCommand::Delete { .. } => "delete",
            QueueCommand::Send { .. } => "send",
            QueueCommand::Receive { .. } => "receive",
            QueueCommand::Ack { .. } => "ack",
            QueueCommand::Nack { .. } => "nack",
            QueueCommand::Extend { .. } => "extend",
            QueueCommand::Tick => "tick",
            QueueCommand::RemoveDead { .. } => "remove_dead",
            QueueCommand::Batch(_) => "batch",
        }
    }
}

/// One log entry for the queues, stamped with the proposing leader's clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub now_ms: u64,
    pub cmd: QueueCommand,
}

/// What one sent message became.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendOutcome {
    pub id: MessageId,
    /// The deduplication id was seen within the window: nothing new was queued.
    pub duplicate: bool,
}

/// One delivered message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: MessageId,
    pub receipt: Receipt,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    pub group: Option<String>,
    pub enqueued_ms: u64,
    /// This delivery's number, 1 for the first.
    pub deliveries: u32,
    pub deadline_ms: u64,
    pub last_error: Option<String>,
}

/// What a tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickOutcome {
    /// In-flight messages whose deadline passed, returned to ready.
    pub expired: u64,
    /// Messages that died.
    pub dead_lettered: u64,
}

/// The outcome of a [`QueueCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueResult {
    Done,
    Sent(Vec<SendOutcome>),
    Received(Vec<Delivery>),
    /// Per receipt: `Ok(true)` acked, `Ok(false)` the message is gone already (acked before,
    /// or moved to the dead-letter queue), `Err(stale_receipt)` it was delivered again.
    Acked(Vec<Result<bool, MeridianError>>),
    Extended {
        deadline_ms: u64,
    },
    Ticked(TickOutcome),
    Removed {
        removed: u64,
    },
    /// One result per command of a `Batch`, in order.
    Batch(Vec<Result<QueueResult, MeridianError>>),
}

/// Running totals of one queue, replicated (so every replica reports the same).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounters {
    pub sent: u64,
    pub duplicates: u64,
    pub delivered: u64,
    /// Deliveries after the first.
    pub redelivered: u64,
    pub acked: u64,
    pub nacked: u64,
    /// Deliveries whose visibility timeout passed.
    pub expired: u64,
    pub dead_lettered: u64,
}

/// A queue's depth and totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Messages waiting (visible or delayed).
    pub ready: u64,
    /// Of `ready`, those not visible yet.
    pub delayed: u64,
    pub in_flight: u64,
    pub dead: u64,
    pub counters: QueueCounters,
}

pub(crate) fn stale_receipt(r: Receipt, why: &str) -> MeridianError {
    MeridianError::new(
        ErrorCode::StaleReceipt,
        format!("receipt {r} is stale: {why}"),
    )
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
