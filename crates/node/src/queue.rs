//! Work queues on a node: the catalogue (queues in the meta group's map), routing a queue
//! operation to the leader of the range the queue lives in, and, on that leader, stamping the
//! leader's clock on each command and long-polling receives (woken when a command that may
//! make a message deliverable is applied here). Deadlines and dead-lettering: `queue_driver.rs`.

use crate::messages::{GroupOp, GroupReply};
use crate::node::Node;
use meridian_consensus::RaftGroup;
use meridian_state::queue::{
    Delivery, QueueConfig, QueueStats, Receipt, SendMessage, SendOutcome, validate_queue_name,
};
use meridian_state::{MetaCommand, QueueCommand, QueueResult, QueueSpec};
use meridian_types::{ErrorCode, GroupId, MeridianError, RangeId};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest a receive may wait for a message (long poll).
pub const QUEUE_WAIT_MAX: Duration = Duration::from_secs(20);
/// Longest one wait on the leader; a longer wait is several, so each fits a request deadline.
const LEADER_WAIT_SLICE: Duration = Duration::from_secs(2);
/// Shortest pause between two receives that found nothing although a message looked ready
/// (held back by its group's order).
const EMPTY_RECEIVE_PAUSE: Duration = Duration::from_millis(5);

/// A queue from the catalogue with its depth and totals (read on its range's leader).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub spec: QueueSpec,
    pub stats: QueueStats,
}

/// Per-node queue bookkeeping: who waits on which group, and when dead messages were last
/// moved.
#[derive(Default)]
pub(crate) struct QueueRuntime {
    waiters: Mutex<BTreeMap<GroupId, Arc<Notify>>>,
    pub(crate) last_dead_move: Mutex<BTreeMap<GroupId, Instant>>,
    /// Groups whose dead messages are being moved right now.
    pub(crate) moving: Mutex<std::collections::BTreeSet<GroupId>>,
    pub(crate) batcher: crate::queue_batch::QueueBatcher,
    /// Whether the queue driver runs (it starts with the first queue, see `queue_driver.rs`).
    pub(crate) driver_started: std::sync::atomic::AtomicBool,
}

impl QueueRuntime {
    fn notify_of(&self, group: GroupId) -> Arc<Notify> {
        self.waiters.lock().entry(group).or_default().clone()
    }

    /// Wakes every receive waiting on `group`.
    pub(crate) fn wake(&self, group: GroupId) {
        if let Some(n) = self.waiters.lock().get(&group) {
            n.notify_waiters();
        }
    }
}

fn unexpected<T: std::fmt::Debug>(r: T) -> MeridianError {
    MeridianError::internal(format!("unexpected queue reply {r:?}"))
}

impl Node {
    fn now_ms(&self) -> u64 {
        self.inner.cfg.clock.now_ms()
    }

    /// The catalogue entry of queue `name`. A queue this node's replica of the map does not
    /// know yet may have just been created through another node: wait a moment for the map to
    /// catch up before answering `queue_not_found`.
    pub(crate) async fn queue_spec(&self, name: &str) -> Result<QueueSpec, MeridianError> {
        crate::node::catalogue_lookup(ErrorCode::QueueNotFound, || self.queue_spec_now(name)).await
    }

    /// The catalogue entry of queue `name` in this node's map as it is.
    pub(crate) fn queue_spec_now(&self, name: &str) -> Result<QueueSpec, MeridianError> {
        let map = self.map_arc().ok_or_else(|| self.no_map_error())?;
        map.queues.get(name).cloned().ok_or_else(|| {
            MeridianError::new(ErrorCode::QueueNotFound, format!("no queue named {name:?}"))
        })
    }

    /// Runs a queue command on the leader of `range`.
    pub(crate) async fn queue_command(
        &self,
        range: RangeId,
        cmd: QueueCommand,
        wait_ms: u64,
    ) -> Result<QueueResult, MeridianError> {
        match self
            .execute(range.group(), GroupOp::Queue { cmd, wait_ms })
            .await?
        {
            GroupReply::Queue(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a queue (idempotent for the same configuration): picks its range, records it in
    /// the catalogue, then creates it in the range.
    pub async fn create_queue(
        &self,
        name: &str,
        config: QueueConfig,
        colocate: Option<&[u8]>,
    ) -> Result<QueueSpec, MeridianError> {
        validate_queue_name(name)?;
        config.validate()?;
        if let Some(k) = colocate
            && (k.is_empty() || k.len() > self.inner.cfg.limits.key_bytes_max)
        {
            return Err(MeridianError::invalid(
                "a colocation key must be 1 to key_bytes_max bytes",
            ));
        }
        if let Some(d) = &config.dead_letter {
            if d == name {
                return Err(MeridianError::invalid(
                    "a queue cannot be its own dead-letter queue",
                ));
            }
            self.queue_spec(d).await.map_err(|e| {
                MeridianError::new(e.code, format!("dead-letter queue: {}", e.message))
            })?;
        }
        self.ensure_meta_holds_map().await?;
        let spec = match self.queue_spec_now(name) {
            Ok(s) if s.config == config => s,
            Ok(_) => {
                return Err(MeridianError::new(
                    ErrorCode::QueueExists,
                    format!("a queue named {name:?} exists with another configuration"),
                ));
            }
            Err(_) => {
                let range = *self
                    .allocate_object_ranges(1, colocate)
                    .await?
                    .first()
                    .ok_or_else(|| MeridianError::internal("no range allocated"))?;
                let spec = QueueSpec {
                    name: name.to_string(),
                    range,
                    config: config.clone(),
                };
                self.execute(
                    GroupId::META,
                    GroupOp::Meta(MetaCommand::CreateQueue(spec.clone())),
                )
                .await?;
                let want = spec.clone();
                self.await_map(|m| m.queues.get(&want.name) == Some(&want))
                    .await?;
                spec
            }
        };
        self.queue_command(
            spec.range,
            QueueCommand::Create {
                name: name.to_string(),
                config,
            },
            0,
        )
        .await?;
        Ok(spec)
    }

    /// Deletes a queue and its messages. `Ok(false)` if there was none.
    pub async fn delete_queue(&self, name: &str) -> Result<bool, MeridianError> {
        self.ensure_meta_holds_map().await?;
        let Ok(spec) = self.queue_spec_now(name) else {
            return Ok(false);
        };
        self.execute(
            GroupId::META,
            GroupOp::Meta(MetaCommand::DeleteQueue {
                name: name.to_string(),
            }),
        )
        .await?;
        self.await_map(|m| !m.queues.contains_key(name)).await?;
        // A queue in its own system range went with the range; a colocated one lives on in its
        // key-value range: drop it there.
        if self
            .map_arc()
            .is_some_and(|m| m.ranges.contains_key(&spec.range))
        {
            self.queue_command(
                spec.range,
                QueueCommand::Delete {
                    name: name.to_string(),
                },
                0,
            )
            .await?;
        }
        Ok(true)
    }

    /// Every queue in the catalogue, by name.
    pub fn list_queues(&self) -> Vec<QueueSpec> {
        self.map_arc()
            .map(|m| m.queues.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A queue's catalogue entry with its depth and totals.
    pub async fn queue_info(&self, name: &str) -> Result<QueueInfo, MeridianError> {
        let spec = self.queue_spec(name).await?;
        let op = GroupOp::QueueStats {
            queue: name.to_string(),
        };
        match self.execute(spec.range.group(), op).await? {
            GroupReply::QueueStats(stats) => Ok(QueueInfo { spec, stats }),
            other => Err(unexpected(other)),
        }
    }

    /// Refuses a message whose body is over `value_bytes_max`.
    pub(crate) fn check_queue_bodies(&self, messages: &[SendMessage]) -> Result<(), MeridianError> {
        let max = self.inner.cfg.limits.value_bytes_max;
        match messages.iter().find(|m| m.body.len() > max) {
            Some(m) => Err(MeridianError::new(
                ErrorCode::ValueTooLarge,
                format!(
                    "message of {} bytes is over the limit of {max}",
                    m.body.len()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Sends a batch (all or nothing); acknowledged once committed on a quorum and applied.
    pub async fn send_messages(
        &self,
        name: &str,
        messages: Vec<SendMessage>,
    ) -> Result<Vec<SendOutcome>, MeridianError> {
        self.check_queue_bodies(&messages)?;
        let spec = self.queue_spec(name).await?;
        let cmd = QueueCommand::Send {
            queue: name.to_string(),
            messages,
        };
        match self.queue_command(spec.range, cmd, 0).await? {
            QueueResult::Sent(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// Receives up to `max` messages, waiting up to `wait` (at most [`QUEUE_WAIT_MAX`]) for the
    /// first one.
    pub async fn receive_messages(
        &self,
        name: &str,
        max: u32,
        wait: Duration,
        visibility_timeout_ms: Option<u64>,
    ) -> Result<Vec<Delivery>, MeridianError> {
        let spec = self.queue_spec(name).await?;
        let deadline = Instant::now() + wait.min(QUEUE_WAIT_MAX);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = left.min(LEADER_WAIT_SLICE);
            let cmd = QueueCommand::Receive {
                queue: name.to_string(),
                max,
                visibility_timeout_ms,
            };
            match self
                .queue_command(spec.range, cmd, slice.as_millis() as u64)
                .await?
            {
                QueueResult::Received(v) if !v.is_empty() || left <= slice => return Ok(v),
                QueueResult::Received(_) => {}
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Acks deliveries; per receipt `Ok(true)` acked, `Ok(false)` already gone, or
    /// `stale_receipt`.
    pub async fn ack_messages(
        &self,
        name: &str,
        receipts: Vec<Receipt>,
    ) -> Result<Vec<Result<bool, MeridianError>>, MeridianError> {
        let spec = self.queue_spec(name).await?;
        let cmd = QueueCommand::Ack {
            queue: name.to_string(),
            receipts,
        };
        match self.queue_command(spec.range, cmd, 0).await? {
            QueueResult::Acked(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// Gives a delivery up: ready again after `delay_ms`, or dead after its last delivery.
    pub async fn nack_message(
        &self,
        name: &str,
        receipt: Receipt,
        delay_ms: u64,
        error: String,
    ) -> Result<(), MeridianError> {
        let spec = self.queue_spec(name).await?;
        let cmd = QueueCommand::Nack {
            queue: name.to_string(),
            receipt,
            delay_ms,
            error,
        };
        self.queue_command(spec.range, cmd, 0).await.map(|_| ())
    }

    /// Moves a delivery's deadline to now + `timeout_ms`; returns the new deadline (ms since
    /// the epoch, on the leader's clock).
    pub async fn extend_message(
        &self,
        name: &str,
        receipt: Receipt,
        timeout_ms: u64,
    ) -> Result<u64, MeridianError> {
        let spec = self.queue_spec(name).await?;
        let cmd = QueueCommand::Extend {
            queue: name.to_string(),
            receipt,
            timeout_ms,
        };
        match self.queue_command(spec.range, cmd, 0).await? {
            QueueResult::Extended { deadline_ms } => Ok(deadline_ms),
            other => Err(unexpected(other)),
        }
    }

    // ---- on the range leader ----

    /// Proposes a queue command stamped with this leader's clock (batched with concurrent ones,
    /// see `queue_batch.rs`), then wakes the receives waiting on the group unless the command
    /// was itself a receive.
    pub(crate) async fn propose_queue(
        &self,
        g: &RaftGroup,
        cmd: QueueCommand,
    ) -> Result<QueueResult, MeridianError> {
        let wakes = !matches!(cmd, QueueCommand::Receive { .. });
        let res = self.propose_queue_batched(g, cmd).await;
        if wakes {
            self.inner.queues.wake(g.group());
        }
        res
    }

    /// Executes a queue command here, as the leader of `g`; a receive with `wait_ms` waits for
    /// a message without writing to the log while none can be delivered.
    pub(crate) async fn queue_local(
        &self,
        g: &RaftGroup,
        cmd: QueueCommand,
        wait_ms: u64,
    ) -> Result<GroupReply, MeridianError> {
        if !g.is_leader() {
            return Err(MeridianError::not_leader(g.group(), g.leader()));
        }
        self.start_queue_driver();
        let wait = Duration::from_millis(wait_ms).min(QUEUE_WAIT_MAX);
        let queue = match &cmd {
            QueueCommand::Receive { queue, .. } if !wait.is_zero() => queue.clone(),
            _ => return self.propose_queue(g, cmd).await.map(GroupReply::Queue),
        };
        let deadline = Instant::now() + wait;
        let notify = self.inner.queues.notify_of(g.group());
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.now_ms();
            let peek = g.read(|s| {
                let now = now.max(s.queues.clock_ms());
                s.queues
                    .get(&queue)
                    .map(|q| (q.may_deliver_at(now), q.next_event_ms(), now))
            });
            let mut pause_min = Duration::ZERO;
            let next_event = match peek {
                // Unknown here: the proposal answers `queue_not_found` (or finds it created).
                None => return self.propose_queue(g, cmd).await.map(GroupReply::Queue),
                Some((true, next, _)) => {
                    let r = self.propose_queue(g, cmd.clone()).await?;
                    match &r {
                        QueueResult::Received(v) if v.is_empty() => {}
                        _ => return Ok(GroupReply::Queue(r)),
                    }
                    pause_min = EMPTY_RECEIVE_PAUSE;
                    next.map(|t| (t, now))
                }
                Some((false, next, now)) => next.map(|t| (t, now)),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(GroupReply::Queue(QueueResult::Received(Vec::new())));
            }
            let until_event = next_event
                .map(|(t, now)| Duration::from_millis(t.saturating_sub(now).max(1)))
                .unwrap_or(left);
            let pause = until_event.max(pause_min).min(left);
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(pause) => {}
            }
            if !g.is_leader() {
                return Err(MeridianError::not_leader(g.group(), g.leader()));
            }
        }
    }

    /// A queue's depth and totals, read on the leader within its lease.
    pub(crate) async fn queue_stats_local(
        &self,
        g: &RaftGroup,
        queue: &str,
    ) -> Result<GroupReply, MeridianError> {
        if !g.is_leader() {
            return Err(MeridianError::not_leader(g.group(), g.leader()));
        }
        g.read_barrier(true).await?;
        let now = self.now_ms();
        g.read(|s| {
            s.queues
                .get(queue)
                .map(|q| q.stats(now.max(s.queues.clock_ms())))
        })
        .map(GroupReply::QueueStats)
        .ok_or_else(|| {
            MeridianError::new(
                ErrorCode::QueueNotFound,
                format!("no queue named {queue:?} in range {}", g.group()),
            )
        })
    }
}
