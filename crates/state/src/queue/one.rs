//! One queue: its messages and the indexes that make each operation a few ordered-set steps.
//!
//! Invariants (checked by [`Queue::check`] in tests):
//! - every ready message is in exactly one of `delayed` (not visible yet), `available`
//!   (visible and deliverable) or nowhere ("parked": visible, but a message of its group is
//!   ahead of it);
//! - a message of a group is deliverable only while it heads its group (the smallest live id),
//!   so a group has at most one message in flight and is delivered in send order;
//! - `in_flight` holds exactly the in-flight messages by deadline; `dead` the dead ones.

use super::types::*;
use meridian_types::{ErrorCode, MeridianError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One queue. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    config: QueueConfig,
    messages: BTreeMap<MessageId, Message>,
    /// Ready messages not visible yet, by `(visible_at_ms, id)`.
    delayed: BTreeSet<(u64, MessageId)>,
    /// Ready messages that may be delivered now, in send order.
    available: BTreeSet<MessageId>,
    /// In-flight messages by `(deadline_ms, id)`.
    in_flight: BTreeSet<(u64, MessageId)>,
    /// Live (ready or in-flight) messages of each group.
    groups: BTreeMap<String, BTreeSet<MessageId>>,
    dead: BTreeSet<MessageId>,
    /// Deduplication id → (message id, forgotten at).
    dedup: BTreeMap<String, (MessageId, u64)>,
    /// Deduplication ids in the order they expire (the window is fixed and time grows).
    dedup_order: VecDeque<(u64, String)>,
    counters: QueueCounters,
}

impl Queue {
    pub fn new(config: QueueConfig) -> Self {
        Self {
            config,
            messages: BTreeMap::new(),
            delayed: BTreeSet::new(),
            available: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            groups: BTreeMap::new(),
            dead: BTreeSet::new(),
            dedup: BTreeMap::new(),
            dedup_order: VecDeque::new(),
            counters: QueueCounters::default(),
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    pub(crate) fn set_config(&mut self, config: QueueConfig) {
        self.config = config;
    }

    pub fn message(&self, id: MessageId) -> Option<&Message> {
        self.messages.get(&id)
    }

    /// The earliest in-flight deadline.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.in_flight.first().map(|(d, _)| *d)
    }

    /// When something next becomes deliverable without a command: the earliest delay or
    /// in-flight deadline.
    pub fn next_event_ms(&self) -> Option<u64> {
        let d = self.delayed.first().map(|(v, _)| *v);
        match (d, self.next_expiry_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a receive at `now` may find a message (a hint for long polls: a group's order
    /// may still hold it back).
    pub fn may_deliver_at(&self, now: u64) -> bool {
        !self.available.is_empty() || self.next_event_ms().is_some_and(|t| t <= now)
    }

    pub fn dead_count(&self) -> usize {
        self.dead.len()
    }

    /// Up to `max` dead messages, oldest first.
    pub fn dead_messages(&self, max: usize) -> Vec<&Message> {
        self.dead
            .iter()
            .take(max)
            .filter_map(|id| self.messages.get(id))
            .collect()
    }

    /// Depth and totals as of `now`.
    pub fn stats(&self, now: u64) -> QueueStats {
        let n = self.messages.len() as u64;
        let in_flight = self.in_flight.len() as u64;
        let dead = self.dead.len() as u64;
        QueueStats {
            ready: n - in_flight - dead,
            delayed: self.delayed.iter().filter(|(v, _)| *v > now).count() as u64,
            in_flight,
            dead,
            counters: self.counters,
        }
    }

    /// Lets time pass: in-flight messages past their deadline return to ready (or die),
    /// delayed ones become visible, old deduplication ids are forgotten. Returns
    /// `(expired, died)`.
    pub(crate) fn advance(&mut self, now: u64) -> (u64, u64) {
        let (mut expired, mut died) = (0, 0);
        while let Some(&(deadline, id)) = self.in_flight.first() {
            if deadline > now {
                break;
            }
            self.in_flight.remove(&(deadline, id));
            expired += 1;
            self.counters.expired += 1;
            let Some(m) = self.messages.get_mut(&id) else {
                continue;
            };
            m.last_error = Some(format!(
                "visibility timeout passed during delivery {}",
                m.deliveries
            ));
            m.state = MessageState::Ready { visible_at_ms: now };
            if m.deliveries >= self.config.max_deliveries {
                self.kill(id, now);
                died += 1;
            } else {
                self.place(id, now);
            }
        }
        while let Some(&(visible_at, id)) = self.delayed.first() {
            if visible_at > now {
                break;
            }
            self.delayed.remove(&(visible_at, id));
            self.place(id, now);
        }
        while let Some((expires, _)) = self.dedup_order.front() {
            if *expires > now {
                break;
            }
            if let Some((_, key)) = self.dedup_order.pop_front()
                && self.dedup.get(&key).is_some_and(|(_, e)| *e <= now)
            {
                self.dedup.remove(&key);
            }
        }
        (expired, died)
    }

    /// Whether [`Queue::send`] of `batch` would succeed with `queued_before` more messages
    /// already queued (earlier sends of the same transaction).
    pub(crate) fn check_send(
        &self,
        queued_before: usize,
        batch: &[SendMessage],
    ) -> Result<(), MeridianError> {
        if batch.is_empty() || batch.len() > SEND_BATCH_MAX {
            return Err(MeridianError::invalid(format!(
                "a send carries 1 to {SEND_BATCH_MAX} messages"
            )));
        }
        for m in batch {
            m.validate()?;
        }
        if self.messages.len() + queued_before + batch.len() > QUEUE_MESSAGES_MAX {
            return Err(MeridianError::new(
                ErrorCode::QueueFull,
                format!("the queue holds {QUEUE_MESSAGES_MAX} messages; ack or delete some"),
            ));
        }
        Ok(())
    }

    /// Queues a batch, all or nothing.
    pub(crate) fn send(
        &mut self,
        now: u64,
        next_id: &mut u64,
        batch: &[SendMessage],
    ) -> Result<Vec<SendOutcome>, MeridianError> {
        self.check_send(0, batch)?;
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            if let Some((id, _)) = m.dedup_id.as_ref().and_then(|d| self.dedup.get(d)) {
                self.counters.duplicates += 1;
                out.push(SendOutcome {
                    id: *id,
                    duplicate: true,
                });
                continue;
            }
            let id = MessageId(*next_id);
            *next_id += 1;
            let visible_at_ms = now.saturating_add(m.delay_ms.unwrap_or(self.config.delay_ms));
            self.messages.insert(
                id,
                Message {
                    id,
                    body: m.body.clone(),
                    attributes: m.attributes.clone(),
                    group: m.group.clone(),
                    dedup_id: m.dedup_id.clone(),
                    enqueued_ms: now,
                    deliveries: 0,
                    last_error: None,
                    state: MessageState::Ready { visible_at_ms },
                },
            );
            if let Some(g) = &m.group {
                self.groups.entry(g.clone()).or_default().insert(id);
            }
            self.place(id, now);
            if let Some(d) = &m.dedup_id {
                let expires = now.saturating_add(self.config.dedup_window_ms);
                self.dedup.insert(d.clone(), (id, expires));
                self.dedup_order.push_back((expires, d.clone()));
                while self.dedup_order.len() > DEDUP_IDS_MAX {
                    if let Some((_, k)) = self.dedup_order.pop_front() {
                        self.dedup.remove(&k);
                    }
                }
            }
            self.counters.sent += 1;
            out.push(SendOutcome {
                id,
                duplicate: false,
            });
        }
        Ok(out)
    }

    /// Delivers up to `max` available messages in send order.
    pub(crate) fn receive(
        &mut self,
        now: u64,
        max: u32,
        visibility_timeout_ms: Option<u64>,
    ) -> Result<Vec<Delivery>, MeridianError> {
        if max == 0 || max > RECEIVE_MAX {
            return Err(MeridianError::invalid(format!(
                "a receive takes 1 to {RECEIVE_MAX} messages"
            )));
        }
        let vt = visibility_timeout_ms.unwrap_or(self.config.visibility_timeout_ms);
        if vt == 0 || vt > QUEUE_TIMEOUT_MS_MAX {
            return Err(MeridianError::invalid(format!(
                "visibility timeout must be 1 ms to {QUEUE_TIMEOUT_MS_MAX} ms"
            )));
        }
        let deadline_ms = now.saturating_add(vt);
        let mut out = Vec::new();
        while out.len() < max as usize {
            let Some(id) = self.available.pop_first() else {
                break;
            };
            let Some(m) = self.messages.get_mut(&id) else {
                continue;
            };
            m.deliveries += 1;
            m.state = MessageState::InFlight { deadline_ms };
            self.in_flight.insert((deadline_ms, id));
            self.counters.delivered += 1;
            if m.deliveries > 1 {
                self.counters.redelivered += 1;
            }
            out.push(Delivery {
                id,
                receipt: Receipt {
                    id,
                    delivery: m.deliveries,
                },
                body: m.body.clone(),
                attributes: m.attributes.clone(),
                group: m.group.clone(),
                enqueued_ms: m.enqueued_ms,
                deliveries: m.deliveries,
                deadline_ms,
                last_error: m.last_error.clone(),
            });
        }
        Ok(out)
    }

    /// The deadline of `r`'s delivery if it is the message's current one and still in flight.
    fn current_delivery(&self, r: Receipt) -> Result<u64, MeridianError> {
        let Some(m) = self.messages.get(&r.id) else {
            return Err(stale_receipt(r, "the message is no longer in the queue"));
        };
        match m.state {
            MessageState::InFlight { deadline_ms } if m.deliveries == r.delivery => Ok(deadline_ms),
            _ if m.deliveries > r.delivery => Err(stale_receipt(
                r,
                &format!(
                    "the message was delivered again (delivery {})",
                    m.deliveries
                ),
            )),
            MessageState::Dead { .. } => Err(stale_receipt(r, "the message is dead")),
            _ => Err(stale_receipt(
                r,
                "its visibility timeout passed; the message is ready again",
            )),
        }
    }

    /// Acks one delivery. `Ok(false)` when the message is gone already.
    pub(crate) fn ack(&mut self, r: Receipt) -> Result<bool, MeridianError> {
        if !self.messages.contains_key(&r.id) {
            return Ok(false);
        }
        let deadline = self.current_delivery(r)?;
        self.in_flight.remove(&(deadline, r.id));
        self.forget_live(r.id);
        self.messages.remove(&r.id);
        self.counters.acked += 1;
        Ok(true)
    }

    /// Gives a delivery up: ready again after `delay_ms`, or dead after its last delivery.
    pub(crate) fn nack(
        &mut self,
        now: u64,
        r: Receipt,
        delay_ms: u64,
        error: &str,
    ) -> Result<(), MeridianError> {
        if delay_ms > QUEUE_TIMEOUT_MS_MAX {
            return Err(MeridianError::invalid(format!(
                "a delay is at most {QUEUE_TIMEOUT_MS_MAX} ms"
            )));
        }
        let deadline = self.current_delivery(r)?;
        self.in_flight.remove(&(deadline, r.id));
        self.counters.nacked += 1;
        let Some(m) = self.messages.get_mut(&r.id) else {
            return Ok(());
        };
        m.last_error = Some(if error.is_empty() {
            format!("nacked on delivery {}", m.deliveries)
        } else {
            cut(error, ERROR_TEXT_BYTES_MAX)
        });
        m.state = MessageState::Ready {
            visible_at_ms: now.saturating_add(delay_ms),
        };
        if m.deliveries >= self.config.max_deliveries {
            self.kill(r.id, now);
        } else {
            self.place(r.id, now);
        }
        Ok(())
    }

    /// Moves a delivery's deadline to `now + timeout_ms`; returns the new deadline.
    pub(crate) fn extend(
        &mut self,
        now: u64,
        r: Receipt,
        timeout_ms: u64,
    ) -> Result<u64, MeridianError> {
        if timeout_ms > QUEUE_TIMEOUT_MS_MAX {
            return Err(MeridianError::invalid(format!(
                "a visibility timeout is at most {QUEUE_TIMEOUT_MS_MAX} ms"
            )));
        }
        let deadline = self.current_delivery(r)?;
        let new = now.saturating_add(timeout_ms);
        self.in_flight.remove(&(deadline, r.id));
        self.in_flight.insert((new, r.id));
        if let Some(m) = self.messages.get_mut(&r.id) {
            m.state = MessageState::InFlight { deadline_ms: new };
        }
        Ok(new)
    }

    /// Forgets a dead message (moved to the dead-letter queue). False if `id` is not dead here.
    pub(crate) fn remove_dead(&mut self, id: MessageId) -> bool {
        if !self.dead.remove(&id) {
            return false;
        }
        self.messages.remove(&id);
        true
    }

    /// Puts a ready message where it belongs: delayed, available, or parked behind its group.
    fn place(&mut self, id: MessageId, now: u64) {
        let Some(m) = self.messages.get(&id) else {
            return;
        };
        let MessageState::Ready { visible_at_ms } = m.state else {
            return;
        };
        if visible_at_ms > now {
            self.delayed.insert((visible_at_ms, id));
            return;
        }
        let heads = match &m.group {
            None => true,
            Some(g) => self.groups.get(g).and_then(|s| s.first()) == Some(&id),
        };
        if heads {
            self.available.insert(id);
        }
    }

    /// Takes a ready message out of its group and the ready indexes; the next message of its
    /// group, if any, may now be deliverable.
    fn forget_live(&mut self, id: MessageId) {
        let Some(m) = self.messages.get(&id) else {
            return;
        };
        if let MessageState::Ready { visible_at_ms } = m.state {
            self.delayed.remove(&(visible_at_ms, id));
            self.available.remove(&id);
        }
        let Some(g) = m.group.clone() else {
            return;
        };
        let next = self.groups.get_mut(&g).and_then(|s| {
            s.remove(&id);
            s.first().copied()
        });
        match next {
            None => {
                self.groups.remove(&g);
            }
            Some(h) => self.unpark(h),
        }
    }

    /// A new head of its group: deliverable if it is ready and visible (it was parked; every
    /// command has let time pass first, so a ready message outside `delayed` is visible).
    fn unpark(&mut self, id: MessageId) {
        if let Some(m) = self.messages.get(&id)
            && let MessageState::Ready { visible_at_ms } = m.state
            && !self.delayed.contains(&(visible_at_ms, id))
        {
            self.available.insert(id);
        }
    }

    /// Marks a message dead (it must be ready or just taken out of flight).
    fn kill(&mut self, id: MessageId, now: u64) {
        self.forget_live(id);
        if let Some(m) = self.messages.get_mut(&id) {
            m.state = MessageState::Dead { at_ms: now };
        }
        self.dead.insert(id);
        self.counters.dead_lettered += 1;
    }

    /// Asserts the invariants of the module docs (for tests).
    pub fn check(&self) {
        let mut ready = 0;
        for (id, m) in &self.messages {
            assert_eq!(*id, m.id);
            let live = !matches!(m.state, MessageState::Dead { .. });
            if let Some(g) = &m.group {
                let in_group = self.groups.get(g).is_some_and(|s| s.contains(id));
                assert_eq!(in_group, live, "group membership of {id}");
            }
            match m.state {
                MessageState::Ready { visible_at_ms } => {
                    ready += 1;
                    let d = self.delayed.contains(&(visible_at_ms, *id));
                    let a = self.available.contains(id);
                    assert!(!(d && a), "{id} both delayed and available");
                    if a && let Some(g) = &m.group {
                        assert_eq!(self.groups[g].first(), Some(id), "{id} available, not head");
                    }
                }
                MessageState::InFlight { deadline_ms } => {
                    assert!(self.in_flight.contains(&(deadline_ms, *id)));
                    if let Some(g) = &m.group {
                        assert_eq!(self.groups[g].first(), Some(id), "{id} in flight, not head");
                    }
                }
                MessageState::Dead { .. } => assert!(self.dead.contains(id)),
            }
        }
        assert!(self.delayed.len() + self.available.len() <= ready);
        assert_eq!(
            self.messages.len(),
            ready + self.in_flight.len() + self.dead.len()
        );
    }
}
