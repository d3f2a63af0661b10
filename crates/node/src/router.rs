//! Routing: a group operation goes to the group's leader — here, or forwarded over node RPC —
//! following `not_leader` hints and retrying through elections until the request deadline.
//! A `bounded` or `local` read goes to the replicas nearest first (`LatencyTable`); one that
//! cannot vouch for it answers `too_stale` and the read goes to the leader as a lease read.

use crate::messages::*;
use crate::node::{Node, decode, encode};
use meridian_state::{Command, CommandResult, KvCommand, KvEntry};
use meridian_types::{ErrorCode, GroupId, MeridianError, NodeId};
use rand::Rng;
use std::time::Duration;
// tokio's clock, so a simulation's virtual time drives deadlines and backoff.
use tokio::time::Instant;

/// First pause between retries when no leader is known; doubles up to the max.
pub const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(20);
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// How far ahead of its own clock a leader lets a `GroupOp::Advance` push a range's revision.
pub const ADVANCE_AHEAD_MAX_MS: u64 = 60_000;
/// Longest a follower waits for the leader's read index before a linearizable read goes to the
/// leader instead.
pub const FOLLOWER_READ_INDEX_WAIT: Duration = Duration::from_secs(1);
/// Longest a follower then waits to apply up to that index before the read goes to the leader.
pub const FOLLOWER_CATCH_UP_WAIT: Duration = Duration::from_millis(500);

/// Waits out one retry pause (`backoff` plus up to half of it as jitter, never past `deadline`)
/// and doubles `backoff`; false, without waiting, once the deadline has passed.
async fn retry_pause(backoff: &mut Duration, deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    let jitter = meridian_types::rng::with(|r| r.random_range(0..=backoff.as_millis() as u64 / 2));
    tokio::time::sleep((*backoff + Duration::from_millis(jitter)).min(deadline - now)).await;
    *backoff = (*backoff * 2).min(RETRY_BACKOFF_MAX);
    true
}

impl Node {
    /// Replicas of a group, from the cluster map.
    pub(crate) fn replicas_of(&self, group: GroupId) -> Vec<NodeId> {
        let Some(map) = self.map_arc() else {
            return Vec::new();
        };
        if group.is_meta() {
            let mut v = map.meta_replicas.clone();
            // Learners can serve local reads of the map but never lead; voters first.
            v.extend(map.nodes.keys().filter(|n| !map.meta_replicas.contains(n)));
            return v;
        }
        map.ranges
            .get(&meridian_types::RangeId(group.0))
            .map(|r| r.replicas.clone())
            .unwrap_or_default()
    }

    fn leader_guess(&self, group: GroupId) -> Option<NodeId> {
        if let Some(l) = self.group(group).and_then(|g| g.leader()) {
            return Some(l);
        }
        self.inner.leader_cache.read().get(&group).copied()
    }

    /// Notes `to` as `group`'s leader. Every write that succeeds says so, nearly always again:
    /// only a change takes the write lock, which all the node's requests contend for.
    fn remember_leader(&self, group: GroupId, to: NodeId) {
        if self.inner.leader_cache.read().get(&group) != Some(&to) {
            self.inner.leader_cache.write().insert(group, to);
        }
    }

    /// Executes an operation on `group`'s leader (or, for bounded and local reads, on the
    /// nearest replica that can serve it), retrying until the request deadline.
    pub(crate) async fn execute(
        &self,
        group: GroupId,
        op: GroupOp,
    ) -> Result<GroupReply, MeridianError> {
        let deadline = Instant::now() + self.inner.cfg.request_timeout;
        let mut op = op;
        let follower_read = matches!(
            op,
            GroupOp::Range { consistency, .. } if consistency.follower_may_serve()
        );
        let mut backoff = RETRY_BACKOFF_MIN;
        let mut attempt: usize = 0;
        // A read any replica may serve tries the replicas nearest first, then the leader.
        let mut nearest: std::collections::VecDeque<NodeId> = if follower_read {
            self.inner
                .latency
                .nearest_first(self.id(), &self.replicas_of(group))
                .into()
        } else {
            Default::default()
        };
        // A linearizable read is served by this node's own replica when it has one: a follower
        // asks the leader only for its read index (one call for all the reads waiting here) and
        // reads its own state, as etcd's followers do.
        let read_here = matches!(
            op,
            GroupOp::Range {
                consistency: WireConsistency::Linearizable,
                ..
            }
        ) && self.group(group).is_some();
        let mut target = match nearest.pop_front() {
            Some(n) => Some(n),
            None if read_here => Some(self.id()),
            None => self.leader_guess(group),
        };
        let mut last_err;
        loop {
            let replicas = self.replicas_of(group);
            if replicas.is_empty() {
                // A node that belongs to a cluster but does not know this group yet (it restarted
                // and serves its bootstrap map until the meta group applies) catches up soon:
                // wait for it within the deadline rather than answer with a final error.
                let e = if self.map_arc().is_none() || self.cluster_id() == 0 {
                    self.no_map_error()
                } else {
                    MeridianError::unavailable(format!(
                        "group {group} is not in this node's cluster map yet; retry"
                    ))
                };
                if !e.code.is_retryable() {
                    return Err(e);
                }
                attempt += 1;
                last_err = e;
                if !retry_pause(&mut backoff, deadline).await {
                    break;
                }
                continue;
            }
            let to = target.unwrap_or_else(|| replicas[attempt % replicas.len()]);
            let result = if to == self.id() {
                // A proposal on a deposed leader may never commit: bound every local attempt.
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, self.execute_local(group, op.clone())).await {
                    Ok(r) => r,
                    Err(_) => Err(MeridianError::new(
                        ErrorCode::Timeout,
                        format!("group {group} did not answer in time"),
                    )),
                }
            } else {
                self.forward(to, group, op.clone(), deadline).await
            };
            attempt += 1;
            match result {
                Ok(r) => {
                    if !follower_read && (!read_here || to != self.id()) {
                        self.remember_leader(group, to);
                    }
                    return Ok(r);
                }
                Err(e) if e.code == ErrorCode::TooStale => {
                    // The replica cannot vouch for the read: the leader serves it fresh.
                    self.inner.metrics.stale_redirects.inc();
                    if let GroupOp::Range { consistency, .. } = &mut op {
                        *consistency = WireConsistency::Lease;
                    }
                    nearest.clear();
                    target = e
                        .leader_hint
                        .map(|(_, n)| n)
                        .or_else(|| self.leader_guess(group));
                    last_err = e;
                    if Instant::now() >= deadline {
                        break;
                    }
                    continue;
                }
                Err(e) if e.code == ErrorCode::NotLeader => {
                    let hint = e.leader_hint.map(|(_, n)| n).filter(|n| *n != to);
                    if let Some(h) = hint {
                        self.inner.leader_cache.write().insert(group, h);
                        target = Some(h);
                        last_err = e;
                        if Instant::now() >= deadline {
                            break;
                        }
                        continue; // a fresh hint: try at once
                    }
                    self.inner.leader_cache.write().remove(&group);
                    target = None;
                    last_err = e;
                }
                Err(e) if e.code.is_retryable() => {
                    if let Some(n) = nearest.pop_front() {
                        // The nearest replica is down or busy: the next nearest, at once.
                        tracing::debug!(group_id = group.0, node = to.0, error = %e, "follower read failed; trying the next nearest");
                        target = Some(n);
                        continue;
                    }
                    if let Some((_, h)) = e.leader_hint {
                        target = Some(h);
                    } else {
                        target = None;
                    }
                    last_err = e;
                }
                Err(e) => return Err(e),
            }
            if !retry_pause(&mut backoff, deadline).await {
                break;
            }
        }
        Err(MeridianError::new(
            ErrorCode::Timeout,
            format!("gave up on group {group} after {attempt} attempts: {last_err}"),
        ))
    }

    pub(crate) async fn forward(
        &self,
        to: NodeId,
        group: GroupId,
        op: GroupOp,
        deadline: Instant,
    ) -> Result<GroupReply, MeridianError> {
        self.inner.metrics.forwards.inc();
        let payload = encode(&ForwardRequest { group, op }).map_err(MeridianError::internal)?;
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(50));
        let env = self.envelope(to, group, M_FORWARD, payload, timeout);
        match self.inner.transport.call(env).await {
            Ok(bytes) => decode::<Result<GroupReply, MeridianError>>(&bytes)?,
            Err(e) => Err(MeridianError::unavailable(format!(
                "forward to node {to}: {e}"
            ))),
        }
    }

    /// Executes an operation against this node's replica of `group`.
    pub(crate) async fn execute_local(
        &self,
        group: GroupId,
        op: GroupOp,
    ) -> Result<GroupReply, MeridianError> {
        let Some(g) = self.group(group) else {
            return Err(MeridianError::not_leader(
                group,
                self.inner.leader_cache.read().get(&group).copied(),
            ));
        };
        match op {
            GroupOp::Range {
                req,
                consistency,
                min_revision,
            } => {
                let at_follower =
                    matches!(consistency, WireConsistency::Linearizable) && !g.is_leader();
                let ask_leader = at_follower.then(|| self.ask_leader_read_index(group));
                let r = serve_read(&g, group, &req, consistency, min_revision, ask_leader).await;
                if at_follower && r.is_ok() {
                    self.inner.metrics.follower_linearizable_reads.inc();
                }
                r
            }
            GroupOp::Txn {
                req,
                request_id,
                seen_revision,
            } => {
                if !g.is_leader() {
                    return Err(MeridianError::not_leader(group, g.leader()));
                }
                self.inner.hlc.observe(seen_revision);
                let entry = KvEntry {
                    request_id: Some(request_id),
                    hlc: self.inner.hlc.now(),
                    cmd: KvCommand::Txn(req),
                };
                self.propose_kv(&g, entry).await
            }
            GroupOp::Compact {
                revision,
                request_id,
            } => {
                if !g.is_leader() {
                    return Err(MeridianError::not_leader(group, g.leader()));
                }
                let entry = KvEntry {
                    request_id: Some(request_id),
                    hlc: self.inner.hlc.now(),
                    cmd: KvCommand::Compact { revision },
                };
                self.propose_kv(&g, entry).await
            }
            GroupOp::Meta(cmd) => {
                if !g.is_leader() {
                    return Err(MeridianError::not_leader(group, g.leader()));
                }
                match g.propose(Command::Meta(cmd)).await? {
                    CommandResult::Meta(r) => r.map(|_| GroupReply::Done),
                    other => Err(MeridianError::internal(format!(
                        "unexpected result {other:?}"
                    ))),
                }
            }
            GroupOp::AddLearner { node, addr } => {
                g.add_learner(node, addr).await?;
                Ok(GroupReply::Done)
            }
            GroupOp::Membership => Ok(GroupReply::Membership(g.membership()?)),
            GroupOp::ChangeVoters { voters } => {
                let m = g.membership()?;
                for v in voters.iter().filter(|v| !m.voters.contains(v)) {
                    g.wait_caught_up(*v, crate::placement_driver::CATCH_UP_WAIT)
                        .await?;
                }
                g.change_voters(&voters.into_iter().collect(), false)
                    .await?;
                Ok(GroupReply::Done)
            }
            GroupOp::RemoveLearners { nodes } => {
                g.remove_learners(&nodes.into_iter().collect()).await?;
                Ok(GroupReply::Done)
            }
            GroupOp::TransferLeader { to } => {
                g.transfer_leader(to).await?;
                Ok(GroupReply::Done)
            }
            op @ (GroupOp::Stream { .. } | GroupOp::StreamRead(_) | GroupOp::StreamInfo { .. }) => {
                self.execute_stream_local(&g, group, op).await
            }
            GroupOp::WatchPoll {
                key,
                range_end,
                after,
                prev_kv,
                wait_ms,
            } => {
                self.serve_watch_poll(&g, &key, &range_end, after, prev_kv, wait_ms)
                    .await
            }
            GroupOp::KvCmd { cmd, request_id } => {
                if !g.is_leader() {
                    return Err(MeridianError::not_leader(group, g.leader()));
                }
                let entry = KvEntry {
                    request_id: Some(request_id),
                    hlc: self.inner.hlc.now(),
                    cmd,
                };
                self.propose_kv(&g, entry).await
            }
            GroupOp::Lease(op) => self.serve_lease_op(&g, op).await,
            GroupOp::Advance { to } => {
                if !g.is_leader() {
                    return Err(MeridianError::not_leader(group, g.leader()));
                }
                // A revision from another range, never one far ahead of this clock.
                let ahead_max = self
                    .inner
                    .cfg
                    .clock
                    .now_ms()
                    .saturating_add(ADVANCE_AHEAD_MAX_MS)
                    << crate::hlc::LOGICAL_BITS;
                if to > ahead_max {
                    return Err(MeridianError::invalid(format!(
                        "advance to revision {to} is too far ahead of this node's clock"
                    )));
                }
                self.inner.hlc.observe(to);
                let entry = KvEntry {
                    request_id: None,
                    hlc: self.inner.hlc.now(),
                    cmd: KvCommand::Advance,
                };
                self.propose_kv(&g, entry).await
            }
            GroupOp::LeaseKeys { lease } => {
                g.read_barrier(true).await?;
                Ok(GroupReply::Keys(g.read(|s| s.kv.keys_with_lease(lease))))
            }
            GroupOp::Queue { cmd, wait_ms } => self.queue_local(&g, cmd, wait_ms).await,
            GroupOp::Outbox {
                txn,
                request_id,
                seen_revision,
            } => {
                self.outbox_local(&g, group, txn, request_id, seen_revision)
                    .await
            }
            GroupOp::QueueStats { queue } => self.queue_stats_local(&g, &queue).await,
            GroupOp::ReadIndex => {
                if !g.is_leader() {
                    return Err(MeridianError::not_leader(group, g.leader()));
                }
                Ok(GroupReply::ReadIndex(g.read_index().await?))
            }
        }
    }

    /// How a follower's replica of `group` gets a read index: from the leader it knows (over
    /// node RPC, or here if it has since become the leader).
    fn ask_leader_read_index(&self, group: GroupId) -> meridian_consensus::ReadRound {
        let node = self.clone();
        std::sync::Arc::new(move || {
            let node = node.clone();
            Box::pin(async move {
                let Some(g) = node.group(group) else {
                    return Err(MeridianError::not_leader(group, None));
                };
                match g.leader() {
                    Some(l) if l == node.id() => g.read_index().await,
                    Some(l) => {
                        let deadline = Instant::now() + FOLLOWER_READ_INDEX_WAIT;
                        match node.forward(l, group, GroupOp::ReadIndex, deadline).await? {
                            GroupReply::ReadIndex(index) => Ok(index),
                            other => Err(MeridianError::internal(format!(
                                "unexpected reply to a read index request: {other:?}"
                            ))),
                        }
                    }
                    None => Err(MeridianError::not_leader(group, None)),
                }
            })
        })
    }

    async fn propose_kv(
        &self,
        g: &meridian_consensus::RaftGroup,
        entry: KvEntry,
    ) -> Result<GroupReply, MeridianError> {
        let started = Instant::now();
        let m = &self.inner.metrics;
        let res = self.propose_kv_batched(g, entry).await;
        let outcome = match &res {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        m.proposals
            .get_or_create(&crate::metrics::OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
        if res.is_ok() {
            m.commit_seconds.observe(started.elapsed().as_secs_f64());
        }
        res?.map(GroupReply::Kv)
    }
}

/// Milliseconds, rounded up, so a reported bound is never below the proven one.
fn ceil_ms(d: Duration) -> u64 {
    d.as_micros().div_ceil(1000).try_into().unwrap_or(u64::MAX)
}

/// Serves a read from this node's replica of `group`, or says why it cannot: `not_leader` for a
/// leader-only read on a follower, `too_stale` when a follower cannot prove the bound or has not
/// reached the session token (the router then goes to the leader).
async fn serve_read(
    g: &meridian_consensus::RaftGroup,
    group: GroupId,
    req: &meridian_state::RangeRequest,
    consistency: WireConsistency,
    min_revision: u64,
    ask_leader: Option<meridian_consensus::ReadRound>,
) -> Result<GroupReply, MeridianError> {
    let leader_read = |lease| async move {
        g.read_barrier(lease).await?;
        let resp = g.read(|s| s.kv.range(req))?;
        Ok(GroupReply::Range {
            resp,
            staleness_ms: Some(0),
        })
    };
    let too_stale = |why: String| {
        let mut e = MeridianError::new(ErrorCode::TooStale, why);
        e.leader_hint = g.leader().map(|l| (group, l));
        e
    };
    match consistency {
        WireConsistency::Linearizable if let Some(ask_leader) = ask_leader => {
            g.follower_read_barrier(ask_leader, FOLLOWER_CATCH_UP_WAIT)
                .await?;
            let resp = g.read(|s| s.kv.range(req))?;
            Ok(GroupReply::Range {
                resp,
                staleness_ms: Some(0),
            })
        }
        WireConsistency::Linearizable => leader_read(false).await,
        WireConsistency::Lease => leader_read(true).await,
        // The leader answers a bounded read fresh, through its lease.
        WireConsistency::Bounded { .. } if g.is_leader() => leader_read(true).await,
        WireConsistency::Bounded { max_staleness_ms } => {
            let (read, bound) = g.read_with_staleness(|s| {
                (s.kv.revision() >= min_revision).then(|| s.kv.range(req))
            });
            let Some(resp) = read else {
                return Err(too_stale(format!(
                    "replica of group {group} has not reached revision {min_revision}"
                )));
            };
            match bound.map(ceil_ms) {
                Some(ms) if ms <= max_staleness_ms => Ok(GroupReply::Range {
                    resp: resp?,
                    staleness_ms: Some(ms),
                }),
                Some(ms) => Err(too_stale(format!(
                    "replica of group {group} may be {ms} ms behind, more than {max_staleness_ms} ms"
                ))),
                None => Err(too_stale(format!(
                    "replica of group {group} cannot prove how far behind it is"
                ))),
            }
        }
        WireConsistency::Local => {
            let (read, bound) = g.read_with_staleness(|s| {
                (s.kv.revision() >= min_revision).then(|| s.kv.range(req))
            });
            let Some(resp) = read else {
                return Err(too_stale(format!(
                    "replica of group {group} has not reached revision {min_revision}"
                )));
            };
            Ok(GroupReply::Range {
                resp: resp?,
                staleness_ms: bound.map(ceil_ms),
            })
        }
    }
}
