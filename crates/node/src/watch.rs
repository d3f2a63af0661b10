//! Watches: a feed of every change to a key or a key range, in revision order per range,
//! resumable from a revision.
//!
//! A watch reads no event log: the events after a revision are the versions newer than it in the
//! range's MVCC history (`KvState::events_after`). Each range the watched keys span gets one
//! poller that long-polls a replica of that range (this node's own first: its events come from
//! this node's apply path, see `RaftGroup::subscribe_applied`), keeps the revision it has
//! delivered up to as its cursor and asks for what is after it. A leader change does not touch
//! it; a replica that fails or falls behind is swapped for another one and the cursor carries
//! over, so nothing is lost and nothing repeated (events at or below the cursor are dropped).
//!
//! Order: revision order, across ranges too. Each range's feed is in revision order; a watch over
//! several ranges merges them (`Merger`), releasing an event only once every range's cursor has
//! passed its revision, and asking an idle range to advance its revision (`GroupOp::Advance`, a
//! log entry with no key) so it does not hold the others back. The events of one revision (a
//! txn, or equal revisions of two ranges) come together, in range then key order. So a watch is
//! resumable from `last revision + 1` whatever it spans. Progress notifications report the
//! revision up to which everything has been sent.

use crate::messages::{GroupOp, GroupReply};
use crate::node::Node;
use meridian_state::{RangeInfo, WatchEvent};
use meridian_types::{ErrorCode, GroupId, MeridianError, NodeId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// How long one poll waits on a replica for a new event before answering empty.
pub const WATCH_POLL_WAIT: Duration = Duration::from_millis(1000);
/// The longest wait a poll may ask for (a bound on input from the network).
pub const WATCH_POLL_WAIT_MAX: Duration = Duration::from_secs(10);
/// Most events one poll returns (a txn's events are never split, so it may return more).
pub const WATCH_BATCH_EVENTS_MAX: usize = 1000;
/// Messages queued per watch before its pollers wait for the client to read.
pub const WATCH_CHANNEL_MAX: usize = 64;
/// A follower that cannot prove it is at most this far behind is swapped for another replica.
pub const WATCH_STALENESS_MAX_MS: u64 = 3000;
/// Most events a watch over several ranges holds back while a range catches up; past it the
/// watch fails rather than grow without bound.
pub const WATCH_BUFFER_EVENTS_MAX: usize = 100_000;
/// Pause after a failed poll before the next replica is tried.
const WATCH_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What to watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSpec {
    pub key: Vec<u8>,
    /// etcd's rule: empty is the single key, `[0]` every key from `key` on.
    pub range_end: Vec<u8>,
    /// Send events from this revision on; 0 means from now.
    pub start_revision: u64,
    pub prev_kv: bool,
    /// Send a progress notification this often while nothing else is sent.
    pub progress_every: Option<Duration>,
}

/// One message of a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// Events of one range, in order; `revision` is that range's cursor after them.
    Events {
        events: Vec<WatchEvent>,
        revision: u64,
    },
    /// Every event at or below `revision` has been sent.
    Progress { revision: u64 },
    /// The start revision is compacted away; the watch ends.
    Compacted { compact_revision: u64 },
    /// The watch cannot go on (the cluster map is gone, the node shut down).
    Failed(MeridianError),
}

/// An open watch. Dropping it stops its pollers.
pub struct WatchStream {
    rx: mpsc::Receiver<WatchMessage>,
    start_after: u64,
    progress: Arc<Notify>,
    _guard: WatchGuard,
}

impl WatchStream {
    /// The next message; `None` once the watch has ended.
    pub async fn recv(&mut self) -> Option<WatchMessage> {
        self.rx.recv().await
    }

    /// Asks for a progress notification now (etcd's progress request).
    pub fn request_progress(&self) {
        self.progress.notify_one();
    }

    /// A handle that asks for progress notifications (see [`WatchStream::request_progress`]).
    pub fn progress_handle(&self) -> Arc<Notify> {
        self.progress.clone()
    }

    /// The revision the watch started after: every event above it is sent (for a watch over
    /// several ranges, the lowest range's). 0 when the watch started from revision 0 or 1.
    pub fn start_revision(&self) -> u64 {
        self.start_after
    }

    /// A watch fed by the caller (for test doubles of `ClientApi`).
    pub fn from_channel(rx: mpsc::Receiver<WatchMessage>) -> Self {
        Self {
            rx,
            start_after: 0,
            progress: Arc::new(Notify::new()),
            _guard: WatchGuard { on_drop: None },
        }
    }
}

/// Runs a closure when the watch is dropped (the watcher gauge).
struct WatchGuard {
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

impl Node {
    /// Opens a watch over the keys of `spec` on every range they span.
    pub async fn open_watch(&self, spec: WatchSpec) -> Result<WatchStream, MeridianError> {
        if spec.key.is_empty() {
            return Err(MeridianError::invalid("key is not provided"));
        }
        let max = self.inner.cfg.limits.key_bytes_max;
        if spec.key.len() > max || spec.range_end.len() > max {
            return Err(MeridianError::new(
                ErrorCode::KeyTooLarge,
                format!("watched key of more than {max} bytes"),
            ));
        }
        let map = self.map_or_err()?;
        let (start, end) = crate::kv::interval(&spec.key, &spec.range_end);
        let ranges: Vec<RangeInfo> = map
            .ranges_overlapping(&start, &end)
            .into_iter()
            .cloned()
            .collect();
        if ranges.is_empty() {
            return Err(MeridianError::internal("no range holds the watched keys"));
        }
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL_MAX);
        let (feed_tx, feed_rx) = mpsc::channel(WATCH_CHANNEL_MAX);
        let single = spec.range_end.is_empty();
        let mut pollers = Vec::with_capacity(ranges.len());
        for (i, r) in ranges.iter().enumerate() {
            let (key, range_end) = if single {
                (spec.key.clone(), Vec::new())
            } else {
                crate::kv::clip(&start, &end, r)
            };
            pollers.push(Poller {
                node: self.clone(),
                group: r.id.group(),
                key,
                range_end,
                prev_kv: spec.prev_kv,
                after: spec.start_revision.checked_sub(1),
                slot: i,
                feed: feed_tx.clone(),
            });
        }
        // From now: each range's current revision, read before the watch is answered, so
        // the caller learns where it starts (etcd's `created` header) and can resume there.
        if spec.start_revision == 0 {
            let firsts = futures::future::join_all(pollers.iter().map(|p| p.first_cursor())).await;
            for (p, c) in pollers.iter_mut().zip(firsts) {
                p.after = Some(c?);
            }
        }
        let cursors: Vec<u64> = pollers.iter().map(|p| p.after.unwrap_or(0)).collect();
        let start_after = cursors.iter().copied().min().unwrap_or(0);
        for p in pollers {
            tokio::spawn(p.run());
        }
        let progress = Arc::new(Notify::new());
        let merger = Merger {
            node: self.clone(),
            groups: ranges.iter().map(|r| r.id.group()).collect(),
            advancing: vec![false; cursors.len()],
            cursors,
            buffer: BTreeMap::new(),
            buffered: 0,
            released: start_after,
            out: tx,
        };
        tokio::spawn(merger.run(feed_rx, progress.clone(), spec.progress_every));
        let m = self.inner.metrics.clone();
        m.watchers.inc();
        Ok(WatchStream {
            rx,
            start_after,
            progress,
            _guard: WatchGuard {
                on_drop: Some(Box::new(move || {
                    m.watchers.dec();
                })),
            },
        })
    }

    /// Serves a [`GroupOp::WatchPoll`] from this node's replica of `group`.
    pub(crate) async fn serve_watch_poll(
        &self,
        g: &meridian_consensus::RaftGroup,
        key: &[u8],
        range_end: &[u8],
        after: Option<u64>,
        prev_kv: bool,
        wait_ms: u64,
    ) -> Result<GroupReply, MeridianError> {
        let mut applied = g.subscribe_applied();
        let wait = Duration::from_millis(wait_ms).min(WATCH_POLL_WAIT_MAX);
        let deadline = Instant::now() + wait;
        loop {
            applied.borrow_and_update();
            let (batch, bound) = g.read_with_staleness(|s| match after {
                None => Ok(meridian_state::EventBatch {
                    events: Vec::new(),
                    cursor: s.kv.revision(),
                }),
                Some(after) => {
                    s.kv.events_after(key, range_end, after, prev_kv, WATCH_BATCH_EVENTS_MAX)
                }
            });
            let staleness_ms = if g.is_leader() {
                Some(0)
            } else {
                bound.map(|d| d.as_millis().try_into().unwrap_or(u64::MAX))
            };
            let batch = match batch {
                Ok(b) => b,
                Err(compact_revision) => {
                    return Ok(GroupReply::WatchCompacted { compact_revision });
                }
            };
            // Answer with events, or with a cursor that moved (a write elsewhere in the range, or
            // an advance a merging watch is waiting for), or at the deadline.
            let moved = after.is_none_or(|a| batch.cursor > a);
            if moved || Instant::now() >= deadline {
                return Ok(GroupReply::Events {
                    events: batch.events,
                    cursor: batch.cursor,
                    staleness_ms,
                });
            }
            // Wait for this replica to apply something, then look again.
            if tokio::time::timeout_at(deadline, applied.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                return Err(MeridianError::unavailable(format!(
                    "group {} stopped",
                    g.group()
                )));
            }
        }
    }

    /// The replicas to poll for `group`: this node first if it hosts one, then the others
    /// nearest first.
    fn watch_candidates(&self, group: GroupId) -> Vec<NodeId> {
        let replicas = self.replicas_of(group);
        let mut out = Vec::with_capacity(replicas.len());
        if self.group(group).is_some() {
            out.push(self.id());
        }
        for n in self.inner.latency.nearest_first(self.id(), &replicas) {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }
}

/// Feeds one range's events into a watch.
struct Poller {
    node: Node,
    group: GroupId,
    key: Vec<u8>,
    range_end: Vec<u8>,
    prev_kv: bool,
    /// Every event at or below this revision has been delivered (`None`: start from now).
    after: Option<u64>,
    slot: usize,
    feed: mpsc::Sender<Feed>,
}

impl Poller {
    async fn run(mut self) {
        let mut stop = self.node.inner.shutdown_tx.subscribe();
        let mut candidates = Vec::new();
        let mut idx = 0usize;
        loop {
            if candidates.is_empty() || idx >= candidates.len() {
                candidates = self.node.watch_candidates(self.group);
                idx = 0;
                if candidates.is_empty() {
                    let _ = self
                        .feed
                        .send(Feed::End(WatchMessage::Failed(MeridianError::new(
                            ErrorCode::NotInitialized,
                            "the cluster map is not known",
                        ))))
                        .await;
                    return;
                }
            }
            let to = candidates[idx];
            let poll = self.poll(to);
            let result = tokio::select! {
                r = poll => r,
                _ = self.feed.closed() => return,
                _ = stop.changed() => {
                    let failed = WatchMessage::Failed(MeridianError::unavailable("the node is shutting down"));
                    let _ = self.feed.send(Feed::End(failed)).await;
                    return;
                }
            };
            match result {
                Ok(GroupReply::Events {
                    events,
                    cursor,
                    staleness_ms,
                }) => {
                    let after = self.after;
                    // Dedupe by revision: a replica swapped in never repeats what was sent.
                    let events: Vec<WatchEvent> = events
                        .into_iter()
                        .filter(|e| after.is_none_or(|a| e.kv.mod_revision > a))
                        .collect();
                    let cursor = after.map_or(cursor, |a| a.max(cursor));
                    if !events.is_empty() || after != Some(cursor) {
                        let batch = Feed::Batch {
                            slot: self.slot,
                            events,
                            cursor,
                        };
                        if self.feed.send(batch).await.is_err() {
                            return;
                        }
                    }
                    self.after = Some(cursor);
                    let stale = staleness_ms.is_none_or(|ms| ms > WATCH_STALENESS_MAX_MS);
                    if stale && candidates.len() > 1 {
                        tracing::debug!(
                            group_id = self.group.0,
                            node = to.0,
                            "watch replica cannot prove it is fresh; trying another"
                        );
                        idx += 1;
                    }
                }
                Ok(GroupReply::WatchCompacted { compact_revision }) => {
                    let _ = self
                        .feed
                        .send(Feed::End(WatchMessage::Compacted { compact_revision }))
                        .await;
                    return;
                }
                Ok(other) => {
                    tracing::warn!(group_id = self.group.0, reply = ?other, "unexpected watch reply");
                    idx += 1;
                    tokio::time::sleep(WATCH_RETRY_PAUSE).await;
                }
                Err(e) => {
                    tracing::debug!(group_id = self.group.0, node = to.0, error = %e, "watch poll failed; trying another replica");
                    idx += 1;
                    tokio::time::sleep(WATCH_RETRY_PAUSE).await;
                }
            }
        }
    }

    /// The range's current revision from the first replica that answers.
    async fn first_cursor(&self) -> Result<u64, MeridianError> {
        let deadline = Instant::now() + self.node.inner.cfg.request_timeout;
        let mut last = MeridianError::unavailable(format!("no replica of group {}", self.group));
        while Instant::now() < deadline {
            for to in self.node.watch_candidates(self.group) {
                match self.poll_op(to, None).await {
                    Ok(GroupReply::Events { cursor, .. }) => return Ok(cursor),
                    Ok(other) => last = MeridianError::internal(format!("unexpected {other:?}")),
                    Err(e) => last = e,
                }
            }
            tokio::time::sleep(WATCH_RETRY_PAUSE).await;
        }
        Err(last)
    }

    async fn poll(&self, to: NodeId) -> Result<GroupReply, MeridianError> {
        self.poll_op(to, self.after).await
    }

    async fn poll_op(&self, to: NodeId, after: Option<u64>) -> Result<GroupReply, MeridianError> {
        let op = GroupOp::WatchPoll {
            key: self.key.clone(),
            range_end: self.range_end.clone(),
            after,
            prev_kv: self.prev_kv,
            wait_ms: WATCH_POLL_WAIT.as_millis() as u64,
        };
        if to == self.node.id() {
            return self.node.execute_local(self.group, op).await;
        }
        let deadline = Instant::now() + WATCH_POLL_WAIT + self.node.inner.cfg.request_timeout;
        self.node.forward(to, self.group, op, deadline).await
    }
}

/// What a poller tells the merger.
enum Feed {
    /// Events of range `slot` (maybe none) and its cursor after them.
    Batch {
        slot: usize,
        events: Vec<WatchEvent>,
        cursor: u64,
    },
    /// The watch ends (compacted, failed).
    End(WatchMessage),
}

/// Merges the feeds of a watch's ranges into one stream in revision order.
///
/// An event of revision `r` is released once every range's cursor has reached `r`: no range can
/// then produce an event below it. An idle range's cursor would stay at its last write, so the
/// merger asks that range's leader to advance its revision past the events waiting
/// ([`GroupOp::Advance`], a log entry with no key in it, like a closed timestamp). With one
/// range the cursor is always past its own events and nothing waits.
struct Merger {
    node: Node,
    groups: Vec<GroupId>,
    cursors: Vec<u64>,
    /// An advance in flight per range.
    advancing: Vec<bool>,
    /// Events not yet released, by revision.
    buffer: BTreeMap<u64, Vec<WatchEvent>>,
    buffered: usize,
    /// Every event at or below this revision has been sent.
    released: u64,
    out: mpsc::Sender<WatchMessage>,
}

impl Merger {
    async fn run(
        mut self,
        mut feed: mpsc::Receiver<Feed>,
        asked: Arc<Notify>,
        every: Option<Duration>,
    ) {
        let (done_tx, mut done_rx) = mpsc::channel::<usize>(self.groups.len().max(1));
        let mut next_progress = every.map(|d| Instant::now() + d);
        loop {
            let tick = async {
                match next_progress {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.out.closed() => return,
                f = feed.recv() => match f {
                    Some(Feed::Batch { slot, events, cursor }) => {
                        self.cursors[slot] = self.cursors[slot].max(cursor);
                        self.buffered += events.len();
                        for e in events {
                            self.buffer.entry(e.kv.mod_revision).or_default().push(e);
                        }
                        if self.buffered > WATCH_BUFFER_EVENTS_MAX {
                            let e = MeridianError::unavailable(format!(
                                "more than {WATCH_BUFFER_EVENTS_MAX} events wait for a range of this watch that does not catch up"
                            ));
                            let _ = self.out.send(WatchMessage::Failed(e)).await;
                            return;
                        }
                        if !self.release().await {
                            return;
                        }
                        if let Some((&top, _)) = self.buffer.last_key_value() {
                            self.advance(top, &done_tx);
                        }
                    }
                    Some(Feed::End(m)) => {
                        let _ = self.out.send(m).await;
                        return;
                    }
                    None => return,
                },
                Some(slot) = done_rx.recv() => {
                    self.advancing[slot] = false;
                    if let Some((&top, _)) = self.buffer.last_key_value() {
                        self.advance(top, &done_tx);
                    }
                }
                _ = asked.notified() => {
                    if !self.progress(&done_tx).await {
                        return;
                    }
                }
                _ = tick => {
                    next_progress = every.map(|d| Instant::now() + d);
                    if !self.progress(&done_tx).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sends every buffered event every range has passed; false once the client is gone.
    async fn release(&mut self) -> bool {
        let low = self.cursors.iter().copied().min().unwrap_or(0);
        if low <= self.released && self.buffer.first_key_value().is_none_or(|(r, _)| *r > low) {
            return true;
        }
        let rest = self.buffer.split_off(&low.saturating_add(1));
        let ready = std::mem::replace(&mut self.buffer, rest);
        self.released = self.released.max(low);
        let events: Vec<WatchEvent> = ready.into_values().flatten().collect();
        if events.is_empty() {
            return true;
        }
        self.buffered -= events.len();
        let n = events.len() as u64;
        let msg = WatchMessage::Events {
            events,
            revision: self.released,
        };
        if self.out.send(msg).await.is_err() {
            return false;
        }
        self.node.inner.metrics.watch_events.inc_by(n);
        true
    }

    /// A progress notification; first asks lagging ranges to catch up with the others, so
    /// the next one reports a revision every range has passed.
    async fn progress(&mut self, done: &mpsc::Sender<usize>) -> bool {
        if let Some(&top) = self.cursors.iter().max() {
            self.advance(top, done);
        }
        let revision = self.released;
        self.out
            .send(WatchMessage::Progress { revision })
            .await
            .is_ok()
    }

    /// Asks every range whose cursor is below `to` (and has no advance in flight) to advance.
    fn advance(&mut self, to: u64, done: &mpsc::Sender<usize>) {
        for slot in 0..self.groups.len() {
            if self.cursors[slot] >= to || self.advancing[slot] {
                continue;
            }
            self.advancing[slot] = true;
            let (node, group, done) = (self.node.clone(), self.groups[slot], done.clone());
            tokio::spawn(async move {
                if let Err(e) = node.execute(group, GroupOp::Advance { to }).await {
                    tracing::debug!(group_id = group.0, error = %e, "watch could not advance a range");
                    tokio::time::sleep(WATCH_RETRY_PAUSE).await;
                }
                let _ = done.send(slot).await;
            });
        }
    }
}
