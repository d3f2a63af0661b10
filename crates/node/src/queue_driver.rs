//! The queue driver: on each range this node leads, proposes a `Tick` (stamped with this
//! leader's clock) once the earliest in-flight deadline has passed, so timed-out deliveries
//! return to ready and spent ones die even when no one calls; moves dead messages to their
//! dead-letter queue; and publishes queue gauges. Followers never decide a deadline: only the
//! leader proposes, and every replica applies the same entry.
//!
//! Moving a dead message is two writes: a send to the dead-letter queue (wherever it lives)
//! with a deduplication id derived from the source queue, range and message id, then a
//! `RemoveDead` on the source. A crash between the two resends within the window, which the
//! dead-letter queue drops as a duplicate: at least once, never lost.

use crate::node::Node;
use meridian_consensus::RaftGroup;
use meridian_state::QueueCommand;
use meridian_state::queue::{Message, MessageId, SendMessage};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// How often the driver looks at the ranges this node leads (the resolution of deadlines).
pub const QUEUE_DRIVER_INTERVAL: Duration = Duration::from_millis(20);
/// Least time between two attempts to move one range's dead messages.
const DEAD_MOVE_INTERVAL: Duration = Duration::from_millis(200);
/// Most dead messages moved per queue and attempt.
const DEAD_MOVE_BATCH: usize = 64;
/// How often the gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// The attributes a message carries into its dead-letter queue.
pub const ATTR_SOURCE_QUEUE: &str = "meridian.dead_letter.source_queue";
pub const ATTR_SOURCE_ID: &str = "meridian.dead_letter.source_id";
pub const ATTR_DELIVERIES: &str = "meridian.dead_letter.deliveries";
pub const ATTR_LAST_ERROR: &str = "meridian.dead_letter.last_error";

impl Node {
    /// Starts the queue driver once this node hosts a range holding queues (checked by the
    /// reconciler), or is asked a queue command as a leader. A node without queues runs no
    /// driver at all.
    pub(crate) fn ensure_queue_driver(&self) {
        let started = &self.inner.queues.driver_started;
        if started.load(Ordering::Acquire) {
            return;
        }
        let hosts_queues = self
            .hosted_groups()
            .iter()
            .any(|g| !g.group().is_meta() && g.read(|s| !s.queues.is_empty()));
        if hosts_queues {
            self.start_queue_driver();
        }
    }

    /// Starts the queue driver unless it runs already.
    pub(crate) fn start_queue_driver(&self) {
        if !self
            .inner
            .queues
            .driver_started
            .swap(true, Ordering::AcqRel)
        {
            self.spawn_queue_driver();
        }
    }

    fn spawn_queue_driver(&self) {
        let node = self.clone();
        let mut stop = self.inner.shutdown_tx.subscribe();
        let span = tracing::info_span!("queue_driver", node_id = node.id().0);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let mut last_gauges = Instant::now();
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(QUEUE_DRIVER_INTERVAL) => {}
                    }
                    let gauges = last_gauges.elapsed() >= GAUGE_INTERVAL;
                    if gauges {
                        last_gauges = Instant::now();
                    }
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = node.queue_driver_pass(gauges) => {}
                    }
                }
            },
            span,
        ));
    }

    async fn queue_driver_pass(&self, gauges: bool) {
        for g in self.hosted_groups() {
            if g.group().is_meta() || !g.is_leader() {
                continue;
            }
            let now = self.inner.cfg.clock.now_ms();
            let (tick, dead) = g.read(|s| {
                let now = now.max(s.queues.clock_ms());
                (
                    s.queues.next_expiry_ms().is_some_and(|t| t <= now),
                    !s.queues.dead_to_move().is_empty(),
                )
            });
            if tick {
                let timeout = self.inner.cfg.request_timeout;
                match tokio::time::timeout(timeout, self.propose_queue(&g, QueueCommand::Tick))
                    .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!(group_id = g.group().0, error = %e, "queue tick"),
                    Err(_) => tracing::debug!(group_id = g.group().0, "queue tick timed out"),
                }
            }
            if dead && self.dead_move_due(&g) {
                // Its own task: a slow or unreachable dead-letter queue must not hold up the
                // deadlines of every other range here.
                let (node, g) = (self.clone(), g.clone());
                let mut stop = self.inner.shutdown_tx.subscribe();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = node.move_dead(&g) => {}
                    }
                    node.inner.queues.moving.lock().remove(&g.group());
                });
            }
            if gauges {
                self.publish_queue_gauges(&g, now);
            }
        }
    }

    /// Whether to start moving `g`'s dead messages now (none under way, none just tried);
    /// if so, marks a move under way.
    fn dead_move_due(&self, g: &RaftGroup) -> bool {
        let q = &self.inner.queues;
        let mut last = q.last_dead_move.lock();
        let due = last
            .get(&g.group())
            .is_none_or(|t| t.elapsed() >= DEAD_MOVE_INTERVAL);
        if !due || !q.moving.lock().insert(g.group()) {
            return false;
        }
        last.insert(g.group(), Instant::now());
        true
    }

    /// Moves some dead messages of `g`'s queues to their dead-letter queues.
    async fn move_dead(&self, g: &RaftGroup) {
        let work: Vec<(String, String, Vec<Message>)> = g.read(|s| {
            s.queues
                .dead_to_move()
                .into_iter()
                .filter_map(|(name, q)| {
                    let dlq = q.config().dead_letter.clone()?;
                    let msgs = q
                        .dead_messages(DEAD_MOVE_BATCH)
                        .into_iter()
                        .cloned()
                        .collect();
                    Some((name.to_string(), dlq, msgs))
                })
                .collect()
        });
        for (queue, dlq, msgs) in work {
            let batch: Vec<SendMessage> = msgs
                .iter()
                .map(|m| dead_letter_message(&queue, g.group().0, m))
                .collect();
            let ids: Vec<MessageId> = msgs.iter().map(|m| m.id).collect();
            if let Err(e) = self.queue_spec_now(&dlq) {
                tracing::warn!(group_id = g.group().0, queue, dead_letter = dlq, error = %e, "dead-letter queue missing; dead messages stay");
                continue;
            }
            if let Err(e) = self.send_messages(&dlq, batch).await {
                tracing::warn!(group_id = g.group().0, queue, dead_letter = dlq, error = %e, "move dead messages");
                continue;
            }
            let n = ids.len();
            match self
                .propose_queue(
                    g,
                    QueueCommand::RemoveDead {
                        queue: queue.clone(),
                        ids,
                    },
                )
                .await
            {
                Ok(_) => {
                    tracing::debug!(
                        group_id = g.group().0,
                        queue,
                        dead_letter = dlq,
                        n,
                        "moved dead messages"
                    )
                }
                Err(e) => {
                    tracing::warn!(group_id = g.group().0, queue, error = %e, "forget moved dead messages")
                }
            }
        }
    }

    fn publish_queue_gauges(&self, g: &RaftGroup, now: u64) {
        let q = &self.inner.metrics.queue;
        g.read(|s| {
            let now = now.max(s.queues.clock_ms());
            for (name, queue) in s.queues.iter() {
                q.observe(name, &queue.stats(now));
            }
        });
    }
}

/// The copy of dead message `m` of `queue` sent to its dead-letter queue.
fn dead_letter_message(queue: &str, range: u64, m: &Message) -> SendMessage {
    let mut attributes = m.attributes.clone();
    attributes.insert(ATTR_SOURCE_QUEUE.into(), queue.to_string());
    attributes.insert(ATTR_SOURCE_ID.into(), m.id.to_string());
    attributes.insert(ATTR_DELIVERIES.into(), m.deliveries.to_string());
    if let Some(e) = &m.last_error {
        attributes.insert(
            ATTR_LAST_ERROR.into(),
            e.chars()
                .take(meridian_state::queue::ATTRIBUTE_BYTES_MAX / 4)
                .collect(),
        );
    }
    // At most ATTRIBUTES_MAX: a message that already carries that many loses its own extras.
    while attributes.len() > meridian_state::queue::ATTRIBUTES_MAX {
        let Some(k) = attributes
            .keys()
            .find(|k| !k.starts_with("meridian.dead_letter."))
            .cloned()
        else {
            break;
        };
        attributes.remove(&k);
    }
    SendMessage {
        body: m.body.clone(),
        attributes,
        group: m.group.clone(),
        dedup_id: Some(format!("dlq/{range}/{queue}/{}", m.id)),
        delay_ms: Some(0),
    }
}
