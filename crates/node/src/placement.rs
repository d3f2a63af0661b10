//! Placement rules as clients see them: set, get, list and delete through the meta group, and
//! [`PlacementView`], the JSON shape of one rule with the ranges it governs.
//!
//! A rule is checked with [`validate_rule`] against this node's cluster map before it is
//! proposed, so a rule the topology cannot meet is refused with what is missing. Moving replicas
//! to meet the rules is the placement driver's job, not this file's.

use crate::messages::GroupOp;
use crate::node::Node;
use meridian_state::{ClusterMap, MetaCommand, PlacementRule, RangeInfo, validate_rule};
use meridian_types::{ErrorCode, GroupId, MeridianError, RangeId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How often a node looks whether its copy of the map shows a change it just made.
const MAP_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// One placement rule, shaped for `/v1/placement`, `meridian placement` and `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementView {
    /// The key prefix, lossy UTF-8; empty for the cluster default.
    pub prefix: String,
    pub replicas: u8,
    /// Regions replicas may live in; empty means any.
    pub regions: Vec<String>,
    /// Zones replicas may live in (`region/zone` or `zone`); empty means any.
    pub zones: Vec<String>,
    /// `zone` or `region`.
    pub survival: String,
    /// Preferred leader regions, the home region first.
    pub leader_regions: Vec<String>,
    /// Ranges this rule governs: those whose keys all begin with its prefix and that no rule
    /// with a longer prefix governs.
    pub ranges: Vec<u64>,
    /// True for the built-in default that applies while no rule is stored for the empty prefix.
    #[serde(default)]
    pub implicit: bool,
}

impl PlacementView {
    /// The view of `rule` in `map`.
    pub fn of(rule: &PlacementRule, map: &ClusterMap, implicit: bool) -> Self {
        let ranges = map
            .ranges
            .values()
            .filter(|r| map.rule_for(r).prefix == rule.prefix)
            .map(|r| r.id.0)
            .collect();
        PlacementView {
            prefix: String::from_utf8_lossy(&rule.prefix).into_owned(),
            replicas: rule.replicas,
            regions: rule.regions.clone(),
            zones: rule.zones.clone(),
            survival: rule.survival.as_str().to_string(),
            leader_regions: rule.leader_regions.clone(),
            ranges,
            implicit,
        }
    }
}

/// The rule that applies to the whole key space when none is stored for the empty prefix.
fn default_rule(map: &ClusterMap) -> PlacementRule {
    map.rule_for(&RangeInfo {
        id: RangeId(0),
        start: Vec::new(),
        end: Vec::new(),
        replicas: Vec::new(),
        learners: Vec::new(),
        version: 0,
        system: None,
    })
}

/// Every stored rule in prefix order, the implicit default first when none is stored for the
/// empty prefix.
pub fn placement_views(map: &ClusterMap) -> Vec<PlacementView> {
    let mut out = Vec::with_capacity(map.placements.len() + 1);
    if !map.placements.contains_key(&Vec::new()) {
        out.push(PlacementView::of(&default_rule(map), map, true));
    }
    out.extend(
        map.placements
            .values()
            .map(|r| PlacementView::of(r, map, false)),
    );
    out
}

impl Node {
    fn initialized_map(&self) -> Result<std::sync::Arc<ClusterMap>, MeridianError> {
        self.map_arc()
            .filter(|m| m.is_initialized())
            .ok_or_else(|| self.no_map_error())
    }

    /// Right after `cluster init` the meta group may not hold the map yet (its first leader
    /// stores it): store it first, as `join` does (idempotent for the same cluster).
    pub(crate) async fn ensure_meta_holds_map(&self) -> Result<(), MeridianError> {
        let in_meta = self
            .group(GroupId::META)
            .is_some_and(|g| g.read(|s| s.meta.is_initialized()));
        if in_meta {
            return Ok(());
        }
        let map = self.initialized_map()?;
        self.execute(
            GroupId::META,
            GroupOp::Meta(MetaCommand::Init((*map).clone())),
        )
        .await
        .map(|_| ())
    }

    /// Waits (up to the request timeout) until this node's map satisfies `done`, so a client
    /// that changed a rule through this node reads the change back from it.
    pub(crate) async fn await_map(
        &self,
        done: impl Fn(&ClusterMap) -> bool,
    ) -> Result<(), MeridianError> {
        let deadline = tokio::time::Instant::now() + self.inner.cfg.request_timeout;
        loop {
            if self.map_arc().is_some_and(|m| done(&m)) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MeridianError::new(
                    ErrorCode::Timeout,
                    "the change is committed but this node has not applied it yet",
                ));
            }
            tokio::time::sleep(MAP_POLL_INTERVAL).await;
        }
    }

    /// Every placement rule (see [`placement_views`]).
    pub async fn list_placements(&self) -> Result<Vec<PlacementView>, MeridianError> {
        let map = self.initialized_map()?;
        Ok(placement_views(&map))
    }

    /// The rule stored for exactly `prefix`; for the empty prefix the implicit default if none
    /// is stored. `key_not_found` otherwise.
    pub async fn get_placement(&self, prefix: &[u8]) -> Result<PlacementView, MeridianError> {
        let map = self.initialized_map()?;
        match map.placements.get(prefix) {
            Some(r) => Ok(PlacementView::of(r, &map, false)),
            None if prefix.is_empty() => Ok(PlacementView::of(&default_rule(&map), &map, true)),
            None => Err(MeridianError::new(
                ErrorCode::KeyNotFound,
                format!(
                    "no placement rule for prefix {:?}",
                    String::from_utf8_lossy(prefix)
                ),
            )),
        }
    }

    /// Checks `rule` against the cluster map ([`validate_rule`]) and stores it, replacing any
    /// rule for the same prefix. Returns the stored rule once this node has applied it.
    pub async fn put_placement(&self, rule: PlacementRule) -> Result<PlacementView, MeridianError> {
        let map = self.initialized_map()?;
        validate_rule(&rule, &map)?;
        self.ensure_meta_holds_map().await?;
        self.execute(
            GroupId::META,
            GroupOp::Meta(MetaCommand::SetPlacement(rule.clone())),
        )
        .await?;
        self.await_map(|m| m.placements.get(&rule.prefix) == Some(&rule))
            .await?;
        let map = self.initialized_map()?;
        Ok(PlacementView::of(&rule, &map, false))
    }

    /// Removes the rule for `prefix`; returns whether there was one.
    pub async fn remove_placement(&self, prefix: &[u8]) -> Result<bool, MeridianError> {
        let map = self.initialized_map()?;
        let existed = map.placements.contains_key(prefix);
        self.ensure_meta_holds_map().await?;
        self.execute(
            GroupId::META,
            GroupOp::Meta(MetaCommand::DeletePlacement {
                prefix: prefix.to_vec(),
            }),
        )
        .await?;
        self.await_map(|m| !m.placements.contains_key(prefix))
            .await?;
        Ok(existed)
    }
}
