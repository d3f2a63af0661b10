//! Pipelined AppendEntries: a leader keeps several AppendEntries of one replication stream in
//! flight to a follower instead of waiting one round trip per request.
//!
//! openraft replicates through a stream of AppendEntries per follower. Its default sends one,
//! waits for the answer, then sends the next, so after every commit the request that carries
//! the new commit index holds the stream for a whole round trip and the next write waits behind
//! it: two round trips per write on a WAN link (measured: 157 ms for a 75 ms link). Here the
//! sender ([`GroupNet::stream_append`]) sends each request as soon as openraft produces it (up
//! to [`APPEND_INFLIGHT_MAX`]) and yields the answers in request order, as openraft requires.
//!
//! Independent RPCs may arrive out of order, so every request of a stream carries an
//! [`AppendSeq`] and the follower's [`AppendGate`] handles the requests of one stream in
//! sequence order. A request whose predecessor never arrives (lost with its connection) waits at
//! most [`GATE_WAIT_MAX`] and then goes on: Raft stays safe under reordering (a request whose
//! previous entry is missing is refused as a conflict and the leader backs up), the gate only
//! keeps that from happening in the common case. A request sent while none is in flight starts a
//! new session (sequence 0, which never waits): nothing before it is unanswered, and the
//! follower may have forgotten an idle session (it keeps [`GATE_SESSIONS_MAX`] per group, and
//! every heartbeat is a stream of its own).
//!
//! After every commit openraft sends an entry-less request that only carries the new commit
//! index, and under load the next batch's request follows it a few hundred microseconds later:
//! two round trips, two follower wake-ups and two log writes per batch where one would do. The
//! sender holds such a request back for up to [`COMMIT_HOLD_MAX`]; when the stream's next request
//! comes meanwhile it carries the commit (its `leader_commit` is at least as new) and its answer
//! answers both, else the held request goes out alone. A success of the later request implies
//! the held one's (the follower matched the leader's log through a later entry of the same
//! term); any other answer ends the stream with a network error for the held one, which
//! openraft answers by starting a new stream. openraft credits the held request's acknowledgement
//! to the time it produced it, earlier than the real send: leases and freshness proofs only get
//! shorter.

use crate::network::RaftRouter;
use crate::typ::{Snapshot, TypeConfig, Vote};
use futures::stream::{FuturesOrdered, StreamExt};
use meridian_types::GroupId;
use openraft::OptionalSend;
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{RPCError, ReplicationClosed, StreamingError};
use openraft::network::RPCOption;
use openraft::network::v2::RaftNetworkV2;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft_multi::GroupRouter;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Most AppendEntries of one stream in flight at once. Beyond it openraft batches the entries
/// that pile up into the next request.
pub const APPEND_INFLIGHT_MAX: usize = 16;
/// Longest a follower holds a request back waiting for an earlier one of the same stream.
pub const GATE_WAIT_MAX: Duration = Duration::from_millis(500);
/// Longest an entry-less (commit-only) request waits for the stream's next request to carry
/// it. Bounds how much later a follower learns a commit when no write follows.
pub const COMMIT_HOLD_MAX: Duration = Duration::from_millis(1);
/// Streams a follower remembers per group; the least recently used is forgotten beyond it.
const GATE_SESSIONS_MAX: usize = 64;

/// Where one request sits in its replication stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendSeq {
    /// Unique per stream: this process's incarnation mixed with a counter.
    pub session: u64,
    /// 0, 1, 2, ... within the stream.
    pub seq: u64,
}

/// A new stream id: a random per-process base plus a counter, so a restarted leader never
/// reuses an id a follower still remembers.
fn new_session() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(crate::freshness::new_incarnation);
    base.wrapping_add(
        NEXT.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

/// The network to one target for one group: unary RPCs through the router, AppendEntries
/// pipelined.
#[derive(Clone)]
pub(crate) struct GroupNet {
    pub(crate) router: RaftRouter,
    pub(crate) target: u64,
    pub(crate) group: GroupId,
}

/// The log ids a request covers: its previous entry and its last (the previous when empty).
type LogIdRange = (Option<crate::typ::LogId>, Option<crate::typ::LogId>);

fn log_id_range(req: &AppendEntriesRequest<TypeConfig>) -> LogIdRange {
    let prev = req.prev_log_id;
    let last = req.entries.last().map(|e| e.log_id).or(prev);
    (prev, last)
}

/// What the stream yields for one answer, and whether it may go on after it: not after an
/// error, a conflict, a higher vote or a partial success (openraft resends from there).
fn stream_result(
    resp: Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>>,
    (prev, last): LogIdRange,
) -> (
    Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>,
    bool,
) {
    match resp {
        Err(e) => (Err(e), false),
        Ok(resp) => {
            let full = match &resp {
                AppendEntriesResponse::PartialSuccess(m) => *m == last,
                other => other.is_success(),
            };
            let r = resp.into_stream_result(prev, last);
            let go_on = full && r.is_ok();
            (Ok(r), go_on)
        }
    }
}

impl RaftNetworkV2<TypeConfig> for GroupNet {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.router
            .append_entries_seq(self.target, self.group, rpc, option, None)
            .await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>>
            + OptionalSend
            + Unpin
            + 'static,
    {
        let state = PipeState {
            net: self.clone(),
            input,
            input_done: false,
            stopped: false,
            // Both set by the first `send` (nothing is in flight then).
            session: 0,
            next_seq: 0,
            inflight: FuturesOrdered::new(),
            held: None,
            owed: None,
            option,
        };
        let strm = futures::stream::unfold(state, |mut st| async move {
            let item = st.next_answer().await?;
            Some((item, st))
        });
        Box::pin(async move {
            let strm: BoxStream<'s, _> = Box::pin(strm);
            Ok(strm)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.router.vote(self.target, self.group, rpc, option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.router
            .pre_vote(self.target, self.group, rpc, option)
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        self.router
            .full_snapshot(self.target, self.group, vote, snapshot, cancel, option)
            .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.router
            .transfer_leader(self.target, self.group, req, option)
            .await
    }
}

/// An answer, the log ids of its request, and those of a held request it also answers.
type AppendFuture = BoxFuture<
    'static,
    (
        Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>>,
        LogIdRange,
        Option<LogIdRange>,
    ),
>;

type Answer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// Whether `next` may carry the held entry-less request `held`: same leader, not behind it, and
/// a commit index at least as new.
fn may_carry(
    held: &AppendEntriesRequest<TypeConfig>,
    next: &AppendEntriesRequest<TypeConfig>,
) -> bool {
    held.entries.is_empty()
        && next.vote == held.vote
        && next.prev_log_id >= held.prev_log_id
        && next.leader_commit >= held.leader_commit
}

/// The answer of a held request whose carrier got `carrier`: success when the carrier fully
/// succeeded, else a network error (openraft starts a new stream).
fn carried_answer(carrier: &Answer, go_on: bool, (prev, last): LogIdRange) -> Answer {
    if go_on && matches!(carrier, Ok(Ok(_))) {
        Ok(AppendEntriesResponse::<TypeConfig>::Success.into_stream_result(prev, last))
    } else {
        Err(RPCError::Network(
            openraft::error::NetworkError::from_string(
                "the request carrying this commit update failed".to_string(),
            ),
        ))
    }
}

/// One pipelined stream's sender side.
struct PipeState<S> {
    net: GroupNet,
    input: S,
    input_done: bool,
    /// Set after an answer that ends the stream; nothing more is yielded.
    stopped: bool,
    next_seq: u64,
    inflight: FuturesOrdered<AppendFuture>,
    /// An entry-less request held back (see [`COMMIT_HOLD_MAX`]) and when it was held.
    held: Option<(AppendEntriesRequest<TypeConfig>, Instant)>,
    /// The answer of a carrier, yielded after the held request's it also answered.
    owed: Option<(Answer, bool)>,
    option: RPCOption,
    session: u64,
}

impl<S> PipeState<S>
where
    S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + Unpin,
{
    /// Sends requests as openraft produces them and returns the next answer in order; `None`
    /// when the stream is over.
    async fn next_answer(
        &mut self,
    ) -> Option<Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>> {
        if self.stopped {
            return None;
        }
        if let Some((item, go_on)) = self.owed.take() {
            self.stopped = !go_on;
            return Some(item);
        }
        loop {
            if self.input_done && self.inflight.is_empty() && self.held.is_none() {
                return None;
            }
            let may_send = !self.input_done && self.inflight.len() < APPEND_INFLIGHT_MAX;
            let hold_until = self.held.as_ref().map(|(_, at)| *at + COMMIT_HOLD_MAX);
            // Lazy: no timer is made (nor the clock read) unless a request is held.
            let hold_expired = async {
                if let Some(t) = hold_until {
                    tokio::time::sleep_until(t).await
                }
            };
            tokio::select! {
                biased;
                Some((resp, range, carried)) = self.inflight.next(), if !self.inflight.is_empty() => {
                    let (item, go_on) = stream_result(resp, range);
                    let Some(held_range) = carried else {
                        self.stopped = !go_on;
                        return Some(item);
                    };
                    let first = carried_answer(&item, go_on, held_range);
                    if first.is_ok() {
                        self.owed = Some((item, go_on));
                    } else {
                        self.stopped = true;
                    }
                    return Some(first);
                }
                _ = hold_expired, if hold_until.is_some() => {
                    if let Some((req, _)) = self.held.take() {
                        self.send_now(req, None);
                    }
                }
                req = self.input.next(), if may_send => match req {
                    None => {
                        self.input_done = true;
                        if let Some((req, _)) = self.held.take() {
                            self.send_now(req, None);
                        }
                    }
                    Some(req) => self.send(req),
                },
            }
        }
    }

    /// Sends `req`, or holds it back when it only carries a commit index (see
    /// [`COMMIT_HOLD_MAX`]); a held request goes with `req` when `req` may carry it.
    fn send(&mut self, req: AppendEntriesRequest<TypeConfig>) {
        if let Some((held, _)) = self.held.take() {
            if may_carry(&held, &req) {
                self.send_now(req, Some(log_id_range(&held)));
                return;
            }
            // Not carried: the held request goes first, in its place in the stream.
            self.send_now(held, None);
        }
        if req.entries.is_empty() && !self.input_done {
            self.held = Some((req, Instant::now()));
            return;
        }
        self.send_now(req, None);
    }

    fn send_now(&mut self, req: AppendEntriesRequest<TypeConfig>, carried: Option<LogIdRange>) {
        if self.inflight.is_empty() {
            // Every earlier request is answered, so this one waits for none of them: a new
            // session whose first request the follower runs at once. Continuing the old one
            // would make the follower wait `GATE_WAIT_MAX` if it had forgotten the session
            // meanwhile (heartbeats open a session each, 10 a second, and the gate keeps 64).
            self.session = new_session();
            self.next_seq = 0;
        }
        let seq = AppendSeq {
            session: self.session,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let range = log_id_range(&req);
        let net = self.net.clone();
        let option = self.option.clone();
        self.inflight.push_back(Box::pin(async move {
            let r = net
                .router
                .append_entries_seq(net.target, net.group, req, option, Some(seq))
                .await;
            (r, range, carried)
        }));
    }
}

/// A follower's side: runs the requests of each stream in sequence order.
#[derive(Default)]
pub(crate) struct AppendGate {
    sessions: parking_lot::Mutex<HashMap<u64, Session>>,
    /// Requests that waited the whole [`GATE_WAIT_MAX`] for a predecessor.
    timeouts: AtomicU64,
}

struct Session {
    /// Every request below this sequence number is done (or was given up on).
    done_below: watch::Sender<u64>,
    last_used: Instant,
}

impl AppendGate {
    /// Runs `f` once every earlier request of its stream is done (or [`GATE_WAIT_MAX`] passed).
    pub(crate) async fn in_order<T>(
        &self,
        seq: Option<AppendSeq>,
        f: impl Future<Output = T>,
    ) -> T {
        let Some(seq) = seq else {
            return f.await;
        };
        let mut rx = self.session(seq.session);
        // A missing predecessor only delays; see the module docs.
        if tokio::time::timeout(GATE_WAIT_MAX, rx.wait_for(|d| *d >= seq.seq))
            .await
            .is_err()
        {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        let out = f.await;
        if let Some(s) = self.sessions.lock().get(&seq.session) {
            s.done_below.send_modify(|d| *d = (*d).max(seq.seq + 1));
        }
        out
    }

    /// How many requests waited the whole [`GATE_WAIT_MAX`] for a predecessor that did not come.
    pub(crate) fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    fn session(&self, id: u64) -> watch::Receiver<u64> {
        let mut sessions = self.sessions.lock();
        let now = Instant::now();
        let full = !sessions.contains_key(&id) && sessions.len() >= GATE_SESSIONS_MAX;
        if let Some(oldest) = full
            .then(|| {
                sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| *k)
            })
            .flatten()
        {
            sessions.remove(&oldest);
        }
        let s = sessions.entry(id).or_insert_with(|| Session {
            done_below: watch::channel(0).0,
            last_used: now,
        });
        s.last_used = now;
        s.done_below.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_gate_runs_one_stream_in_sequence_order() {
        let gate = Arc::new(AppendGate::default());
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Arrive in reverse order.
        for seq in (0..5u64).rev() {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                gate.in_order(Some(AppendSeq { session: 7, seq }), async {
                    order.lock().push(seq);
                })
                .await
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_lost_predecessor_only_delays() {
        let gate = AppendGate::default();
        let t0 = Instant::now();
        gate.in_order(Some(AppendSeq { session: 1, seq: 3 }), async {})
            .await;
        assert!(t0.elapsed() >= GATE_WAIT_MAX);
        assert_eq!(gate.timeouts(), 1);
        // The stream goes on from there without waiting again.
        let t1 = Instant::now();
        gate.in_order(Some(AppendSeq { session: 1, seq: 4 }), async {})
            .await;
        assert!(t1.elapsed() < GATE_WAIT_MAX);
    }

    fn lid(index: u64) -> crate::typ::LogId {
        use openraft::vote::RaftLeaderId;
        crate::typ::LogId::new(openraft::impls::leader_id_adv::LeaderId::new(1, 1), index)
    }

    fn req(term: u64, prev: u64, entries: u64, commit: u64) -> AppendEntriesRequest<TypeConfig> {
        use openraft::entry::RaftEntry;
        AppendEntriesRequest {
            vote: Vote::new_committed(term, 1),
            prev_log_id: Some(lid(prev)),
            leader_commit: Some(lid(commit)),
            entries: (prev + 1..=prev + entries)
                .map(|i| crate::typ::Entry::new_blank(lid(i)))
                .collect(),
        }
    }

    #[test]
    fn only_a_later_request_of_the_same_leader_carries_a_commit_update() {
        let held = req(1, 5, 0, 5);
        assert!(may_carry(&held, &req(1, 5, 3, 5)), "the next batch");
        assert!(may_carry(&held, &req(1, 7, 1, 6)), "a later one");
        assert!(may_carry(&held, &req(1, 5, 0, 5)), "another commit update");
        assert!(
            !may_carry(&held, &req(1, 4, 2, 5)),
            "behind the held request"
        );
        assert!(!may_carry(&held, &req(1, 5, 2, 4)), "an older commit index");
        assert!(!may_carry(&held, &req(2, 5, 2, 5)), "another leader");
        assert!(
            !may_carry(&req(1, 5, 1, 5), &req(1, 6, 1, 6)),
            "the held one has entries"
        );
    }

    #[test]
    fn a_carried_request_succeeds_only_with_its_carrier() {
        let held = (Some(lid(5)), Some(lid(5)));
        let ok: Answer = Ok(Ok(Some(lid(8))));
        assert_eq!(carried_answer(&ok, true, held).unwrap(), Ok(Some(lid(5))));
        // A partial success, a conflict or an error of the carrier: the held one fails as a
        // network error, never as a conflict of its own.
        assert!(carried_answer(&ok, false, held).is_err());
        let conflict: Answer = Ok(Err(openraft::raft::StreamAppendError::Conflict(lid(6))));
        assert!(carried_answer(&conflict, false, held).is_err());
        let down: Answer = Err(RPCError::Network(
            openraft::error::NetworkError::from_string("down".to_string()),
        ));
        assert!(carried_answer(&down, false, held).is_err());
    }

    #[tokio::test]
    async fn requests_without_a_sequence_are_not_held() {
        let gate = AppendGate::default();
        assert_eq!(gate.in_order(None, async { 5 }).await, 5);
    }
}
