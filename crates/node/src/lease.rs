//! Leases (etcd's lessor) on top of the meta group's lease table (`meridian_state::lease`).
//!
//! The table is replicated; expiry is not. The meta leader keeps one deadline per lease in
//! memory ([`LeaseKeeper`]): a grant or a keep-alive sets it to now + TTL (no log write per
//! keep-alive, as in etcd), and a node that becomes leader (a new term) restarts every lease at
//! its full TTL, so a lease never expires early because leadership moved. Every
//! [`LEASE_TICK`] the leader revokes the leases past their deadline by proposing
//! `LeaseCommand::Revoke` stamped with its clock: a follower never expires a lease on its own
//! clock, it only applies the leader's decision.
//!
//! Revoking (by a client or by expiry) then deletes the lease's keys range by range
//! (`KvCommand::RevokeLease`, idempotent; the range also refuses any later put with the lease,
//! so a put racing the revoke cannot leave an orphan key), and finally forgets the lease. A
//! leader that dies half-way leaves the lease `revoking` in the table; the next leader finishes
//! the sweep.

use crate::messages::{GroupOp, GroupReply};
use crate::node::Node;
use futures::FutureExt;
use futures::future::BoxFuture;
use meridian_consensus::RaftGroup;
use meridian_state::lease::lease_not_found;
use meridian_state::{Command, CommandResult, KvCommand, LeaseCommand};
use meridian_types::{GroupId, MeridianError, RequestId};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// How often the meta leader looks for expired leases.
pub const LEASE_TICK: Duration = Duration::from_millis(200);
/// The shortest TTL granted, in seconds (a shorter ask gets this one, as etcd's `minTTL`): a
/// lease must outlive a leader election.
pub const LEASE_TTL_MIN_S: i64 = 2;

/// A lease operation, served by the meta group's leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LeaseOp {
    /// `id` 0: the leader picks one.
    Grant {
        id: i64,
        ttl_s: i64,
    },
    Revoke {
        id: i64,
    },
    KeepAlive {
        id: i64,
    },
    TimeToLive {
        id: i64,
    },
    List,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LeaseReply {
    Granted {
        id: i64,
        ttl_s: i64,
    },
    /// The time left (`ttl_s`, seconds) and the TTL granted.
    Ttl {
        id: i64,
        ttl_s: i64,
        granted_ttl_s: i64,
    },
    List(Vec<i64>),
    Revoked,
}

/// What `lease timetolive` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub id: i64,
    /// Seconds left before it expires.
    pub ttl_s: i64,
    pub granted_ttl_s: i64,
    /// The keys attached to it, when asked for.
    pub keys: Vec<Vec<u8>>,
}

/// The meta leader's in-memory deadlines.
#[derive(Default)]
pub(crate) struct LeaseKeeper {
    st: Mutex<KeeperState>,
}

#[derive(Default)]
struct KeeperState {
    /// The meta term these deadlines belong to; a new term restarts them all.
    term: Option<u64>,
    deadlines: BTreeMap<i64, Instant>,
    /// Leases being revoked or swept by a task of this node.
    busy: BTreeSet<i64>,
}

fn unexpected(r: impl std::fmt::Debug) -> MeridianError {
    MeridianError::internal(format!("unexpected lease reply {r:?}"))
}

impl Node {
    async fn lease_call(&self, op: LeaseOp) -> Result<LeaseReply, MeridianError> {
        match self.execute(GroupId::META, GroupOp::Lease(op)).await? {
            GroupReply::Lease(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Grants a lease of `ttl_s` seconds (at least [`LEASE_TTL_MIN_S`]); `id` 0 picks one.
    pub async fn lease_grant(&self, id: i64, ttl_s: i64) -> Result<(i64, i64), MeridianError> {
        if id < 0 {
            return Err(MeridianError::invalid(format!("lease id {id} is negative")));
        }
        match self.lease_call(LeaseOp::Grant { id, ttl_s }).await? {
            LeaseReply::Granted { id, ttl_s } => Ok((id, ttl_s)),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes a lease; its keys are deleted when this returns.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), MeridianError> {
        match self.lease_call(LeaseOp::Revoke { id }).await? {
            LeaseReply::Revoked => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Restarts a lease's TTL; returns it.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, MeridianError> {
        match self.lease_call(LeaseOp::KeepAlive { id }).await? {
            LeaseReply::Ttl { ttl_s, .. } => Ok(ttl_s),
            other => Err(unexpected(other)),
        }
    }

    /// A lease's time left, its granted TTL and (when `keys`) its keys in every range.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseInfo, MeridianError> {
        let (ttl_s, granted_ttl_s) = match self.lease_call(LeaseOp::TimeToLive { id }).await? {
            LeaseReply::Ttl {
                ttl_s,
                granted_ttl_s,
                ..
            } => (ttl_s, granted_ttl_s),
            other => return Err(unexpected(other)),
        };
        let mut info = LeaseInfo {
            id,
            ttl_s,
            granted_ttl_s,
            keys: Vec::new(),
        };
        if keys {
            let map = self.map_or_err()?;
            for r in map.ranges.values() {
                match self
                    .execute(r.id.group(), GroupOp::LeaseKeys { lease: id })
                    .await?
                {
                    GroupReply::Keys(k) => info.keys.extend(k),
                    other => return Err(unexpected(other)),
                }
            }
        }
        Ok(info)
    }

    /// The ids of every live lease.
    pub async fn lease_list(&self) -> Result<Vec<i64>, MeridianError> {
        match self.lease_call(LeaseOp::List).await? {
            LeaseReply::List(ids) => Ok(ids),
            other => Err(unexpected(other)),
        }
    }

    /// Refuses a write that attaches a key to a lease that is not alive (`lease_not_found`).
    /// A lease revoked after this check is caught by the range itself (`RevokeLease`).
    pub(crate) async fn check_leases(
        &self,
        ops: &[meridian_state::RequestOp],
    ) -> Result<(), MeridianError> {
        let leases: BTreeSet<i64> = ops
            .iter()
            .filter_map(|op| match op {
                meridian_state::RequestOp::Put(p) if p.lease != 0 && !p.ignore_lease => {
                    Some(p.lease)
                }
                _ => None,
            })
            .collect();
        for id in leases {
            self.lease_call(LeaseOp::TimeToLive { id }).await?;
        }
        Ok(())
    }

    async fn propose_lease(&self, g: &RaftGroup, cmd: LeaseCommand) -> Result<(), MeridianError> {
        match g.propose(Command::Lease(cmd)).await? {
            CommandResult::Lease(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Serves a [`LeaseOp`] on this node's replica of the meta group, which must lead.
    pub(crate) async fn serve_lease_op(
        &self,
        g: &RaftGroup,
        op: LeaseOp,
    ) -> Result<GroupReply, MeridianError> {
        if !g.group().is_meta() {
            return Err(MeridianError::invalid(
                "lease operations go to the meta group",
            ));
        }
        if !g.is_leader() {
            return Err(MeridianError::not_leader(g.group(), g.leader()));
        }
        let keeper = &self.inner.leases;
        let reply = match op {
            LeaseOp::Grant { id, ttl_s } => {
                let id = if id == 0 {
                    (meridian_types::rng::next_u128() as i64 & i64::MAX).max(1)
                } else {
                    id
                };
                let ttl_s = ttl_s.max(LEASE_TTL_MIN_S);
                let now_ms = self.inner.cfg.clock.now_ms();
                self.propose_lease(g, LeaseCommand::Grant { id, ttl_s, now_ms })
                    .await?;
                keeper
                    .st
                    .lock()
                    .deadlines
                    .insert(id, Instant::now() + secs(ttl_s));
                LeaseReply::Granted { id, ttl_s }
            }
            LeaseOp::KeepAlive { id } => {
                g.read_barrier(true).await?;
                let ttl_s = g
                    .read(|s| s.leases.live(id).map(|l| l.ttl_s))
                    .ok_or_else(|| lease_not_found(id))?;
                keeper
                    .st
                    .lock()
                    .deadlines
                    .insert(id, Instant::now() + secs(ttl_s));
                LeaseReply::Ttl {
                    id,
                    ttl_s,
                    granted_ttl_s: ttl_s,
                }
            }
            LeaseOp::TimeToLive { id } => {
                g.read_barrier(true).await?;
                let granted = g
                    .read(|s| s.leases.live(id).map(|l| l.ttl_s))
                    .ok_or_else(|| lease_not_found(id))?;
                let left = keeper
                    .st
                    .lock()
                    .deadlines
                    .get(&id)
                    .map(|d| d.saturating_duration_since(Instant::now()).as_secs() as i64)
                    .unwrap_or(granted);
                LeaseReply::Ttl {
                    id,
                    ttl_s: left,
                    granted_ttl_s: granted,
                }
            }
            LeaseOp::List => {
                g.read_barrier(true).await?;
                LeaseReply::List(g.read(|s| s.leases.live_leases().map(|(id, _)| id).collect()))
            }
            LeaseOp::Revoke { id } => {
                let now_ms = self.inner.cfg.clock.now_ms();
                self.propose_lease(g, LeaseCommand::Revoke { id, now_ms })
                    .await?;
                {
                    let mut st = keeper.st.lock();
                    st.deadlines.remove(&id);
                    st.busy.insert(id);
                }
                let swept = self.sweep_lease(id).await;
                keeper.st.lock().busy.remove(&id);
                swept?;
                LeaseReply::Revoked
            }
        };
        Ok(GroupReply::Lease(reply))
    }

    /// Deletes a revoked lease's keys in every range, then forgets the lease. Idempotent; a
    /// failure leaves the lease `revoking`, and the expirer tries again.
    fn sweep_lease(&self, id: i64) -> BoxFuture<'_, Result<(), MeridianError>> {
        // Boxed: it runs inside `execute` (a client's revoke) and calls `execute` itself.
        async move {
            let map = self.map_or_err()?;
            for r in map.ranges.values() {
                let op = GroupOp::KvCmd {
                    cmd: KvCommand::RevokeLease { lease: id },
                    request_id: RequestId(meridian_types::rng::next_u128()),
                };
                self.execute(r.id.group(), op).await?;
            }
            let g = self
                .group(GroupId::META)
                .ok_or_else(|| MeridianError::not_leader(GroupId::META, None))?;
            self.propose_lease(&g, LeaseCommand::Forget { id }).await
        }
        .boxed()
    }

    /// Expires a lease: the revoke, stamped with this leader's clock, then the sweep.
    async fn expire_lease(&self, id: i64) -> Result<(), MeridianError> {
        let g = self
            .group(GroupId::META)
            .ok_or_else(|| MeridianError::not_leader(GroupId::META, None))?;
        let now_ms = self.inner.cfg.clock.now_ms();
        self.propose_lease(&g, LeaseCommand::Revoke { id, now_ms })
            .await?;
        self.inner.metrics.leases_expired.inc();
        tracing::info!(lease = id, "lease expired");
        self.sweep_lease(id).await
    }

    /// One look at the deadlines on the meta leader: restart them on a new term, expire the
    /// ones past due, finish sweeps a former leader left.
    fn lease_tick(&self) {
        let keeper = &self.inner.leases;
        let Some(g) = self.group(GroupId::META).filter(|g| g.is_leader()) else {
            let mut st = keeper.st.lock();
            st.term = None;
            st.deadlines.clear();
            return;
        };
        let term = g.status().term;
        let (live, revoking): (Vec<(i64, i64)>, Vec<i64>) = g.read(|s| {
            (
                s.leases
                    .live_leases()
                    .map(|(id, l)| (id, l.ttl_s))
                    .collect(),
                s.leases.revoking().collect(),
            )
        });
        self.inner.metrics.leases.set(live.len() as i64);
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut resume = Vec::new();
        {
            let mut st = keeper.st.lock();
            if st.term != Some(term) {
                // A new leader (or a new term): every lease starts its full TTL afresh.
                st.term = Some(term);
                st.deadlines.clear();
            }
            let ids: BTreeSet<i64> = live.iter().map(|(id, _)| *id).collect();
            st.deadlines.retain(|id, _| ids.contains(id));
            for (id, ttl_s) in &live {
                st.deadlines.entry(*id).or_insert(now + secs(*ttl_s));
            }
            let due: Vec<i64> = st
                .deadlines
                .iter()
                .filter(|(_, d)| **d <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                if st.busy.insert(id) {
                    expired.push(id);
                }
            }
            for id in revoking {
                if st.busy.insert(id) {
                    resume.push(id);
                }
            }
        }
        for (id, expire) in expired
            .into_iter()
            .map(|i| (i, true))
            .chain(resume.into_iter().map(|i| (i, false)))
        {
            let node = self.clone();
            tokio::spawn(async move {
                let r = if expire {
                    node.expire_lease(id).await
                } else {
                    node.sweep_lease(id).await
                };
                if let Err(e) = r {
                    tracing::warn!(lease = id, error = %e, "lease revoke not finished; will retry");
                }
                node.inner.leases.st.lock().busy.remove(&id);
            });
        }
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// Runs [`Node::lease_tick`] every [`LEASE_TICK`] until shutdown.
pub(crate) fn spawn_expirer(node: Node, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LEASE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => node.lease_tick(),
            }
        }
    });
}
