//! System ranges: ranges outside the key space, each its own Raft group, that hold objects such
//! as stream partitions and queues. [`Node::allocate_object_ranges`] decides where an object's
//! data lives.
//!
//! A new range is born in the meta group (`MetaCommand::AddSystemRanges`, replicas chosen by
//! `placement_check::assign_spread`, the best the nodes can do as the placement driver would, ids chosen by the meta group). From
//! then on nothing depends on the creator: every replica's reconciler opens the group and, since
//! the range is at version 1 without learners, initialises it with the same voters (openraft
//! allows that on several nodes when the configuration is identical; Raft's vote elects one
//! leader). A creator that crashes after the meta write leaves a range that forms anyway, and
//! that the meta leader removes once it has stayed unclaimed for
//! [`crate::NodeConfig::unclaimed_range_grace`]; one that crashes before it leaves nothing.

use crate::messages::GroupOp;
use crate::node::Node;
use meridian_state::meta_system::{SYSTEM_RANGES_PER_COMMAND_MAX, UNCLAIMED_LABEL};
use meridian_state::{ClusterMap, MetaCommand, RangeInfo, SystemRange, assign_spread};
use meridian_types::{ErrorCode, GroupId, MeridianError, RangeId};
use std::sync::Arc;
use std::time::Duration;

/// How often the creator looks for its new ranges in its own copy of the map.
const MAP_POLL: Duration = Duration::from_millis(20);

impl Node {
    /// Where an object's data lives. With `colocate = Some(key)`: the key-value range holding
    /// `key`, `count` times (so a transaction can write keys and messages atomically). Otherwise
    /// `count` new system ranges placed under the cluster default rule.
    pub async fn allocate_object_ranges(
        &self,
        count: usize,
        colocate: Option<&[u8]>,
    ) -> Result<Vec<RangeId>, MeridianError> {
        self.allocate_object_ranges_placed(count, colocate, None)
            .await
    }

    /// [`Node::allocate_object_ranges`] with new ranges placed under the rule stored for
    /// `placement` (a prefix of `/v1/placement`).
    pub async fn allocate_object_ranges_placed(
        &self,
        count: usize,
        colocate: Option<&[u8]>,
        placement: Option<Vec<u8>>,
    ) -> Result<Vec<RangeId>, MeridianError> {
        if count == 0 || count > SYSTEM_RANGES_PER_COMMAND_MAX {
            return Err(MeridianError::invalid(format!(
                "ask for 1 to {SYSTEM_RANGES_PER_COMMAND_MAX} ranges"
            )));
        }
        let map = self.known_map()?;
        if let Some(key) = colocate {
            let r = map.range_for(key).ok_or_else(|| {
                MeridianError::new(ErrorCode::RangeMoved, "no range holds that key")
            })?;
            return Ok(vec![r.id; count]);
        }
        if let Some(p) = &placement
            && !map.placements.contains_key(p)
        {
            return Err(MeridianError::invalid(format!(
                "no placement rule for prefix {:?}; set one with `meridian placement set`",
                String::from_utf8_lossy(p)
            )));
        }
        let token = meridian_types::rng::next_u128() as u64;
        let ranges = plan_system_ranges(&map, count, token, placement)?;
        self.ensure_meta_map().await?;
        self.execute(
            GroupId::META,
            GroupOp::Meta(MetaCommand::AddSystemRanges { ranges }),
        )
        .await?;
        // The meta group chose the ids; they show in this node's copy of the map shortly.
        let deadline = tokio::time::Instant::now() + self.inner.cfg.request_timeout;
        loop {
            let ids = self
                .map_arc()
                .map(|m| m.system_ranges_with_token(token))
                .unwrap_or_default();
            if ids.len() == count {
                return Ok(ids);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MeridianError::new(
                    ErrorCode::Timeout,
                    "the new ranges did not reach this node's map in time",
                ));
            }
            tokio::time::sleep(MAP_POLL).await;
        }
    }

    /// Right after `init` the meta group may not hold the map yet: store it (idempotent for
    /// the same cluster), so a change to the map that follows is not refused.
    pub(crate) async fn ensure_meta_map(&self) -> Result<(), MeridianError> {
        let stored = self
            .group(GroupId::META)
            .is_some_and(|g| g.read(|s| s.meta.is_initialized()));
        let boot = self.inner.bootstrap.read().clone();
        match (stored, boot) {
            (false, Some(map)) => self
                .execute(GroupId::META, GroupOp::Meta(MetaCommand::Init(map)))
                .await
                .map(|_| ()),
            _ => Ok(()),
        }
    }

    pub(crate) fn known_map(&self) -> Result<Arc<ClusterMap>, MeridianError> {
        self.map_arc()
            .filter(|m| m.is_initialized())
            .ok_or_else(|| self.no_map_error())
    }
}

/// `count` new system ranges for `map`, replicas chosen one range at a time so the load spreads.
pub fn plan_system_ranges(
    map: &ClusterMap,
    count: usize,
    token: u64,
    placement: Option<Vec<u8>>,
) -> Result<Vec<RangeInfo>, MeridianError> {
    let mut m = map.clone();
    let mut next = m.next_range_id();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut r = RangeInfo {
            id: next,
            start: Vec::new(),
            end: Vec::new(),
            replicas: Vec::new(),
            learners: Vec::new(),
            version: 1,
            system: Some(SystemRange {
                label: UNCLAIMED_LABEL.to_string(),
                token,
                placement: placement.clone(),
            }),
        };
        let rule = m.rule_for(&r);
        // Where the nodes cannot meet the rule (one zone, fewer nodes than replicas), the best
        // they can do, as the placement driver keeps existing ranges; it moves them once the
        // topology allows.
        r.replicas = assign_spread(&rule, &m, &[], |_| true).ok_or_else(|| {
            MeridianError::new(
                ErrorCode::PlacementUnsatisfiable,
                "no active node may hold a new range under its placement rule",
            )
        })?;
        m.ranges.insert(next, r.clone());
        out.push(r);
        next = RangeId(next.0 + 1);
    }
    Ok(out)
}
