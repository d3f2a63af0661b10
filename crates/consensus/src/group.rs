//! [`RaftGroup`]: one Raft group on this node, the only face of openraft the rest of Meridian
//! sees.

use crate::freshness::{Echo, FollowerFreshness, LeaderSnapshot, Proof};
use crate::log_growth::LogGrowth;
use crate::log_store::GroupLogStore;
use crate::network::{
    M_APPEND, M_PRE_VOTE, M_SNAPSHOT, M_TRANSFER_LEADER, M_VOTE, NetFactory, RaftRouter,
};
use crate::pipeline::{AppendGate, AppendSeq};
use crate::read_rounds::{READ_ROUND_TIMEOUT, ReadRound, ReadRounds};
use crate::state_machine::GroupStateMachine;
use crate::typ::{Snapshot, SnapshotMeta, TypeConfig, Vote};
use meridian_state::{Command, CommandResult, GroupState};
use meridian_storage::LogStore;
use meridian_types::{ErrorCode, GroupId, MeridianError, NodeId};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::{BasicNode, Config, ReadPolicy, ServerState, SnapshotPolicy};
use openraft_multi::GroupNetworkFactory;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub(crate) type Raft = openraft::Raft<TypeConfig, GroupStateMachine>;

/// Timing and log-size settings shared by every group of a node.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// A snapshot is built after this many entries, and the log before it purged.
    pub snapshot_logs_max: u64,
    /// A snapshot is also built once the entries a replica appended since its last one (or
    /// since it started) take more bytes than this and than that snapshot (`log_growth.rs`).
    pub snapshot_log_bytes_min: u64,
    /// Entries kept in the log after a snapshot, so a briefly lagging follower needs no snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Encode, write and read snapshots on tokio's blocking pool, off the node's runtime
    /// threads; false does it inline (the deterministic simulation has no blocking pool).
    pub snapshot_io_off_runtime: bool,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            // etcd's defaults (--snapshot-count, --snapshot-catchup-entries): a snapshot
            // serializes the whole range, so building one every few thousand writes costs more
            // than it saves.
            snapshot_logs_max: 100_000,
            // With values of up to 1 MiB, 100,000 entries could be 100 GB of log.
            snapshot_log_bytes_min: 64 << 20,
            logs_kept_after_snapshot: 5_000,
            snapshot_io_off_runtime: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

/// A group's state as this node sees it.
#[derive(Clone, Debug, Serialize)]
pub struct GroupStatus {
    pub group: GroupId,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    /// The last log index purged (0: none).
    pub purged_index: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

/// One Raft group hosted on this node. A handle: clones share one [`GroupParts`] (a request
/// clones it on every lookup, so one reference count rather than one per part).
#[derive(Clone)]
pub struct RaftGroup(Arc<GroupParts>);

impl std::ops::Deref for RaftGroup {
    type Target = GroupParts;
    fn deref(&self) -> &GroupParts {
        &self.0
    }
}

/// What a [`RaftGroup`] handle points to.
pub struct GroupParts {
    pub(crate) group: GroupId,
    pub(crate) me: NodeId,
    pub(crate) raft: Raft,
    sm: GroupStateMachine,
    router: RaftRouter,
    freshness: Arc<FollowerFreshness>,
    /// Runs pipelined AppendEntries of one leader stream in order.
    gate: Arc<AppendGate>,
    /// Linearizable reads waiting for the next shared ReadIndex round (as leader).
    reads: ReadRounds,
    /// Reads on this replica as a follower, waiting for the next call to the leader.
    follower_reads: ReadRounds,
}

pub(crate) fn fatal(group: GroupId, e: impl std::fmt::Display) -> MeridianError {
    MeridianError::unavailable(format!("group {group} is not running: {e}"))
}

/// The error of a write RaftCore refused or gave up on.
fn write_error(group: GroupId, e: ClientWriteError<TypeConfig>) -> MeridianError {
    match e {
        ClientWriteError::ForwardToLeader(f) => {
            MeridianError::not_leader(group, f.leader_id.map(NodeId))
        }
        ClientWriteError::LogEntryDiscarded(f) => {
            let mut e = MeridianError::unavailable(format!(
                "leader of group {group} changed while the write was in flight; it may or may not have been applied"
            ));
            e.leader_hint = f.leader_id.map(|l| (group, NodeId(l)));
            e
        }
        e => MeridianError::internal(format!("write to group {group}: {e}")),
    }
}

/// A write queued by [`RaftGroup::submit`].
pub struct Proposal {
    group: GroupId,
    rx: openraft::type_config::alias::OneshotReceiverOf<
        TypeConfig,
        openraft::raft::ClientWriteResult<TypeConfig>,
    >,
}

impl Proposal {
    /// Waits for the write to be applied, and returns its result.
    pub async fn outcome(self) -> Result<CommandResult, MeridianError> {
        match self.rx.await {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(e)) => Err(write_error(self.group, e)),
            Err(e) => Err(fatal(self.group, e)),
        }
    }
}

impl RaftGroup {
    /// Opens (or recovers from disk) this node's replica of `group`.
    pub async fn open(
        cfg: &GroupConfig,
        me: NodeId,
        group: GroupId,
        store: Arc<dyn LogStore>,
        router: RaftRouter,
    ) -> Result<Self, MeridianError> {
        let config = Config {
            cluster_name: format!("group-{}", group.0),
            heartbeat_interval: cfg.heartbeat_interval_ms,
            election_timeout_min: cfg.election_timeout_min_ms,
            election_timeout_max: cfg.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_logs_max),
            max_in_snapshot_log_to_keep: cfg.logs_kept_after_snapshot,
            enable_pre_vote: Some(true),
            // A restarted leader must win a new election, never resume its old term: our state
            // machines live in memory and the commit index is not fsynced, and after a power
            // loss the leader may lack entries of its term that followers hold; resuming would
            // reuse those indexes for different entries (found by the simulation, seed 17).
            enable_leader_restore: Some(false),
            ..Default::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| MeridianError::internal(format!("raft config: {e}")))?,
        );
        let growth = Arc::new(LogGrowth::new(
            cfg.snapshot_log_bytes_min,
            cfg.logs_kept_after_snapshot,
        ));
        let log = GroupLogStore::new(group, store.clone(), growth.clone());
        let sm = GroupStateMachine::open(group, store, growth.clone(), cfg.snapshot_io_off_runtime)
            .map_err(|e| {
                MeridianError::new(
                    ErrorCode::Corruption,
                    format!("open state of group {group}: {e}"),
                )
            })?;
        let net = NetFactory(GroupNetworkFactory::new(router.clone(), group));
        let raft = Raft::new(me.0, config, net, log, sm.clone())
            .await
            .map_err(|e| {
                // openraft wraps the store's error in its own; keep the code of a checksum
                // mismatch so callers can tell bad data from a passing failure.
                let text = e.to_string();
                if text.contains("corrupt") {
                    MeridianError::new(ErrorCode::Corruption, format!("open group {group}: {text}"))
                } else {
                    fatal(group, e)
                }
            })?;
        let metrics = raft.metrics();
        router.register(
            group,
            Box::new(move || {
                let m = metrics.borrow_watched();
                LeaderSnapshot {
                    me: m.id,
                    state: m.state,
                    current_term: m.current_term,
                    committed: m.local_committed.map(|c| {
                        let by = c.committed_leader_id();
                        (by.term, by.node_id, c.index())
                    }),
                    // openraft's instant wraps tokio's; read `now` first so the converted time
                    // can only come out earlier than the real one (the safe side).
                    quorum_acked: m.last_quorum_acked.and_then(|t| {
                        let now = tokio::time::Instant::now();
                        now.checked_sub(openraft::Instant::elapsed(&t.into_inner()))
                    }),
                }
            }),
        );
        let parts = Arc::new(GroupParts {
            group,
            me,
            raft,
            sm,
            router,
            freshness: Arc::new(FollowerFreshness::new(crate::freshness::new_incarnation())),
            gate: Arc::default(),
            reads: ReadRounds::default(),
            follower_reads: ReadRounds::default(),
        });
        growth.attach(Arc::downgrade(&parts));
        Ok(Self(parts))
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Makes this replica the first member of a new group with the given voters. A group that
    /// is already initialised is left as it is.
    pub async fn initialize(&self, voters: &BTreeMap<NodeId, String>) -> Result<(), MeridianError> {
        let members: BTreeMap<u64, BasicNode> = voters
            .iter()
            .map(|(id, addr)| (id.0, BasicNode { addr: addr.clone() }))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(e)) => {
                tracing::debug!(group_id = self.group.0, error = %e, "group already initialised");
                Ok(())
            }
            Err(RaftError::Fatal(e)) => Err(fatal(self.group, e)),
        }
    }

    /// Proposes a command; returns its result once it is committed on a quorum (fsynced there)
    /// and applied here.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, MeridianError> {
        self.submit(cmd).await?.outcome().await
    }

    /// Queues `cmd` in RaftCore and returns once it is queued, with the [`Proposal`] to wait on:
    /// writes submitted one after another reach the log in that order (while this node leads).
    pub async fn submit(&self, cmd: Command) -> Result<Proposal, MeridianError> {
        let (responder, rx) = openraft::impls::ProgressResponder::complete_only();
        self.raft
            .client_write_ff(crate::typ::SharedCommand(Arc::new(cmd)), Some(responder))
            .await
            .map_err(|e| fatal(self.group, e))?;
        Ok(Proposal {
            group: self.group,
            rx,
        })
    }

    /// Waits until a read served from this replica's state is linearizable: this node leads
    /// the group (confirmed by a quorum, or within its lease when `lease`) and has applied every
    /// entry committed before the read began.
    pub async fn read_barrier(&self, lease: bool) -> Result<(), MeridianError> {
        if lease {
            // Boxed: callers' futures nest deep enough already (a test crate hit rustc's
            // layout depth limit when this future was inline).
            let index = Box::pin(self.confirm_leadership(ReadPolicy::LeaseRead)).await?;
            return self.wait_applied(index, READ_ROUND_TIMEOUT).await;
        }
        let index = self.read_index().await?;
        self.wait_applied(index, READ_ROUND_TIMEOUT).await
    }

    /// The leader's side of a linearizable read (here or on a follower): confirms, in a round
    /// shared with every read waiting when it began, that this node still leads, and returns
    /// the index a replica must have applied before serving a read that began before the call.
    pub async fn read_index(&self) -> Result<u64, MeridianError> {
        let g = self.clone();
        let round: ReadRound = Arc::new(move || {
            let g = g.clone();
            Box::pin(async move { g.confirm_leadership(ReadPolicy::ReadIndex).await })
        });
        self.reads.join(round).await
    }

    /// A follower's linearizable read: `ask_leader` gets the leader's [`Self::read_index`]
    /// (one call serves every read waiting on this replica when it is made), then this replica
    /// waits until it has applied that far, at most `catch_up`.
    pub async fn follower_read_barrier(
        &self,
        ask_leader: ReadRound,
        catch_up: std::time::Duration,
    ) -> Result<(), MeridianError> {
        let index = self.follower_reads.join(ask_leader).await?;
        self.wait_applied(index, catch_up).await
    }

    /// Waits until this replica has applied the entry at `index`, at most `timeout`
    /// (`unavailable` then, with the leader as a hint).
    pub async fn wait_applied(
        &self,
        index: u64,
        timeout: std::time::Duration,
    ) -> Result<(), MeridianError> {
        let applied = |g: &Self| g.sm.data.read().last_applied.map(|l| l.index);
        if applied(self) >= Some(index) {
            return Ok(());
        }
        match self
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
        {
            Ok(_) => Ok(()),
            Err(openraft::metrics::WaitError::Timeout(..)) => {
                let mut e = MeridianError::unavailable(format!(
                    "replica of group {} did not apply index {index} within {timeout:?}",
                    self.group
                ));
                e.leader_hint = self.leader().map(|l| (self.group, l));
                Err(e)
            }
            Err(e) => Err(fatal(self.group, e)),
        }
    }

    /// One leadership confirmation by `policy`; returns the read index (not waiting for it to
    /// be applied here).
    async fn confirm_leadership(&self, policy: ReadPolicy) -> Result<u64, MeridianError> {
        match self.raft.get_read_linearizer(policy).await {
            Ok(l) => Ok(l.read_log_id().index()),
            Err(RaftError::APIError(openraft::error::LinearizableReadError::ForwardToLeader(
                f,
            ))) => Err(MeridianError::not_leader(
                self.group,
                f.leader_id.map(NodeId),
            )),
            Err(RaftError::APIError(e)) => Err(MeridianError::unavailable(format!(
                "read on group {}: {e}",
                self.group
            ))),
            Err(RaftError::Fatal(e)) => Err(fatal(self.group, e)),
        }
    }

    /// Reads the applied state. The closure runs under a lock: keep it short, never block.
    pub fn read<R>(&self, f: impl FnOnce(&GroupState) -> R) -> R {
        f(&self.sm.data.read().state)
    }

    /// A receiver that changes whenever this replica applies entries or installs a snapshot
    /// (watchers wait on it, then read the applied state).
    pub fn subscribe_applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sm.applied.subscribe()
    }

    /// How far behind the latest acknowledged write this replica's applied state may be, proven
    /// from the leader's freshness proofs (see `freshness.rs`); `None` when it cannot say (no
    /// recent contact with a leader, or not yet applied up to a proven commit index). Meant for
    /// followers: a leader serves fresh reads through [`RaftGroup::read_barrier`].
    pub fn staleness_bound(&self) -> Option<std::time::Duration> {
        let applied = self
            .sm
            .data
            .read()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0);
        self.freshness.staleness(applied)
    }

    /// Reads the applied state like [`RaftGroup::read`], and reports how stale what was read may
    /// be ([`RaftGroup::staleness_bound`] for the applied index the closure saw, measured after it
    /// ran).
    pub fn read_with_staleness<R>(
        &self,
        f: impl FnOnce(&GroupState) -> R,
    ) -> (R, Option<std::time::Duration>) {
        let (r, applied) = {
            let d = self.sm.data.read();
            (f(&d.state), d.last_applied.map(|l| l.index).unwrap_or(0))
        };
        (r, self.freshness.staleness(applied))
    }

    /// Reads the applied state and reports the applied index the closure saw.
    pub fn read_at<R>(&self, f: impl FnOnce(&GroupState) -> R) -> (R, u64) {
        let d = self.sm.data.read();
        (f(&d.state), d.last_applied.map(|l| l.index).unwrap_or(0))
    }

    /// Waits until this replica has applied an entry past `index`, at most `timeout`; answers
    /// whether it has (long polls wait on it instead of polling the state).
    pub async fn wait_applied_past(&self, index: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.raft.metrics();
        let wait = async {
            loop {
                let applied = rx
                    .borrow_watched()
                    .last_applied
                    .map(|l| l.index)
                    .unwrap_or(0);
                if applied > index {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.raft
            .metrics()
            .borrow_watched()
            .current_leader
            .map(NodeId)
    }

    /// AppendEntries this replica held back the whole `GATE_WAIT_MAX` waiting for an earlier
    /// request of the same replication stream (`consensus::pipeline`): 0 unless a request was
    /// lost or the stream's order could not be followed.
    pub fn append_gate_timeouts(&self) -> u64 {
        self.gate.timeouts()
    }

    pub fn status(&self) -> GroupStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let role = match (m.running_state.is_ok(), m.state) {
            (false, _) => Role::Shutdown,
            (_, ServerState::Leader) => Role::Leader,
            (_, ServerState::Follower) => Role::Follower,
            (_, ServerState::Candidate) => Role::Candidate,
            (_, ServerState::Learner) => Role::Learner,
            (_, ServerState::Shutdown) => Role::Shutdown,
        };
        let mem = m.membership_config.membership();
        let voters: BTreeSet<u64> = mem.voter_ids().collect();
        let learners: BTreeSet<u64> = mem.learner_ids().collect();
        GroupStatus {
            group: self.group,
            role,
            leader: m.current_leader.map(NodeId),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            committed_index: m.local_committed.map(|l| l.index).unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            voters: voters.into_iter().map(NodeId).collect(),
            learners: learners.into_iter().map(NodeId).collect(),
        }
    }

    /// The applied index and a hash of the applied state: replicas of a group at the same
    /// applied index must report the same hash (a check for simulations and tests).
    pub fn state_digest(&self) -> (u64, u64) {
        use std::hash::{Hash, Hasher};
        let d = self.sm.data.read();
        let bytes = postcard::to_allocvec(&d.state).unwrap_or_default();
        let mut h = std::hash::DefaultHasher::new();
        bytes.hash(&mut h);
        (d.last_applied.map(|l| l.index).unwrap_or(0), h.finish())
    }

    /// Adds a non-voting member that receives the log (and a snapshot if it is far behind).
    pub async fn add_learner(&self, node: NodeId, addr: String) -> Result<(), MeridianError> {
        match self
            .raft
            .add_learner(node.0, BasicNode { addr }, false)
            .await
        {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(
                MeridianError::not_leader(self.group, f.leader_id.map(NodeId)),
            ),
            Err(RaftError::APIError(e)) => Err(MeridianError::unavailable(format!(
                "add learner to group {}: {e}",
                self.group
            ))),
            Err(RaftError::Fatal(e)) => Err(fatal(self.group, e)),
        }
    }

    /// Builds a snapshot now and purges the log it covers (for tests and operators).
    pub async fn trigger_snapshot(&self) -> Result<(), MeridianError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| fatal(self.group, e))
    }

    /// Serves a Raft message from a peer.
    pub async fn handle_rpc(&self, method: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        fn enc<T: Serialize>(r: Result<T, String>) -> Result<Vec<u8>, String> {
            postcard::to_allocvec(&r).map_err(|e| format!("encode reply: {e}"))
        }
        fn dec<T: serde::de::DeserializeOwned>(method: &str, payload: &[u8]) -> Result<T, String> {
            postcard::from_bytes(payload).map_err(|e| format!("decode {method}: {e}"))
        }
        match method {
            M_APPEND => {
                type Append = (
                    AppendEntriesRequest<TypeConfig>,
                    Option<Proof>,
                    Option<AppendSeq>,
                );
                let (req, proof, seq): Append = dec(method, payload)?;
                self.gate
                    .in_order(seq, async {
                        let echo: Echo = self.freshness.echo();
                        if let Some(p) = proof {
                            self.freshness.record(p);
                        }
                        enc(self
                            .raft
                            .append_entries(req)
                            .await
                            .map(|resp| (resp, echo))
                            .map_err(|e| e.to_string()))
                    })
                    .await
            }
            M_VOTE => {
                let req: VoteRequest<TypeConfig> = dec(method, payload)?;
                enc(self.raft.vote(req).await.map_err(|e| e.to_string()))
            }
            M_PRE_VOTE => {
                let req: VoteRequest<TypeConfig> = dec(method, payload)?;
                enc(self.raft.pre_vote(req).await.map_err(|e| e.to_string()))
            }
            M_SNAPSHOT => {
                let (vote, meta, data): (Vote, SnapshotMeta, Vec<u8>) = dec(method, payload)?;
                let snap = Snapshot {
                    meta,
                    snapshot: data,
                };
                enc(self
                    .raft
                    .install_full_snapshot(vote, snap)
                    .await
                    .map_err(|e| e.to_string()))
            }
            M_TRANSFER_LEADER => {
                let req: TransferLeaderRequest<TypeConfig> = dec(method, payload)?;
                enc(self
                    .raft
                    .handle_transfer_leader(req)
                    .await
                    .map_err(|e| e.to_string()))
            }
            other => Err(format!("unknown raft method {other:?}")),
        }
    }

    /// Stops the group's tasks. Its data stays on disk.
    pub async fn shutdown(&self) {
        self.router.unregister(self.group);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(group_id = self.group.0, node_id = self.me.0, error = %e, "raft shutdown");
        }
    }
}
