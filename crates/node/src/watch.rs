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
//! Order: within a range, revision order (the events of one txn in key order). A watch over
//! keys of several ranges interleaves the ranges' feeds as they arrive; each range stays in
//! order, so every key's changes are in order, but two keys of different ranges may arrive out
//! of revision order. Progress notifications report the lowest cursor over the ranges: every
//! event at or below it has been sent.

use crate::messages::{GroupOp, GroupReply};
use crate::node::Node;
use meridian_state::{RangeInfo, WatchEvent};
use meridian_types::{ErrorCode, GroupId, MeridianError, NodeId};
use parking_lot::Mutex;
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

/// The cursors of a watch's pollers, one per range (`None` until the first poll answered).
type Cursors = Arc<Mutex<Vec<Option<u64>>>>;

fn lowest(cursors: &Cursors) -> Option<u64> {
    let c = cursors.lock();
    c.iter()
        .copied()
        .collect::<Option<Vec<u64>>>()?
        .into_iter()
        .min()
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
        let cursors: Cursors = Arc::new(Mutex::new(vec![None; ranges.len()]));
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
                cursors: cursors.clone(),
                tx: tx.clone(),
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
        let start_after = pollers.iter().filter_map(|p| p.after).min().unwrap_or(0);
        for p in pollers {
            tokio::spawn(p.run());
        }
        let progress = Arc::new(Notify::new());
        tokio::spawn(progress_loop(
            tx,
            cursors,
            progress.clone(),
            spec.progress_every,
        ));
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
            if after.is_none() || !batch.events.is_empty() || Instant::now() >= deadline {
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
    cursors: Cursors,
    tx: mpsc::Sender<WatchMessage>,
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
                        .tx
                        .send(WatchMessage::Failed(MeridianError::new(
                            ErrorCode::NotInitialized,
                            "the cluster map is not known",
                        )))
                        .await;
                    return;
                }
            }
            let to = candidates[idx];
            let poll = self.poll(to);
            let result = tokio::select! {
                r = poll => r,
                _ = self.tx.closed() => return,
                _ = stop.changed() => {
                    let _ = self.tx.send(WatchMessage::Failed(MeridianError::unavailable("the node is shutting down"))).await;
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
                    if !events.is_empty() {
                        let n = events.len() as u64;
                        let msg = WatchMessage::Events {
                            events,
                            revision: cursor,
                        };
                        if self.tx.send(msg).await.is_err() {
                            return;
                        }
                        self.node.inner.metrics.watch_events.inc_by(n);
                    }
                    self.after = Some(cursor);
                    self.cursors.lock()[self.slot] = Some(cursor);
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
                        .tx
                        .send(WatchMessage::Compacted { compact_revision })
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

/// Sends progress notifications: periodically when asked for, and on request.
async fn progress_loop(
    tx: mpsc::Sender<WatchMessage>,
    cursors: Cursors,
    asked: Arc<Notify>,
    every: Option<Duration>,
) {
    loop {
        let tick = async {
            match every {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tx.closed() => return,
            _ = asked.notified() => {}
            _ = tick => {}
        }
        // Before the first poll of every range answers there is no revision to report yet;
        // etcd reports its current revision, the lowest cursor is the honest equivalent.
        let revision = lowest(&cursors).unwrap_or(0);
        if tx.send(WatchMessage::Progress { revision }).await.is_err() {
            return;
        }
    }
}
