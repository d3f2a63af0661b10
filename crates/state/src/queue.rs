//! Durable work queues: the queues a range holds, applied purely from log entries.
//!
//! A message is `ready` (visible from `visible_at_ms`), `in_flight` (delivered, until its
//! deadline) or `dead` (delivered `max_deliveries` times without an ack; the range leader moves
//! it to the dead-letter queue, see the node crate). Every entry carries the leader's clock
//! (`now_ms`); the set keeps the largest seen, so time never runs backwards across leaders.
//! Each command first lets time pass for the queue it names: in-flight messages past their
//! deadline return to ready (or die), delayed messages become visible. A `Tick` does that for
//! every queue. One queue's bookkeeping lives in [`one`].

mod one;
mod types;

pub use one::Queue;
pub use types::*;

use meridian_types::{ErrorCode, MeridianError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most queues one range holds.
pub const QUEUES_PER_RANGE_MAX: usize = 1024;
/// Most commands one `Batch` entry holds.
pub const BATCH_COMMANDS_MAX: usize = 1024;
/// Longest queue name, in bytes.
pub const QUEUE_NAME_BYTES_MAX: usize = 80;

/// Checks a queue name: 1 to [`QUEUE_NAME_BYTES_MAX`] bytes of `[A-Za-z0-9_.-]`.
pub fn validate_queue_name(name: &str) -> Result<(), MeridianError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > QUEUE_NAME_BYTES_MAX || !name.chars().all(ok_char) {
        return Err(MeridianError::invalid(format!(
            "bad queue name {name:?}: use 1 to {QUEUE_NAME_BYTES_MAX} characters of A-Z a-z 0-9 _ . -"
        )));
    }
    Ok(())
}

pub(crate) fn queue_not_found(name: &str) -> MeridianError {
    MeridianError::new(ErrorCode::QueueNotFound, format!("no queue named {name:?}"))
}

/// The queues of one range. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSet {
    /// The largest `now_ms` applied so far.
    clock_ms: u64,
    /// The next message id; ids are unique within the range and never reused.
    next_id: u64,
    queues: BTreeMap<String, Queue>,
}

impl QueueSet {
    /// The queue called `name`, if this range holds it.
    pub fn get(&self, name: &str) -> Option<&Queue> {
        self.queues.get(name)
    }

    /// The queues this range holds, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Queue)> {
        self.queues.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The largest leader clock applied so far; `now` for a read is at least this.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// The earliest in-flight deadline of any queue: the leader proposes a `Tick` once its
    /// clock passes it.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.queues
            .values()
            .filter_map(|q| q.next_expiry_ms())
            .min()
    }

    /// Queues with dead messages waiting to move to their dead-letter queue.
    pub fn dead_to_move(&self) -> Vec<(&str, &Queue)> {
        self.queues
            .iter()
            .filter(|(_, q)| q.config().dead_letter.is_some() && q.dead_count() > 0)
            .map(|(n, q)| (n.as_str(), q))
            .collect()
    }

    /// Whether sending `batch` to `queue` would succeed with `queued_before` more messages
    /// already in it (earlier sends of the same transaction).
    pub fn check_send(
        &self,
        queue: &str,
        queued_before: usize,
        batch: &[SendMessage],
    ) -> Result<(), MeridianError> {
        self.queues
            .get(queue)
            .ok_or_else(|| queue_not_found(queue))?
            .check_send(queued_before, batch)
    }

    /// Applies one entry. See the module docs for time; an error may still have let time pass.
    pub fn apply(&mut self, entry: &QueueEntry) -> Result<QueueResult, MeridianError> {
        let now = self.clock_ms.max(entry.now_ms);
        self.clock_ms = now;
        match &entry.cmd {
            QueueCommand::Batch(cmds) => {
                if cmds.len() > BATCH_COMMANDS_MAX {
                    return Err(MeridianError::invalid(format!(
                        "a batch holds at most {BATCH_COMMANDS_MAX} commands"
                    )));
                }
                Ok(QueueResult::Batch(
                    cmds.iter().map(|c| self.apply_one(now, c)).collect(),
                ))
            }
            cmd => self.apply_one(now, cmd),
        }
    }

    fn apply_one(&mut self, now: u64, cmd: &QueueCommand) -> Result<QueueResult, MeridianError> {
        match cmd {
            QueueCommand::Batch(_) => Err(MeridianError::invalid("a batch cannot hold a batch")),
            QueueCommand::Create { name, config } => {
                validate_queue_name(name)?;
                config.validate()?;
                match self.queues.get_mut(name) {
                    Some(q) => q.set_config(config.clone()),
                    None => {
                        if self.queues.len() >= QUEUES_PER_RANGE_MAX {
                            return Err(MeridianError::invalid(format!(
                                "a range holds at most {QUEUES_PER_RANGE_MAX} queues"
                            )));
                        }
                        self.queues.insert(name.clone(), Queue::new(config.clone()));
                    }
                }
                Ok(QueueResult::Done)
            }
            QueueCommand::Delete { name } => {
                self.queues.remove(name);
                Ok(QueueResult::Done)
            }
            QueueCommand::Send { queue, messages } => {
                let q = self
                    .queues
                    .get_mut(queue)
                    .ok_or_else(|| queue_not_found(queue))?;
                q.advance(now);
                q.send(now, &mut self.next_id, messages)
                    .map(QueueResult::Sent)
            }
            QueueCommand::Receive {
                queue,
                max,
                visibility_timeout_ms,
            } => {
                let q = self.queue_at(queue, now)?;
                q.receive(now, *max, *visibility_timeout_ms)
                    .map(QueueResult::Received)
            }
            QueueCommand::Ack { queue, receipts } => {
                let q = self.queue_at(queue, now)?;
                Ok(QueueResult::Acked(
                    receipts.iter().map(|r| q.ack(*r)).collect(),
                ))
            }
            QueueCommand::Nack {
                queue,
                receipt,
                delay_ms,
                error,
            } => {
                let q = self.queue_at(queue, now)?;
                q.nack(now, *receipt, *delay_ms, error)?;
                Ok(QueueResult::Done)
            }
            QueueCommand::Extend {
                queue,
                receipt,
                timeout_ms,
            } => {
                let q = self.queue_at(queue, now)?;
                let deadline_ms = q.extend(now, *receipt, *timeout_ms)?;
                Ok(QueueResult::Extended { deadline_ms })
            }
            QueueCommand::Tick => {
                let mut out = TickOutcome::default();
                for q in self.queues.values_mut() {
                    let (expired, dead) = q.advance(now);
                    out.expired += expired;
                    out.dead_lettered += dead;
                }
                Ok(QueueResult::Ticked(out))
            }
            QueueCommand::RemoveDead { queue, ids } => {
                let q = self.queue_at(queue, now)?;
                let removed = ids.iter().filter(|id| q.remove_dead(**id)).count();
                Ok(QueueResult::Removed {
                    removed: removed as u64,
                })
            }
        }
    }

    /// The queue `name` with time advanced to `now`.
    fn queue_at(&mut self, name: &str, now: u64) -> Result<&mut Queue, MeridianError> {
        let q = self
            .queues
            .get_mut(name)
            .ok_or_else(|| queue_not_found(name))?;
        q.advance(now);
        Ok(q)
    }
}

#[cfg(test)]
mod tests;
