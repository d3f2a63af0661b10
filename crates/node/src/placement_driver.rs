//! The placement driver: on the meta group's leader, every [`DRIVER_INTERVAL`], moves each
//! range one step closer to its placement rule (the steps come from the pure planner,
//! `meridian_state::placement_plan`), and hands leaders to their preferred regions. Also here:
//! a node closing the groups it no longer belongs to.
//!
//! A replica move, each step resumable by any later meta leader because the next step is
//! derived from the map and the group's own Raft membership, never from memory:
//! 1. `SetRangeMembers(learners += n)`: node n sees itself and opens the group (uninitialised);
//! 2. the range leader adds n as a Raft learner, which catches up (log or snapshot);
//! 3. `ChangeVoters(voters + n)` through joint consensus;
//! 4. `SetRangeMembers(replicas = voters + n, learners -= n)`.
//!
//! A removal is `ChangeVoters(voters - n)` then `SetRangeMembers(replicas - n)`.
//!
//! Architecture invariant: the map's replicas change only after the Raft membership change
//! committed, and a node enters the map's learners before it enters the Raft membership, so
//! the Raft members of a range are always within the map's replicas ∪ learners; a node that
//! the map no longer lists may delete its replica.

use crate::messages::{GroupOp, GroupReply};
use crate::node::Node;
use meridian_consensus::GroupMembership;
use meridian_state::placement_plan::{NodeFacts, PlanStep, plan_range};
use meridian_state::{ClusterMap, Command, MetaCommand, NodeState, RangeInfo};
use meridian_types::{GroupId, MeridianError, NodeId, RangeId};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How often the driver looks at every range.
pub const DRIVER_INTERVAL: Duration = Duration::from_secs(1);
/// Most replica moves (adds and removals) under way at once, cluster-wide.
pub const MOVES_IN_FLIGHT: usize = 2;
/// How long a voter change waits for its new voter to catch up before giving up for this try.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(2);
/// A node that answered a probe within this long may receive a replica or leadership.
pub const LIVE_WITHIN: Duration = Duration::from_secs(3);
/// A leader transfer not done after this long is asked for again.
pub const TRANSFER_RETRY_AFTER: Duration = Duration::from_secs(3);
/// Bound of one driver call to a range leader.
const DRIVER_OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Sub-steps one range may take in one tick.
const STEPS_PER_TICK: usize = 4;
/// Ranges driven at once.
const RANGES_AT_ONCE: usize = 8;
/// A replica the map no longer lists is deleted once its own membership lets go of this node,
/// or after this long (a removed voter may never hear of its removal).
pub const DEPARTED_GRACE: Duration = Duration::from_secs(5);

/// One step the driver is taking on a range (shown by `meridian cluster status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementStep {
    pub range: u64,
    /// What is being done, e.g. `add n4: learner catching up`.
    pub step: String,
    /// Why, e.g. `replace a replica that must move`.
    pub reason: String,
}

/// The driver's memory, for display and pacing only: correctness never depends on it.
#[derive(Default)]
pub(crate) struct DriverState {
    steps: Mutex<BTreeMap<u64, PlacementStep>>,
    leading_since: Mutex<Option<Instant>>,
    last_transfer: Mutex<BTreeMap<GroupId, Instant>>,
    departed_since: Mutex<BTreeMap<GroupId, Instant>>,
    /// Since when this leader has seen each unclaimed system range.
    unclaimed_since: Mutex<BTreeMap<RangeId, Instant>>,
}

enum Advance {
    /// The range meets its rule.
    Idle,
    /// A step was taken; the next may follow at once.
    Took(String, String),
    /// Waiting on something (a learner catching up, a move slot, a leader transfer).
    Waiting(String, String),
}

fn unexpected(r: GroupReply) -> MeridianError {
    MeridianError::internal(format!("unexpected reply {r:?}"))
}

impl Node {
    pub(crate) fn spawn_placement_driver(&self) {
        let node = self.clone();
        let mut stop = self.inner.shutdown_tx.subscribe();
        let span = tracing::info_span!("placement_driver", node_id = node.id().0);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(DRIVER_INTERVAL) => {}
                    }
                    node.driver_tick().await;
                }
            },
            span,
        ));
    }

    /// Steps the driver is taking (empty unless this node leads the meta group).
    pub fn placement_steps(&self) -> Vec<PlacementStep> {
        self.inner.driver.steps.lock().values().cloned().collect()
    }

    fn meta_map(&self) -> Option<ClusterMap> {
        self.group(GroupId::META)
            .and_then(|g| g.read(|s| s.meta.is_initialized().then(|| s.meta.clone())))
    }

    async fn driver_tick(&self) {
        let d = &self.inner.driver;
        let meta = match self.group(GroupId::META) {
            Some(m) if m.is_leader() => m,
            _ => {
                *d.leading_since.lock() = None;
                d.steps.lock().clear();
                d.unclaimed_since.lock().clear();
                return;
            }
        };
        let Some(map) = self.meta_map() else { return };
        self.drop_orphaned_ranges(&map).await;
        let since = *d.leading_since.lock().get_or_insert_with(Instant::now);
        let facts = self.node_facts(&map, since);
        self.meta_leader_off_this_node(&meta, &map, &facts).await;
        let meta_step = match self.drive_meta(&meta, &facts).await {
            Ok(s) => s,
            Err(e) => Some(PlacementStep {
                range: 0,
                step: "retrying".into(),
                reason: format!("last attempt failed: {}", e.message),
            }),
        };
        let in_flight = map
            .ranges
            .values()
            .filter(|r| !r.learners.is_empty())
            .count();
        let budget = AtomicUsize::new(MOVES_IN_FLIGHT.saturating_sub(in_flight));
        use futures::StreamExt;
        let ids: Vec<RangeId> = map.ranges.keys().copied().collect();
        let results: Vec<(RangeId, Option<PlacementStep>)> = futures::stream::iter(ids)
            .map(|id| {
                let (facts, budget) = (&facts, &budget);
                async move { (id, self.drive_range(id, facts, budget).await) }
            })
            .buffer_unordered(RANGES_AT_ONCE)
            .collect()
            .await;
        let mut steps = BTreeMap::new();
        if let Some(s) = meta_step {
            steps.insert(0, s);
        }
        for (id, s) in results {
            if let Some(s) = s {
                steps.insert(id.0, s);
            }
        }
        self.inner
            .metrics
            .ranges_out_of_rule
            .set(steps.len() as i64);
        *d.steps.lock() = steps;
    }

    /// Removes the system ranges this leader has seen unclaimed for the grace period: what a
    /// creator that crashed between allocating ranges and creating its stream or queue left.
    /// The clock starts when this node sees them (a new meta leader starts over: later, never
    /// early), and the meta group drops only ranges still unclaimed when it applies the command.
    async fn drop_orphaned_ranges(&self, map: &ClusterMap) {
        let now = Instant::now();
        let grace = self.inner.cfg.unclaimed_range_grace;
        let due: Vec<RangeId> = {
            let mut since = self.inner.driver.unclaimed_since.lock();
            let unclaimed = map.unclaimed_system_ranges();
            since.retain(|id, _| unclaimed.contains(id));
            for id in unclaimed {
                since.entry(id).or_insert(now);
            }
            since
                .iter()
                .filter(|(_, t)| now.duration_since(**t) >= grace)
                .map(|(id, _)| *id)
                .collect()
        };
        if due.is_empty() {
            return;
        }
        tracing::info!(ranges = ?due, "removing system ranges no stream or queue claimed within {grace:?}");
        if let Err(e) = self
            .propose_meta(MetaCommand::DropUnclaimedRanges { ids: due })
            .await
        {
            tracing::warn!("removing unclaimed system ranges: {e}");
        }
    }

    /// What the driver knows of every node. A node counts as dead only once this node has led
    /// long enough to have heard from it (a new meta leader has no probe history yet).
    fn node_facts(&self, map: &ClusterMap, leading_since: Instant) -> Vec<NodeFacts> {
        let dead_after = self.inner.cfg.node_dead_after;
        let lat = &self.inner.latency;
        map.nodes
            .values()
            .map(|n| {
                let me = n.id == self.id();
                NodeFacts {
                    id: n.id,
                    region: n.region.clone(),
                    zone: n.zone.clone(),
                    state: n.state,
                    live: me || lat.is_live(n.id, LIVE_WITHIN.min(dead_after)),
                    dead: !me
                        && !lat.is_live(n.id, dead_after)
                        && leading_since.elapsed() >= dead_after,
                }
            })
            .collect()
    }

    /// A draining meta leader hands the meta group to another live voter.
    async fn meta_leader_off_this_node(
        &self,
        meta: &meridian_consensus::RaftGroup,
        map: &ClusterMap,
        facts: &[NodeFacts],
    ) {
        if map.nodes.get(&self.id()).map(|n| n.state) == Some(NodeState::Active) {
            return;
        }
        let to = map.meta_replicas.iter().copied().find(|v| {
            *v != self.id()
                && facts
                    .iter()
                    .any(|f| f.id == *v && f.live && f.state == NodeState::Active)
        });
        if let Some(to) = to
            && self.transfer_due(GroupId::META)
        {
            tracing::info!(to = to.0, "handing the meta group's leadership away");
            if meta.transfer_leader(to).await.is_ok() {
                self.inner.metrics.placement_leader_transfers.inc();
            }
        }
    }

    /// Keeps the meta group's voters on usable nodes: a voter on a draining, removed or dead
    /// node is replaced by a caught-up learner, or dropped while more than three voters remain;
    /// removed nodes leave the group. The map's `meta_replicas` follow the committed change.
    async fn drive_meta(
        &self,
        meta: &meridian_consensus::RaftGroup,
        facts: &[NodeFacts],
    ) -> Result<Option<PlacementStep>, MeridianError> {
        let Some(map) = self.meta_map() else {
            return Ok(None);
        };
        let ms = meta.membership()?;
        if !ms.settled {
            return Ok(None);
        }
        let step = |step: String, reason: &str| {
            tracing::info!(group_id = 0, step, reason, "placement step");
            Ok(Some(PlacementStep {
                range: 0,
                step,
                reason: reason.into(),
            }))
        };
        if ms.joint {
            meta.change_voters(&ms.voters.iter().copied().collect(), true)
                .await?;
            return step(
                format!("voters -> {:?}", ids(&ms.voters)),
                "finish a voter change",
            );
        }
        let raft: BTreeSet<NodeId> = ms.voters.iter().copied().collect();
        let mapped: BTreeSet<NodeId> = map.meta_replicas.iter().copied().collect();
        if raft != mapped {
            self.propose_meta(MetaCommand::SetMetaReplicas {
                replicas: ms.voters.clone(),
            })
            .await?;
            return step(
                format!("record voters {:?}", ids(&ms.voters)),
                "a voter change committed",
            );
        }
        let fact = |n: &NodeId| facts.iter().find(|f| f.id == *n);
        let gone: Vec<NodeId> = ms
            .learners
            .iter()
            .copied()
            .filter(|l| fact(l).is_none_or(|f| f.state == NodeState::Removed))
            .collect();
        if !gone.is_empty() {
            meta.remove_learners(&gone.iter().copied().collect())
                .await?;
            return step(format!("drop learners {:?}", ids(&gone)), "node removed");
        }
        // Every member follows the meta group, so it sees the live map (nodes beyond the first
        // voters of `cluster init` were never added as learners by anyone else).
        let missing: Vec<NodeId> = map
            .nodes
            .values()
            .filter(|n| n.state != NodeState::Removed)
            .map(|n| n.id)
            .filter(|n| !ms.voters.contains(n) && !ms.learners.contains(n))
            .collect();
        if let Some(&n) = missing.first() {
            let addr = map.nodes[&n].addr.clone();
            meta.add_learner(n, addr).await?;
            return step(format!("add learner n{n}"), "every member follows the map");
        }
        let must_go = |n: &NodeId| fact(n).is_none_or(|f| f.state != NodeState::Active || f.dead);
        let Some(v) = ms
            .voters
            .iter()
            .copied()
            .find(|v| *v != self.id() && must_go(v))
        else {
            return Ok(None);
        };
        let usable =
            |n: &NodeId| fact(n).is_some_and(|f| f.state == NodeState::Active && f.live && !f.dead);
        let mut voters: BTreeSet<NodeId> = raft.clone();
        voters.remove(&v);
        match ms.caught_up.iter().find(|c| usable(c)) {
            Some(c) => {
                voters.insert(*c);
            }
            None if raft.len() > 3 => {}
            None => return Ok(None),
        }
        // Left-out voters stay learners: a node back from the dead still follows the map.
        meta.change_voters(&voters, true).await?;
        self.inner.metrics.placement_moves_inc("meta");
        self.propose_meta(MetaCommand::SetMetaReplicas {
            replicas: voters.iter().copied().collect(),
        })
        .await?;
        let voters: Vec<NodeId> = voters.into_iter().collect();
        step(
            format!("voters -> {:?}", ids(&voters)),
            "a meta voter must move",
        )
    }

    async fn propose_meta(&self, cmd: MetaCommand) -> Result<(), MeridianError> {
        let meta = self
            .group(GroupId::META)
            .ok_or_else(|| MeridianError::unavailable("meta group not hosted here"))?;
        match meta.propose(Command::Meta(cmd)).await? {
            meridian_state::CommandResult::Meta(res) => res,
            other => Err(MeridianError::internal(format!(
                "unexpected result {other:?}"
            ))),
        }
    }

    fn transfer_due(&self, g: GroupId) -> bool {
        let mut last = self.inner.driver.last_transfer.lock();
        let due = last
            .get(&g)
            .is_none_or(|t| t.elapsed() >= TRANSFER_RETRY_AFTER);
        if due {
            last.insert(g, Instant::now());
        }
        due
    }

    async fn drive_range(
        &self,
        id: RangeId,
        facts: &[NodeFacts],
        budget: &AtomicUsize,
    ) -> Option<PlacementStep> {
        let mut last = None;
        for _ in 0..STEPS_PER_TICK {
            match self.advance_range(id, facts, budget).await {
                Ok(Advance::Idle) => return last,
                Ok(Advance::Took(step, reason)) => {
                    tracing::info!(range = id.0, step, reason, "placement step");
                    last = Some(PlacementStep {
                        range: id.0,
                        step,
                        reason,
                    });
                }
                Ok(Advance::Waiting(step, reason)) => {
                    return Some(PlacementStep {
                        range: id.0,
                        step,
                        reason,
                    });
                }
                Err(e) => {
                    tracing::debug!(range = id.0, error = %e, "placement step failed; retrying next tick");
                    let step = last.map(|s| s.step).unwrap_or_else(|| "retrying".into());
                    return Some(PlacementStep {
                        range: id.0,
                        step,
                        reason: format!("last attempt failed: {}", e.message),
                    });
                }
            }
        }
        last
    }

    async fn range_op(&self, g: GroupId, op: GroupOp) -> Result<GroupReply, MeridianError> {
        match tokio::time::timeout(DRIVER_OP_TIMEOUT, self.execute(g, op)).await {
            Ok(r) => r,
            Err(_) => Err(MeridianError::unavailable(format!(
                "group {g} did not answer the placement driver in time"
            ))),
        }
    }

    async fn set_members(
        &self,
        r: &RangeInfo,
        replicas: Vec<NodeId>,
        learners: Vec<NodeId>,
    ) -> Result<(), MeridianError> {
        self.propose_meta(MetaCommand::SetRangeMembers {
            range: r.id,
            replicas,
            learners,
            expect_version: r.version,
        })
        .await
    }

    /// Takes the next sub-step of range `id`, derived afresh from the map and the group's own
    /// membership.
    async fn advance_range(
        &self,
        id: RangeId,
        facts: &[NodeFacts],
        budget: &AtomicUsize,
    ) -> Result<Advance, MeridianError> {
        let map = self
            .meta_map()
            .ok_or_else(|| MeridianError::unavailable("no cluster map"))?;
        let Some(r) = map.ranges.get(&id).cloned() else {
            return Ok(Advance::Idle);
        };
        let g = id.group();
        let ms: GroupMembership = match self.range_op(g, GroupOp::Membership).await? {
            GroupReply::Membership(m) => m,
            other => return Err(unexpected(other)),
        };
        let raft_voters: BTreeSet<NodeId> = ms.voters.iter().copied().collect();
        let map_voters: BTreeSet<NodeId> = r.replicas.iter().copied().collect();
        let took = |s: String, why: &str| Ok(Advance::Took(s, why.to_string()));
        // Only a committed membership may be recorded in the map (a node the map drops deletes
        // its replica).
        if !ms.settled {
            return Ok(Advance::Waiting(
                "membership change in flight".into(),
                "waiting for it to commit".into(),
            ));
        }
        // Resume what an earlier driver left half done.
        if ms.joint {
            self.range_op(
                g,
                GroupOp::ChangeVoters {
                    voters: ms.voters.clone(),
                },
            )
            .await?;
            return took(
                format!("voters -> {:?}", ids(&ms.voters)),
                "finish a voter change",
            );
        }
        if raft_voters != map_voters {
            let learners: Vec<NodeId> = r
                .learners
                .iter()
                .copied()
                .filter(|l| !raft_voters.contains(l))
                .collect();
            self.set_members(&r, ms.voters.clone(), learners).await?;
            return took(
                format!("record voters {:?}", ids(&ms.voters)),
                "a voter change committed",
            );
        }
        let stray: Vec<NodeId> = ms
            .learners
            .iter()
            .copied()
            .filter(|l| !r.learners.contains(l))
            .collect();
        if !stray.is_empty() {
            self.range_op(
                g,
                GroupOp::RemoveLearners {
                    nodes: stray.clone(),
                },
            )
            .await?;
            return took(format!("drop learners {:?}", ids(&stray)), "not in the map");
        }
        if let Some(&l) = r.learners.first() {
            return self.advance_add(&r, &ms, l, facts).await;
        }
        let rule = map.rule_for(&r);
        let Some(p) = plan_range(&rule, &r.replicas, Some(ms.leader), facts) else {
            tracing::trace!(range = id.0, ?rule, ?facts, "range meets its rule");
            return Ok(Advance::Idle);
        };
        let reason = p.reason;
        let take_slot = || {
            budget
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_sub(1))
                .is_ok()
        };
        let m = &self.inner.metrics;
        match p.step {
            PlanStep::Add(n) => {
                if !take_slot() {
                    return Ok(Advance::Waiting(
                        format!("add n{}: waiting for a move slot", n.0),
                        reason.into(),
                    ));
                }
                self.set_members(&r, r.replicas.clone(), vec![n]).await?;
                m.placement_moves_inc("add");
                took(format!("add n{}: learner in the map", n.0), reason)
            }
            PlanStep::Remove(n) => {
                if !take_slot() {
                    return Ok(Advance::Waiting(
                        format!("remove n{}: waiting for a move slot", n.0),
                        reason.into(),
                    ));
                }
                let voters: Vec<NodeId> = r.replicas.iter().copied().filter(|v| *v != n).collect();
                self.range_op(
                    g,
                    GroupOp::ChangeVoters {
                        voters: voters.clone(),
                    },
                )
                .await?;
                self.set_members(&r, voters, Vec::new()).await?;
                m.placement_moves_inc("remove");
                took(format!("remove n{}", n.0), reason)
            }
            PlanStep::TransferLeader(to) => {
                let step = format!("leader n{} -> n{}", ms.leader.0, to.0);
                if self.transfer_due(g) {
                    self.range_op(g, GroupOp::TransferLeader { to }).await?;
                    m.placement_leader_transfers.inc();
                }
                Ok(Advance::Waiting(step, reason.into()))
            }
        }
    }

    /// Carries an add forward: learner in the Raft group, caught up, voter, recorded.
    async fn advance_add(
        &self,
        r: &RangeInfo,
        ms: &GroupMembership,
        l: NodeId,
        facts: &[NodeFacts],
    ) -> Result<Advance, MeridianError> {
        let g = r.id.group();
        let f = facts.iter().find(|f| f.id == l);
        let why = "add a replica";
        if f.is_none_or(|f| f.state != NodeState::Active || f.dead) {
            if ms.learners.contains(&l) {
                self.range_op(g, GroupOp::RemoveLearners { nodes: vec![l] })
                    .await?;
            }
            let learners = r.learners.iter().copied().filter(|x| *x != l).collect();
            self.set_members(r, r.replicas.clone(), learners).await?;
            return Ok(Advance::Took(
                format!("give up adding n{}", l.0),
                "the node is no longer usable".into(),
            ));
        }
        if !ms.learners.contains(&l) {
            let addr = self
                .map_arc()
                .and_then(|m| m.nodes.get(&l).map(|n| n.addr.clone()))
                .unwrap_or_default();
            self.range_op(g, GroupOp::AddLearner { node: l, addr })
                .await?;
            return Ok(Advance::Took(
                format!("add n{}: raft learner", l.0),
                why.into(),
            ));
        }
        if !ms.caught_up.contains(&l) {
            return Ok(Advance::Waiting(
                format!("add n{}: learner catching up", l.0),
                why.into(),
            ));
        }
        let mut voters = r.replicas.clone();
        voters.push(l);
        self.range_op(
            g,
            GroupOp::ChangeVoters {
                voters: voters.clone(),
            },
        )
        .await?;
        let learners = r.learners.iter().copied().filter(|x| *x != l).collect();
        self.set_members(r, voters, learners).await?;
        Ok(Advance::Took(format!("add n{}: voter", l.0), why.into()))
    }

    /// Closes and deletes this node's replicas of ranges the map no longer places here (see the
    /// module's invariant). Only a map held by the meta group counts, never a bootstrap map.
    pub(crate) async fn close_departed_groups(&self) {
        let Some(map) = self.meta_map() else { return };
        let me = self.id();
        let mut gone = Vec::new();
        {
            let mut since = self.inner.driver.departed_since.lock();
            for g in self.hosted_groups() {
                let gid = g.group();
                let Some(r) = map.ranges.get(&RangeId(gid.0)) else {
                    // A range the map no longer lists (a deleted stream's system range).
                    let first = *since.entry(gid).or_insert_with(Instant::now);
                    if !gid.is_meta() && first.elapsed() >= DEPARTED_GRACE {
                        since.remove(&gid);
                        gone.push(gid);
                    }
                    continue;
                };
                if gid.is_meta() || r.replicas.contains(&me) || r.learners.contains(&me) {
                    since.remove(&gid);
                    continue;
                }
                let s = g.status();
                let in_own = s.voters.contains(&me) || s.learners.contains(&me);
                let first = *since.entry(gid).or_insert_with(Instant::now);
                if !in_own || first.elapsed() >= DEPARTED_GRACE {
                    since.remove(&gid);
                    gone.push(gid);
                }
            }
        }
        for gid in gone {
            let _g = self.inner.admin_lock.lock().await;
            let Some(g) = self.inner.groups.write().remove(&gid) else {
                continue;
            };
            g.shutdown().await;
            match self.inner.store.remove_group(gid) {
                Ok(()) => tracing::info!(node_id = me.0, group_id = gid.0, "removed replica"),
                Err(e) => tracing::warn!(group_id = gid.0, error = %e, "delete removed replica"),
            }
        }
    }
}

fn ids(v: &[NodeId]) -> Vec<u64> {
    v.iter().map(|n| n.0).collect()
}
