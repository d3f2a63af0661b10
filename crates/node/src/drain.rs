//! Draining and removing a node: `drain` marks it `Draining` so the placement driver moves its
//! replicas and leaderships away; `remove` marks a node that holds nothing `Removed`.

use crate::messages::{GroupOp, M_STATUS, NodeReport};
use crate::node::{ADMIN_CALL_TIMEOUT, Node, decode};
use crate::view::DrainStatus;
use meridian_state::{MetaCommand, NodeState};
use meridian_types::{ErrorCode, GroupId, MeridianError, NodeId};

impl Node {
    /// Starts draining `node` (idempotent) and reports what it still holds.
    pub async fn drain(&self, node: NodeId) -> Result<DrainStatus, MeridianError> {
        let state = self.node_state(node)?;
        match state {
            NodeState::Removed => {
                return Err(MeridianError::invalid(format!(
                    "node {node} is removed; there is nothing to drain"
                )));
            }
            NodeState::Draining => {}
            NodeState::Active | NodeState::Joining => {
                self.ensure_meta_holds_map().await?;
                let cmd = MetaCommand::SetNodeState {
                    node,
                    state: NodeState::Draining,
                };
                self.execute(GroupId::META, GroupOp::Meta(cmd)).await?;
                tracing::info!(node = node.0, "draining node");
                // Report from a map that shows the change (this node may follow the meta group).
                self.await_map(|m| {
                    m.nodes.get(&node).is_some_and(|n| {
                        n.state != NodeState::Active && n.state != NodeState::Joining
                    })
                })
                .await?;
            }
        }
        self.drain_status(node).await
    }

    /// Marks `node` removed once it holds no replica and no meta vote.
    pub async fn remove(&self, node: NodeId) -> Result<(), MeridianError> {
        if self.node_state(node)? == NodeState::Removed {
            return Ok(());
        }
        let st = self.drain_status(node).await?;
        if st.replicas > 0 || st.meta_voter {
            let mut what = Vec::new();
            if st.replicas > 0 {
                what.push(format!("{} range replica(s)", st.replicas));
            }
            if st.meta_voter {
                what.push("a vote in the meta group".to_string());
            }
            return Err(MeridianError::new(
                ErrorCode::NotDrained,
                format!(
                    "node {node} still holds {}; drain it first (`meridian cluster drain {node}`) and wait until it holds nothing",
                    what.join(" and ")
                ),
            ));
        }
        let cmd = MetaCommand::SetNodeState {
            node,
            state: NodeState::Removed,
        };
        self.execute(GroupId::META, GroupOp::Meta(cmd)).await?;
        tracing::info!(node = node.0, "removed node");
        self.await_map(|m| {
            m.nodes
                .get(&node)
                .is_some_and(|n| n.state == NodeState::Removed)
        })
        .await
    }

    fn node_state(&self, node: NodeId) -> Result<NodeState, MeridianError> {
        let map = self
            .map_arc()
            .filter(|m| m.is_initialized())
            .ok_or_else(|| self.no_map_error())?;
        map.nodes.get(&node).map(|n| n.state).ok_or_else(|| {
            MeridianError::new(
                ErrorCode::UnknownNode,
                format!("node {node} is not in the cluster"),
            )
        })
    }

    /// What `node` still holds: range replicas (from the map), the groups it leads (asked of
    /// the node; 0 when it does not answer) and its meta vote.
    pub async fn drain_status(&self, node: NodeId) -> Result<DrainStatus, MeridianError> {
        let state = self.node_state(node)?;
        let map = self
            .map_arc()
            .ok_or_else(|| MeridianError::unavailable("the cluster map is not known yet"))?;
        let replicas = map
            .ranges
            .values()
            .filter(|r| r.replicas.contains(&node) || r.learners.contains(&node))
            .count() as u64;
        let leaders = if node == self.id() {
            self.hosted_groups()
                .iter()
                .filter(|g| g.is_leader())
                .count()
        } else {
            let env = self.envelope(
                node,
                GroupId::META,
                M_STATUS,
                Vec::new(),
                ADMIN_CALL_TIMEOUT,
            );
            match self.inner.transport.call(env).await {
                Ok(b) => decode::<NodeReport>(&b)
                    .map(|r| r.groups.iter().filter(|g| g.role == "leader").count())
                    .unwrap_or(0),
                Err(_) => 0,
            }
        } as u64;
        let meta_voter = map.meta_replicas.contains(&node);
        Ok(DrainStatus {
            node: node.0,
            state: state.as_str().to_string(),
            replicas,
            leaders,
            meta_voter,
            done: replicas == 0 && leaders == 0 && !meta_voter,
        })
    }
}
