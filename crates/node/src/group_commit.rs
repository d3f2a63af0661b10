//! Group commit on a group's leader, shared by key-value writes (`kv_batch.rs`), stream
//! publishes (`stream_batch.rs`) and queue commands (`queue_batch.rs`).
//!
//! A write that finds no proposal of its group in flight leaves at once, alone. Writes that
//! arrive while one is in flight wait and leave together as one batch when it commits: openraft's
//! cost is per entry far more than per byte, so 256 writers cost a few entries per round.
//!
//! Over a slow link one batch at a time splits the writers into two cohorts that take turns,
//! each waiting a whole round trip for the other's batch: on a 20 ms WAN a put took 48 ms at 64
//! clients. So when the quorum's round trip is at least [`PIPELINE_RTT_MIN`], the writes waiting
//! behind a proposal leave as a further batch once the youngest proposal has been in flight for a
//! tenth of that round trip ([`PIPELINE_BATCHES_PER_RTT`], at least [`PIPELINE_AFTER_MIN`]), up
//! to [`IN_FLIGHT_MAX`] in flight; each batch still reaches RaftCore in the order it left
//! ([`Turn`]). On one machine or in one zone the round trip is shorter, commits wait on CPU and
//! disk rather than on the network, and more, smaller batches would only cost more per write.

use crate::latency::LatencyTable;
use crate::metrics::Metrics;
use crate::probe::PEER_LIVE_WITHIN;
use meridian_consensus::RaftGroup;
use meridian_state::{Command, CommandResult};
use meridian_types::{GroupId, MeridianError, NodeId};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Proposals of one group in flight at once; later writes wait to batch.
pub const IN_FLIGHT_MAX: usize = 16;
/// The quorum round trip from which a group keeps more than one proposal in flight.
pub const PIPELINE_RTT_MIN: Duration = Duration::from_millis(2);
/// With pipelining on, a further batch leaves at most this many times per quorum round trip.
pub const PIPELINE_BATCHES_PER_RTT: u32 = 10;
/// The shortest wait before a further batch leaves, so a group sends at most a thousand batches
/// a second however short its round trip.
pub const PIPELINE_AFTER_MIN: Duration = Duration::from_millis(1);
/// How often a group's pipelining is worked out again from the latest round trips.
pub const PIPELINE_REFRESH: Duration = Duration::from_secs(1);

/// How long the youngest proposal of a group led by `me` with `voters` waits before the writes
/// behind it leave as a further batch; `None` keeps one proposal in flight. The quorum's round
/// trip is the one to the nearest live follower that completes a majority, each follower's
/// smallest recent probe (busy nodes queue most probes; the smallest is the link's own delay).
pub fn pipeline_after(me: NodeId, voters: &[NodeId], latency: &LatencyTable) -> Option<Duration> {
    let majority = voters.len() / 2 + 1;
    let needed = majority - usize::from(voters.contains(&me));
    if needed == 0 {
        return None;
    }
    let mut rtts: Vec<Duration> = voters
        .iter()
        .filter(|&&v| v != me && latency.is_live(v, PEER_LIVE_WITHIN))
        .filter_map(|&v| latency.min_rtt(v))
        .collect();
    rtts.sort_unstable();
    let quorum_rtt = *rtts.get(needed - 1)?;
    (quorum_rtt >= PIPELINE_RTT_MIN)
        .then(|| (quorum_rtt / PIPELINE_BATCHES_PER_RTT).max(PIPELINE_AFTER_MIN))
}

impl crate::node::Node {
    /// [`pipeline_after`] for `g`, from its voters and this node's round trips.
    pub(crate) fn pipeline_after(&self, g: &RaftGroup) -> Option<Duration> {
        pipeline_after(self.id(), &g.status().voters, &self.inner.latency)
    }
}

/// A batch's place in its group's order: its proposal reaches RaftCore after every batch that
/// left before it, so writes that leave in order (a `PublishStream`'s, say) are logged in order
/// even with several batches in flight.
pub(crate) struct Turn {
    /// Resolves (or fails) once the batch before this one has been submitted.
    prev: Option<oneshot::Receiver<()>>,
    /// Dropped once this batch has been submitted, which lets the next one go.
    _next: oneshot::Sender<()>,
}

impl Turn {
    /// Submits `cmd` to `g` in the group's order, then waits for its outcome, all within
    /// `timeout` (a deposed leader's proposal may never commit, and batched writers wait on it).
    pub(crate) async fn propose(
        mut self,
        g: &RaftGroup,
        cmd: Command,
        timeout: Duration,
    ) -> Result<CommandResult, MeridianError> {
        let proposed = async {
            self.wait().await;
            let proposal = g.submit(cmd).await;
            drop(self);
            proposal?.outcome().await
        };
        tokio::time::timeout(timeout, proposed)
            .await
            .unwrap_or_else(|_| {
                Err(MeridianError::unavailable(format!(
                    "group {} did not commit in time; it may or may not have been applied",
                    g.group()
                )))
            })
    }

    /// Returns once every batch that left before this one has been submitted (or gave up).
    async fn wait(&mut self) {
        if let Some(prev) = self.prev.take() {
            let _ = prev.await;
        }
    }
}

struct Slot<T> {
    /// `meridian_group_commit_batch_writes` and `_pipelined_batches`.
    stats: (Histogram, Counter),
    in_flight: usize,
    /// The turn of the batch after the last one launched.
    turn: Option<oneshot::Receiver<()>>,
    /// When the youngest proposal in flight left.
    youngest: Instant,
    /// A timer is armed to launch the waiting writes.
    timer: bool,
    /// The group's pipelining ([`pipeline_after`]) and when it was worked out.
    after: Option<Duration>,
    after_at: Option<Instant>,
    pending: Vec<T>,
}

/// The batching state of every group this node leads, for one kind of write.
pub(crate) struct GroupCommit<T> {
    groups: Mutex<BTreeMap<GroupId, Arc<Mutex<Slot<T>>>>>,
    /// Most writes one batch carries.
    batch_max: usize,
}

impl<T: Send + 'static> GroupCommit<T> {
    pub(crate) fn new(batch_max: usize) -> Self {
        GroupCommit {
            groups: Mutex::default(),
            batch_max,
        }
    }

    /// Queues `item` for group `g`. `run` proposes one batch (through its [`Turn`]) and answers
    /// its writers; it runs in a spawned task, never in the caller's future, so a caller that
    /// gives up (a timeout drops it) cannot take the group's slot with it. `after` works out the
    /// group's pipelining ([`pipeline_after`]) when the last reckoning is older than
    /// [`PIPELINE_REFRESH`].
    pub(crate) fn submit<F, Fut>(
        &self,
        g: GroupId,
        item: T,
        metrics: &Metrics,
        after: impl FnOnce() -> Option<Duration>,
        run: F,
    ) where
        F: Fn(Vec<T>, Turn) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let slot = self
            .groups
            .lock()
            .entry(g)
            .or_insert_with(|| {
                Arc::new(Mutex::new(Slot {
                    stats: (
                        metrics.group_commit_batch_writes.clone(),
                        metrics.group_commit_pipelined.clone(),
                    ),
                    in_flight: 0,
                    turn: None,
                    youngest: Instant::now(),
                    timer: false,
                    after: None,
                    after_at: None,
                    pending: Vec::new(),
                }))
            })
            .clone();
        {
            let mut s = slot.lock();
            s.pending.push(item);
            if s.after_at.is_none_or(|t| t.elapsed() >= PIPELINE_REFRESH) {
                s.after = after();
                s.after_at = Some(Instant::now());
            }
        }
        pump(slot, self.batch_max, run);
    }
}

/// Launches every batch the slot allows now, and arms a timer for the next one if writes wait.
fn pump<T, F, Fut>(slot: Arc<Mutex<Slot<T>>>, batch_max: usize, run: F)
where
    T: Send + 'static,
    F: Fn(Vec<T>, Turn) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut s = slot.lock();
    loop {
        if s.pending.is_empty() || s.in_flight >= IN_FLIGHT_MAX {
            return;
        }
        let now = Instant::now();
        if s.in_flight > 0 {
            // One proposal in flight, and no pipelining: the writes leave when it commits.
            let Some(after) = s.after else { return };
            let at = s.youngest + after;
            if now < at {
                if !s.timer {
                    s.timer = true;
                    let (slot, run) = (slot.clone(), run.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at).await;
                        slot.lock().timer = false;
                        pump(slot, batch_max, run);
                    });
                }
                return;
            }
        }
        let n = s.pending.len().min(batch_max);
        let batch: Vec<T> = s.pending.drain(..n).collect();
        s.stats.0.observe(n as f64);
        if s.in_flight > 0 {
            s.stats.1.inc();
        }
        s.in_flight += 1;
        s.youngest = now;
        let (next, turn) = oneshot::channel();
        let turn = Turn {
            prev: s.turn.replace(turn),
            _next: next,
        };
        let (slot, run) = (slot.clone(), run.clone());
        tokio::spawn(async move {
            run(batch, turn).await;
            slot.lock().in_flight -= 1;
            pump(slot, batch_max, run);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn pipelining_follows_the_quorum_round_trip() {
        let t = LatencyTable::new();
        let (a, b, c, d, e) = (NodeId(1), NodeId(2), NodeId(3), NodeId(4), NodeId(5));
        // No figures yet, or a single voter: one proposal at a time.
        assert_eq!(pipeline_after(a, &[a, b, c], &t), None);
        assert_eq!(pipeline_after(a, &[a], &t), None);
        t.record(b, ms(40));
        t.record(b, ms(20)); // the smallest recent probe counts
        t.record(c, ms(90));
        // Three voters: the nearest follower completes the majority.
        assert_eq!(pipeline_after(a, &[a, b, c], &t), Some(ms(2)));
        // Five voters: the second nearest; one without figures does not count.
        t.record(d, ms(50));
        assert_eq!(pipeline_after(a, &[a, b, c, d, e], &t), Some(ms(5)));
        assert_eq!(pipeline_after(a, &[a, b, e], &t), Some(ms(2)));
        assert_eq!(pipeline_after(a, &[a, d, e], &t), Some(ms(5)));
        // A short round trip waits at least the floor; loopback keeps one in flight.
        t.record(e, ms(3));
        assert_eq!(pipeline_after(a, &[a, d, e], &t), Some(PIPELINE_AFTER_MIN));
        t.record(e, Duration::from_micros(300));
        assert_eq!(pipeline_after(a, &[a, d, e], &t), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_that_stopped_answering_does_not_count() {
        let t = LatencyTable::new();
        let (a, b, c) = (NodeId(1), NodeId(2), NodeId(3));
        t.record(b, ms(20));
        t.record(c, ms(30));
        assert_eq!(pipeline_after(a, &[a, b, c], &t), Some(ms(2)));
        tokio::time::sleep(PEER_LIVE_WITHIN + ms(1)).await;
        t.record(c, ms(30));
        assert_eq!(pipeline_after(a, &[a, b, c], &t), Some(ms(3)));
    }

    type Log = Arc<Mutex<Vec<(u64, Vec<u32>)>>>;

    thread_local! {
        /// The metrics every test's group commit counts in (one test per thread).
        static METRICS: Metrics = Metrics::new();
    }

    /// Submits `items` at once; each batch takes `commit` and is logged with when it left (ms
    /// since `t0`).
    fn submit_all(gc: &GroupCommit<u32>, items: &[u32], after: Option<Duration>, log: &Log) {
        let t0 = Instant::now();
        for &i in items {
            let log = log.clone();
            let run = move |batch, _turn| {
                let log = log.clone();
                async move {
                    let at = t0.elapsed().as_millis() as u64;
                    log.lock().push((at, batch));
                    tokio::time::sleep(ms(20)).await;
                }
            };
            METRICS.with(|m| gc.submit(GroupId(1), i, m, || after, run));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn without_pipelining_writes_wait_for_the_commit_and_leave_together() {
        let (gc, log) = (GroupCommit::new(3), Log::default());
        submit_all(&gc, &[1], None, &log);
        tokio::task::yield_now().await;
        submit_all(&gc, &[2, 3, 4, 5], None, &log);
        tokio::time::sleep(ms(100)).await;
        METRICS.with(|m| assert_eq!(m.group_commit_pipelined.get(), 0));
        // The first leaves alone; the rest at its commit, at most three to a batch.
        assert_eq!(
            *log.lock(),
            vec![(0, vec![1]), (20, vec![2, 3, 4]), (40, vec![5])]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_pipelining_waiting_writes_leave_after_the_pause() {
        let (gc, log) = (GroupCommit::new(100), Log::default());
        let after = Some(ms(2));
        submit_all(&gc, &[1], after, &log);
        tokio::task::yield_now().await;
        submit_all(&gc, &[2, 3], after, &log);
        tokio::time::sleep(ms(1)).await;
        submit_all(&gc, &[4], after, &log);
        tokio::time::sleep(ms(100)).await;
        METRICS.with(|m| assert_eq!(m.group_commit_pipelined.get(), 1));
        let got = log.lock().clone();
        // 2, 3 and 4 leave together 2 ms after 1, not at its commit 20 ms later.
        assert_eq!(got, vec![(0, vec![1]), (2, vec![2, 3, 4])]);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_take_their_turns_in_the_order_they_left() {
        let (gc, log) = (GroupCommit::new(1), Arc::new(Mutex::new(Vec::new())));
        // Batch n waits 20 - 3n ms before its turn, so later batches are ready first; each
        // leaves 1 ms after the one before.
        for i in 0..5u64 {
            let log = log.clone();
            gc.submit(
                GroupId(1),
                i,
                &Metrics::new(),
                || Some(PIPELINE_AFTER_MIN),
                move |batch, mut turn| {
                    let log = log.clone();
                    async move {
                        tokio::time::sleep(ms(20 - 3 * batch[0])).await;
                        turn.wait().await;
                        log.lock().push(batch[0]);
                        drop(turn);
                        tokio::time::sleep(ms(20)).await;
                    }
                },
            );
        }
        tokio::time::sleep(ms(100)).await;
        assert_eq!(*log.lock(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn pipelining_stops_at_the_in_flight_limit() {
        let (gc, log) = (GroupCommit::new(100), Log::default());
        let after = Some(PIPELINE_AFTER_MIN);
        // A write every millisecond for 30 ms; each batch takes 20 ms to commit.
        for _ in 0..30 {
            submit_all(&gc, &[0], after, &log);
            tokio::time::sleep(ms(1)).await;
        }
        tokio::time::sleep(ms(100)).await;
        let got = log.lock().clone();
        let in_flight_max = (0..60)
            .map(|t| got.iter().filter(|(at, _)| *at <= t && t < at + 20).count())
            .max()
            .unwrap();
        assert_eq!(in_flight_max, IN_FLIGHT_MAX);
        assert_eq!(got.iter().map(|(_, b)| b.len()).sum::<usize>(), 30);
    }
}
