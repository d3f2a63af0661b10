//! The meta group's state: the cluster map (nodes and ranges).

pub use crate::meta_system::{StreamSpec, SystemRange};
use crate::placement::{PlacementRule, Survival};
use crate::queue::QueueSpec;
use meridian_types::{ClusterId, ErrorCode, MeridianError, NodeId, RangeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most queues a cluster's catalogue holds.
pub const QUEUES_MAX: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    Active,
    Joining,
    Draining,
    Removed,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Joining => "joining",
            NodeState::Draining => "draining",
            NodeState::Removed => "removed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub addr: String,
    pub region: String,
    pub zone: String,
    pub state: NodeState,
}

/// One range: the keys `[start, end)`; an empty `end` means the end of the key space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeInfo {
    pub id: RangeId,
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    /// Voters of the range's group.
    pub replicas: Vec<NodeId>,
    /// Nodes being added: they host the group as learners until they become voters.
    pub learners: Vec<NodeId>,
    /// Bumped on every change of bounds, replicas or learners.
    pub version: u64,
    /// Set for a range outside the key space that holds objects (stream partitions, queues):
    /// key routing, scans and the prefix rules ignore it.
    #[serde(default)]
    pub system: Option<SystemRange>,
}

impl RangeInfo {
    /// Whether `key` falls in the range (never for a system range).
    pub fn contains(&self, key: &[u8]) -> bool {
        self.system.is_none()
            && key >= self.start.as_slice()
            && (self.end.is_empty() || key < self.end.as_slice())
    }

    /// Whether this is a key-value range (not a system range).
    pub fn is_keyspace(&self) -> bool {
        self.system.is_none()
    }
}

/// The cluster map held by the meta group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    pub cluster_id: ClusterId,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    pub ranges: BTreeMap<RangeId, RangeInfo>,
    /// Voters of the meta group.
    pub meta_replicas: Vec<NodeId>,
    /// Placement rules by prefix (the empty prefix is the cluster default).
    pub placements: BTreeMap<Vec<u8>, PlacementRule>,
    /// Bumped on every change.
    pub version: u64,
    /// Event streams by name.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamSpec>,
    /// The work queues, by name (their messages live in `QueueSpec::range`).
    #[serde(default)]
    pub queues: BTreeMap<String, QueueSpec>,
}

impl ClusterMap {
    pub fn is_initialized(&self) -> bool {
        self.cluster_id.0 != 0
    }

    /// The range holding `key`.
    pub fn range_for(&self, key: &[u8]) -> Option<&RangeInfo> {
        // Ranges are few (tens to thousands); a linear scan over the ordered starts is fine
        // until splits arrive, when this becomes a BTreeMap keyed by start.
        self.ranges
            .values()
            .filter(|r| r.is_keyspace() && r.start.as_slice() <= key)
            .max_by(|a, b| a.start.cmp(&b.start))
            .filter(|r| r.contains(key))
    }

    /// The rule that governs `range`: the one with the longest prefix covering all its keys,
    /// else the cluster default (3 replicas, or fewer on a smaller cluster; region survival when
    /// there are three regions or more, else zone survival; no leader preference).
    pub fn rule_for(&self, range: &RangeInfo) -> PlacementRule {
        // A system range follows the rule its object names, else the cluster default.
        if let Some(sys) = &range.system
            && let Some(r) = sys.placement.as_ref().and_then(|p| self.placements.get(p))
        {
            return r.clone();
        }
        if let Some(r) = self
            .placements
            .values()
            .filter(|r| r.covers(&range.start, &range.end))
            .max_by_key(|r| r.prefix.len())
        {
            return r.clone();
        }
        let live: Vec<&NodeInfo> = self
            .nodes
            .values()
            .filter(|n| n.state == NodeState::Active)
            .collect();
        let regions: std::collections::BTreeSet<&str> =
            live.iter().map(|n| n.region.as_str()).collect();
        PlacementRule {
            prefix: Vec::new(),
            replicas: live.len().clamp(1, 3) as u8,
            regions: Vec::new(),
            zones: Vec::new(),
            survival: if regions.len() >= 3 {
                Survival::Region
            } else {
                Survival::Zone
            },
            leader_regions: Vec::new(),
        }
    }

    /// Ranges overlapping `[start, end)` (`end` empty = to the end), in key order.
    pub fn ranges_overlapping(&self, start: &[u8], end: &[u8]) -> Vec<&RangeInfo> {
        let mut v: Vec<&RangeInfo> = self
            .ranges
            .values()
            .filter(|r| {
                if !r.is_keyspace() {
                    return false;
                }
                let starts_before_end = end.is_empty() || r.start.as_slice() < end;
                let ends_after_start = r.end.is_empty() || r.end.as_slice() > start;
                starts_before_end && ends_after_start
            })
            .collect();
        v.sort_by(|a, b| a.start.cmp(&b.start));
        v
    }

    /// Checks the map is whole: ranges tile the key space without gaps or overlaps, and every
    /// replica is a known node.
    pub fn validate(&self) -> Result<(), MeridianError> {
        let mut ranges: Vec<&RangeInfo> =
            self.ranges.values().filter(|r| r.is_keyspace()).collect();
        ranges.sort_by(|a, b| a.start.cmp(&b.start));
        let mut expect_start: &[u8] = &[];
        for (i, r) in ranges.iter().enumerate() {
            if r.start.as_slice() != expect_start {
                return Err(MeridianError::invalid(format!(
                    "range {} does not start where the previous ends",
                    r.id
                )));
            }
            let last = i + 1 == ranges.len();
            if last != r.end.is_empty() || (!last && r.end <= r.start) {
                return Err(MeridianError::invalid(format!(
                    "range {} has a bad end",
                    r.id
                )));
            }
            for n in &r.replicas {
                if !self.nodes.contains_key(n) {
                    return Err(MeridianError::new(
                        ErrorCode::UnknownNode,
                        format!("range {} names unknown node {n}", r.id),
                    ));
                }
            }
            expect_start = &r.end;
        }
        if ranges.is_empty() {
            return Err(MeridianError::invalid("a cluster needs at least one range"));
        }
        Ok(())
    }
}

/// A command in the meta group's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Sets the first map. Applying it again with the same cluster id changes nothing.
    Init(ClusterMap),
    /// Adds a node or updates its address, region and zone.
    UpsertNode(NodeInfo),
    SetNodeState {
        node: NodeId,
        state: NodeState,
    },
    /// Adds or replaces the rule for its prefix.
    SetPlacement(PlacementRule),
    /// Removes the rule for `prefix` (removing none is not an error).
    DeletePlacement {
        prefix: Vec<u8>,
    },
    /// Records a range's new voters and learners, if the range is still at `expect_version`
    /// (so two drivers cannot overwrite each other's steps).
    SetRangeMembers {
        range: RangeId,
        replicas: Vec<NodeId>,
        learners: Vec<NodeId>,
        expect_version: u64,
    },
    /// Records the meta group's voters after its Raft membership changed.
    SetMetaReplicas {
        replicas: Vec<NodeId>,
    },
    /// Adds system ranges (each with `system` set, all with one token) at fresh ids, version 1.
    /// Again with the same token changes nothing; the creator finds the ids by the token.
    AddSystemRanges {
        ranges: Vec<RangeInfo>,
    },
    /// Adds a stream to the catalogue and labels its system ranges (again with the same uid
    /// changes nothing).
    CreateStream(StreamSpec),
    /// Removes a stream and the system ranges that only it used (none is not an error).
    DeleteStream {
        name: String,
    },
    /// Adds a queue to the catalogue; the same spec again is no change, another spec under
    /// the same name is `queue_exists`.
    CreateQueue(QueueSpec),
    /// Removes a queue from the catalogue (none is not an error).
    DeleteQueue {
        name: String,
    },
    /// Removes these system ranges if they are still unclaimed (a creator that crashed between
    /// `AddSystemRanges` and its `CreateStream`/`CreateQueue` left them); a range claimed
    /// meanwhile is kept.
    DropUnclaimedRanges {
        ids: Vec<RangeId>,
    },
}

impl ClusterMap {
    /// Applies one meta command.
    pub fn apply(&mut self, cmd: &MetaCommand) -> Result<(), MeridianError> {
        match cmd {
            MetaCommand::Init(map) => {
                if self.is_initialized() {
                    if self.cluster_id == map.cluster_id {
                        return Ok(());
                    }
                    return Err(MeridianError::new(
                        ErrorCode::AlreadyInitialized,
                        "the meta group already holds another cluster",
                    ));
                }
                map.validate()?;
                *self = map.clone();
                self.version = self.version.max(1);
            }
            MetaCommand::UpsertNode(info) => {
                if !self.is_initialized() {
                    return Err(MeridianError::new(
                        ErrorCode::NotInitialized,
                        "the cluster is not initialised",
                    ));
                }
                self.nodes.insert(info.id, info.clone());
                self.version += 1;
            }
            MetaCommand::SetNodeState { node, state } => {
                let n = self.nodes.get_mut(node).ok_or_else(|| {
                    MeridianError::new(
                        ErrorCode::UnknownNode,
                        format!("node {node} is not in the cluster"),
                    )
                })?;
                n.state = *state;
                self.version += 1;
            }
            MetaCommand::SetPlacement(_)
            | MetaCommand::DeletePlacement { .. }
            | MetaCommand::SetRangeMembers { .. }
            | MetaCommand::AddSystemRanges { .. }
            | MetaCommand::CreateStream(_)
            | MetaCommand::DeleteStream { .. }
            | MetaCommand::CreateQueue(_)
            | MetaCommand::DeleteQueue { .. }
            | MetaCommand::DropUnclaimedRanges { .. }
                if !self.is_initialized() =>
            {
                // `Init` replaces the whole map: a change applied before it would be lost.
                return Err(MeridianError::new(
                    ErrorCode::NotInitialized,
                    "the meta group does not hold the cluster map yet; retry",
                ));
            }
            MetaCommand::SetPlacement(rule) => {
                if !self.placements.contains_key(&rule.prefix)
                    && self.placements.len() >= crate::placement::PLACEMENT_RULES_MAX
                {
                    return Err(MeridianError::invalid(format!(
                        "a cluster holds at most {} placement rules",
                        crate::placement::PLACEMENT_RULES_MAX
                    )));
                }
                self.placements.insert(rule.prefix.clone(), rule.clone());
                self.version += 1;
            }
            MetaCommand::DeletePlacement { prefix } => {
                if self.placements.remove(prefix).is_some() {
                    self.version += 1;
                }
            }
            MetaCommand::SetRangeMembers {
                range,
                replicas,
                learners,
                expect_version,
            } => {
                for n in replicas.iter().chain(learners) {
                    if !self.nodes.contains_key(n) {
                        return Err(MeridianError::new(
                            ErrorCode::UnknownNode,
                            format!("node {n} is not in the cluster"),
                        ));
                    }
                }
                if replicas.is_empty() {
                    return Err(MeridianError::invalid("a range needs at least one replica"));
                }
                let r = self.ranges.get_mut(range).ok_or_else(|| {
                    MeridianError::new(ErrorCode::RangeMoved, format!("no range {range}"))
                })?;
                if r.version != *expect_version {
                    return Err(MeridianError::new(
                        ErrorCode::RangeMoved,
                        format!(
                            "range {range} is at version {}, not {expect_version}",
                            r.version
                        ),
                    ));
                }
                r.replicas = replicas.clone();
                r.learners = learners.clone();
                r.version += 1;
                self.version += 1;
            }
            MetaCommand::SetMetaReplicas { replicas } => {
                if replicas.is_empty() {
                    return Err(MeridianError::invalid("the meta group needs a voter"));
                }
                if let Some(n) = replicas.iter().find(|n| !self.nodes.contains_key(n)) {
                    return Err(MeridianError::new(
                        ErrorCode::UnknownNode,
                        format!("node {n} is not in the cluster"),
                    ));
                }
                self.meta_replicas = replicas.clone();
                self.version += 1;
            }
            MetaCommand::AddSystemRanges { ranges } => self.add_system_ranges(ranges)?,
            MetaCommand::CreateStream(spec) => self.create_stream(spec)?,
            MetaCommand::DeleteStream { name } => self.delete_stream(name),
            MetaCommand::CreateQueue(spec) => self.create_queue(spec)?,
            MetaCommand::DeleteQueue { name } => self.delete_queue(name),
            MetaCommand::DropUnclaimedRanges { ids } => self.drop_unclaimed_ranges(ids),
        }
        Ok(())
    }

    fn create_queue(&mut self, spec: &QueueSpec) -> Result<(), MeridianError> {
        crate::queue::validate_queue_name(&spec.name)?;
        spec.config.validate()?;
        match self.queues.get(&spec.name) {
            Some(s) if s == spec => return Ok(()),
            Some(_) => {
                return Err(MeridianError::new(
                    ErrorCode::QueueExists,
                    format!(
                        "a queue named {:?} exists with another configuration",
                        spec.name
                    ),
                ));
            }
            None => {}
        }
        if self.queues.len() >= QUEUES_MAX {
            return Err(MeridianError::invalid(format!(
                "a cluster holds at most {QUEUES_MAX} queues"
            )));
        }
        if let Some(sys) = self
            .ranges
            .get_mut(&spec.range)
            .and_then(|r| r.system.as_mut())
        {
            sys.label = format!("queue {}", spec.name);
        }
        self.queues.insert(spec.name.clone(), spec.clone());
        self.version += 1;
        Ok(())
    }

    /// Removes a queue, and the system range it had to itself (none is not an error).
    fn delete_queue(&mut self, name: &str) {
        let Some(spec) = self.queues.remove(name) else {
            return;
        };
        let label = format!("queue {name}");
        let owned = self
            .ranges
            .get(&spec.range)
            .and_then(|r| r.system.as_ref())
            .is_some_and(|s| s.label == label);
        if owned {
            self.ranges.remove(&spec.range);
        }
        self.version += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64) -> NodeInfo {
        NodeInfo {
            id: NodeId(id),
            addr: format!("n{id}"),
            region: "r".into(),
            zone: "z".into(),
            state: NodeState::Active,
        }
    }

    fn map() -> ClusterMap {
        let mut m = ClusterMap {
            cluster_id: ClusterId(7),
            ..Default::default()
        };
        for i in 1..=3 {
            m.nodes.insert(NodeId(i), node(i));
        }
        let bounds: [(&[u8], &[u8]); 3] = [(b"", b"g"), (b"g", b"p"), (b"p", b"")];
        for (i, (s, e)) in bounds.iter().enumerate() {
            let id = RangeId(i as u64 + 1);
            m.ranges.insert(
                id,
                RangeInfo {
                    id,
                    start: s.to_vec(),
                    end: e.to_vec(),
                    replicas: vec![NodeId(1), NodeId(2), NodeId(3)],
                    learners: vec![],
                    version: 1,
                    system: None,
                },
            );
        }
        m
    }

    #[test]
    fn routes_keys_to_ranges() {
        let m = map();
        assert!(m.validate().is_ok());
        assert_eq!(m.range_for(b"").unwrap().id, RangeId(1));
        assert_eq!(m.range_for(b"apple").unwrap().id, RangeId(1));
        assert_eq!(m.range_for(b"g").unwrap().id, RangeId(2));
        assert_eq!(m.range_for(b"zzz").unwrap().id, RangeId(3));
        assert_eq!(m.ranges_overlapping(b"f", b"h").len(), 2);
        assert_eq!(m.ranges_overlapping(b"a", b"").len(), 3);
        assert_eq!(m.ranges_overlapping(b"q", b"r").len(), 1);
    }

    #[test]
    fn rejects_gaps_and_unknown_nodes() {
        let mut m = map();
        m.ranges.get_mut(&RangeId(2)).unwrap().start = b"h".to_vec();
        assert!(m.validate().is_err());
        let mut m = map();
        m.ranges
            .get_mut(&RangeId(2))
            .unwrap()
            .replicas
            .push(NodeId(9));
        assert_eq!(m.validate().unwrap_err().code, ErrorCode::UnknownNode);
    }

    #[test]
    fn init_is_idempotent_per_cluster() {
        let mut s = ClusterMap::default();
        s.apply(&MetaCommand::Init(map())).unwrap();
        s.apply(&MetaCommand::Init(map())).unwrap();
        let mut other = map();
        other.cluster_id = ClusterId(8);
        assert_eq!(
            s.apply(&MetaCommand::Init(other)).unwrap_err().code,
            ErrorCode::AlreadyInitialized
        );
        s.apply(&MetaCommand::UpsertNode(node(4))).unwrap();
        assert_eq!(s.nodes.len(), 4);
    }
}
