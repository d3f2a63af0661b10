//! Membership changes of one group, run on its leader: learners added and caught up, voters
//! replaced through joint consensus, leadership handed to another voter. The placement driver
//! (node crate) drives these; this module only wraps openraft.

use crate::group::{RaftGroup, fatal};
use meridian_types::{MeridianError, NodeId};
use openraft::ChangeMembers;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// A learner whose matched log index is at most this many entries behind the leader's last
/// counts as caught up (it can become a voter without stalling commits).
pub const LEARNER_CAUGHT_UP_LAG: u64 = 1000;

/// A group's membership as its leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembership {
    pub leader: NodeId,
    /// Whether the latest membership entry is committed. While it is not, the fields below
    /// (which describe the last committed membership) may be about to change.
    pub settled: bool,
    /// The voters of the committed membership: its uniform config, or the last config of a
    /// joint one (the config the change was heading to).
    pub voters: Vec<NodeId>,
    /// Whether a voter change is half done (joint config): finishing it means proposing
    /// `voters` again.
    pub joint: bool,
    pub learners: Vec<NodeId>,
    /// Learners within [`LEARNER_CAUGHT_UP_LAG`] entries of the leader's log.
    pub caught_up: Vec<NodeId>,
}

fn write_err(
    rg: &RaftGroup,
    what: &str,
    e: RaftError<crate::typ::TypeConfig, ClientWriteError<crate::typ::TypeConfig>>,
) -> MeridianError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            MeridianError::not_leader(rg.group, f.leader_id.map(NodeId))
        }
        RaftError::APIError(e) => {
            MeridianError::unavailable(format!("{what} of group {}: {e}", rg.group))
        }
        RaftError::Fatal(e) => fatal(rg.group, e),
    }
}

impl RaftGroup {
    fn ensure_leader(&self) -> Result<(), MeridianError> {
        if self.raft.is_leader() {
            Ok(())
        } else {
            Err(MeridianError::not_leader(self.group, self.leader()))
        }
    }

    /// The group's membership; only its leader answers (`not_leader` with a hint otherwise).
    pub fn membership(&self) -> Result<GroupMembership, MeridianError> {
        self.ensure_leader()?;
        let m = self.raft.metrics().borrow_watched().clone();
        let settled = m.membership_config.log_id() == m.committed_membership_config.log_id();
        let mem = m.committed_membership_config.membership();
        let joint = mem.get_joint_config();
        let voters: Vec<NodeId> = joint
            .last()
            .map(|c| c.iter().copied().map(NodeId).collect())
            .unwrap_or_default();
        let learners: Vec<NodeId> = mem.learner_ids().map(NodeId).collect();
        let last = m.last_log_index.unwrap_or(0);
        let caught_up = learners
            .iter()
            .copied()
            .filter(|l| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&l.0))
                    .and_then(|matched| matched.as_ref())
                    .is_some_and(|lid| lid.index + LEARNER_CAUGHT_UP_LAG >= last)
            })
            .collect();
        Ok(GroupMembership {
            leader: self.me,
            settled,
            voters,
            joint: joint.len() > 1,
            learners,
            caught_up,
        })
    }

    /// Waits up to `timeout` until learner `node` is caught up; `unavailable` if it is not.
    pub async fn wait_caught_up(
        &self,
        node: NodeId,
        timeout: Duration,
    ) -> Result<(), MeridianError> {
        self.ensure_leader()?;
        let group = self.group;
        let r = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    let last = m.last_log_index.unwrap_or(0);
                    // Not leading any more: stop waiting, the caller sees not_leader below.
                    m.replication.as_ref().is_none_or(|r| {
                        r.get(&node.0)
                            .and_then(|x| x.as_ref())
                            .is_some_and(|lid| lid.index + LEARNER_CAUGHT_UP_LAG >= last)
                    })
                },
                "learner caught up",
            )
            .await;
        match r {
            Ok(_) => self.ensure_leader(),
            Err(e) => Err(MeridianError::unavailable(format!(
                "learner {node} of group {group} is still catching up: {e}"
            ))),
        }
    }

    /// Makes `voters` the group's voters (through a joint config when voters change). Every
    /// new voter must already be a learner. Voters left out stay as learners when `keep`, else
    /// leave the group.
    pub async fn change_voters(
        &self,
        voters: &BTreeSet<NodeId>,
        keep: bool,
    ) -> Result<(), MeridianError> {
        if voters.is_empty() {
            return Err(MeridianError::invalid("a group needs at least one voter"));
        }
        let ids: BTreeSet<u64> = voters.iter().map(|n| n.0).collect();
        self.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(ids), keep)
            .await
            .map(|_| ())
            .map_err(|e| write_err(self, "change voters", e))
    }

    /// Removes learners (never voters) from the group.
    pub async fn remove_learners(&self, nodes: &BTreeSet<NodeId>) -> Result<(), MeridianError> {
        let ids: BTreeSet<u64> = nodes.iter().map(|n| n.0).collect();
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(ids), false)
            .await
            .map(|_| ())
            .map_err(|e| write_err(self, "remove learners", e))
    }

    /// Asks this leader to hand leadership to voter `to`. Returns once the request is queued;
    /// the caller watches the leader change. While it is under way the old leader refuses
    /// writes; if `to` never takes over, the group elects a leader after an election timeout.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), MeridianError> {
        self.ensure_leader()?;
        if to == self.me {
            return Ok(());
        }
        self.raft
            .trigger()
            .transfer_leader(to.0)
            .await
            .map_err(|e| fatal(self.group, e))
    }
}
