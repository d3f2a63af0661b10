//! The cluster map's object catalogue: system ranges (ranges outside the key space that hold
//! stream partitions or queues) and the streams by name.

use crate::meta::{ClusterMap, RangeInfo};
use crate::stream::{PARTITIONS_MAX, Retention};
use meridian_types::{ErrorCode, MeridianError, RangeId};
use serde::{Deserialize, Serialize};

/// Most system ranges one command may add.
pub const SYSTEM_RANGES_PER_COMMAND_MAX: usize = PARTITIONS_MAX as usize;
/// Longest stream name.
pub const STREAM_NAME_BYTES_MAX: usize = 128;
/// The label of a system range no object has claimed yet.
pub const UNCLAIMED_LABEL: &str = "system";

/// What marks a range as a system range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemRange {
    /// What it holds, for people: `stream orders/0`.
    pub label: String,
    /// Drawn by the creator: a retried `AddSystemRanges` is recognised by it, and the creator
    /// finds the ids the meta group gave its ranges by it.
    pub token: u64,
    /// The placement rule (by prefix) its replicas follow; `None`: the cluster default.
    pub placement: Option<Vec<u8>>,
}

/// One event stream in the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSpec {
    pub name: String,
    /// Drawn at creation; a stream created again under the same name gets another.
    pub uid: u64,
    pub partitions: u32,
    /// The range of each partition (`ranges[p]` holds partition `p`).
    pub ranges: Vec<RangeId>,
    pub retention: Retention,
    pub placement: Option<Vec<u8>>,
    /// The key whose range holds every partition, if the stream was colocated with keys.
    pub colocate: Option<Vec<u8>>,
}

/// Checks a stream name: 1 to [`STREAM_NAME_BYTES_MAX`] bytes of `[A-Za-z0-9._-]`.
pub fn validate_stream_name(name: &str) -> Result<(), MeridianError> {
    let ok = !name.is_empty()
        && name.len() <= STREAM_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(MeridianError::invalid(format!(
            "bad stream name {name:?}: use 1 to {STREAM_NAME_BYTES_MAX} letters, digits, '.', '_' or '-'"
        )))
    }
}

impl ClusterMap {
    pub(crate) fn add_system_ranges(&mut self, ranges: &[RangeInfo]) -> Result<(), MeridianError> {
        if ranges.is_empty() || ranges.len() > SYSTEM_RANGES_PER_COMMAND_MAX {
            return Err(MeridianError::invalid(format!(
                "add 1 to {SYSTEM_RANGES_PER_COMMAND_MAX} ranges at once"
            )));
        }
        let mut token = None;
        for r in ranges {
            let Some(sys) = &r.system else {
                return Err(MeridianError::invalid("only system ranges may be added"));
            };
            if token.is_some_and(|t| t != sys.token) {
                return Err(MeridianError::invalid("one token per command"));
            }
            token = Some(sys.token);
            if r.replicas.is_empty() || !r.learners.is_empty() {
                return Err(MeridianError::invalid(
                    "a new range needs replicas and no learners",
                ));
            }
            if let Some(n) = r.replicas.iter().find(|n| !self.nodes.contains_key(n)) {
                return Err(MeridianError::new(
                    ErrorCode::UnknownNode,
                    format!("node {n} is not in the cluster"),
                ));
            }
        }
        // A retry of a command already applied changes nothing.
        if self
            .ranges
            .values()
            .any(|r| r.system.as_ref().map(|s| s.token) == token)
        {
            return Ok(());
        }
        let mut id = self.next_range_id();
        for r in ranges {
            let mut r = r.clone();
            r.id = id;
            r.version = 1;
            self.ranges.insert(id, r);
            id = RangeId(id.0 + 1);
        }
        self.version += 1;
        Ok(())
    }

    /// The ids of the system ranges added with `token`, in the order they were given.
    pub fn system_ranges_with_token(&self, token: u64) -> Vec<RangeId> {
        self.ranges
            .values()
            .filter(|r| r.system.as_ref().is_some_and(|s| s.token == token))
            .map(|r| r.id)
            .collect()
    }

    pub(crate) fn create_stream(&mut self, spec: &StreamSpec) -> Result<(), MeridianError> {
        validate_stream_name(&spec.name)?;
        if let Some(have) = self.streams.get(&spec.name) {
            if have.uid == spec.uid {
                return Ok(());
            }
            return Err(MeridianError::invalid(format!(
                "stream {} already exists",
                spec.name
            )));
        }
        if spec.partitions == 0
            || spec.partitions > PARTITIONS_MAX
            || spec.ranges.len() != spec.partitions as usize
        {
            return Err(MeridianError::invalid(format!(
                "a stream has 1 to {PARTITIONS_MAX} partitions, one range each"
            )));
        }
        if let Some(id) = spec.ranges.iter().find(|id| !self.ranges.contains_key(id)) {
            return Err(MeridianError::new(
                ErrorCode::RangeMoved,
                format!("range {id} is not in the map"),
            ));
        }
        for (p, id) in spec.ranges.iter().enumerate() {
            if let Some(sys) = self.ranges.get_mut(id).and_then(|r| r.system.as_mut()) {
                sys.label = format!("stream {}/{p}", spec.name);
                sys.placement.clone_from(&spec.placement);
            }
        }
        self.streams.insert(spec.name.clone(), spec.clone());
        self.version += 1;
        Ok(())
    }

    pub(crate) fn delete_stream(&mut self, name: &str) {
        let Some(spec) = self.streams.remove(name) else {
            return;
        };
        let label = format!("stream {name}/");
        for id in &spec.ranges {
            let owned = self
                .ranges
                .get(id)
                .and_then(|r| r.system.as_ref())
                .is_some_and(|s| s.label.starts_with(&label) || s.label == UNCLAIMED_LABEL);
            if owned {
                self.ranges.remove(id);
            }
        }
        self.version += 1;
    }

    /// System ranges no stream or queue has claimed: still labelled [`UNCLAIMED_LABEL`] and
    /// named by no spec.
    pub fn unclaimed_system_ranges(&self) -> Vec<RangeId> {
        let used: std::collections::BTreeSet<RangeId> = self
            .streams
            .values()
            .flat_map(|s| s.ranges.iter().copied())
            .chain(self.queues.values().map(|q| q.range))
            .collect();
        self.ranges
            .values()
            .filter(|r| {
                r.system
                    .as_ref()
                    .is_some_and(|s| s.label == UNCLAIMED_LABEL)
                    && !used.contains(&r.id)
            })
            .map(|r| r.id)
            .collect()
    }

    pub(crate) fn drop_unclaimed_ranges(&mut self, ids: &[RangeId]) {
        let unclaimed = self.unclaimed_system_ranges();
        let before = self.ranges.len();
        for id in ids.iter().filter(|id| unclaimed.contains(id)) {
            self.ranges.remove(id);
        }
        if self.ranges.len() != before {
            self.version += 1;
        }
    }

    /// A fresh range id: one past the largest in use.
    pub fn next_range_id(&self) -> RangeId {
        RangeId(self.ranges.keys().map(|r| r.0).max().unwrap_or(0) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{MetaCommand, NodeInfo, NodeState};
    use meridian_types::{ClusterId, NodeId};

    fn map() -> ClusterMap {
        let mut m = ClusterMap {
            cluster_id: ClusterId(1),
            ..Default::default()
        };
        m.nodes.insert(
            NodeId(1),
            NodeInfo {
                id: NodeId(1),
                addr: "a".into(),
                region: "r".into(),
                zone: "z".into(),
                state: NodeState::Active,
            },
        );
        m.ranges.insert(
            RangeId(1),
            RangeInfo {
                id: RangeId(1),
                start: vec![],
                end: vec![],
                replicas: vec![NodeId(1)],
                learners: vec![],
                version: 1,
                system: None,
            },
        );
        m
    }

    fn sys(id: u64, token: u64) -> RangeInfo {
        RangeInfo {
            id: RangeId(id),
            start: vec![],
            end: vec![],
            replicas: vec![NodeId(1)],
            learners: vec![],
            version: 1,
            system: Some(SystemRange {
                label: UNCLAIMED_LABEL.into(),
                token,
                placement: None,
            }),
        }
    }

    #[test]
    fn system_ranges_are_outside_the_key_space() {
        let mut m = map();
        // Ids are the meta group's choice, whatever the command says.
        m.apply(&MetaCommand::AddSystemRanges {
            ranges: vec![sys(1, 7), sys(1, 7)],
        })
        .unwrap();
        assert_eq!(m.system_ranges_with_token(7), vec![RangeId(2), RangeId(3)]);
        // A retry is recognised.
        let v = m.version;
        m.apply(&MetaCommand::AddSystemRanges {
            ranges: vec![sys(1, 7), sys(1, 7)],
        })
        .unwrap();
        assert_eq!(m.version, v);
        let e = m
            .apply(&MetaCommand::AddSystemRanges {
                ranges: vec![sys(1, 8), sys(1, 9)],
            })
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(m.validate().is_ok());
        assert_eq!(m.range_for(b"k").unwrap().id, RangeId(1));
        assert_eq!(m.ranges_overlapping(b"", b"").len(), 1);
        assert_eq!(m.next_range_id(), RangeId(4));

        let spec = StreamSpec {
            name: "orders".into(),
            uid: 5,
            partitions: 2,
            ranges: vec![RangeId(2), RangeId(3)],
            retention: Retention::default(),
            placement: None,
            colocate: None,
        };
        m.apply(&MetaCommand::CreateStream(spec.clone())).unwrap();
        m.apply(&MetaCommand::CreateStream(spec.clone())).unwrap();
        assert_eq!(
            m.ranges[&RangeId(3)].system.as_ref().unwrap().label,
            "stream orders/1"
        );
        let mut other = spec;
        other.uid = 6;
        assert!(m.apply(&MetaCommand::CreateStream(other)).is_err());
        m.apply(&MetaCommand::DeleteStream {
            name: "orders".into(),
        })
        .unwrap();
        assert!(m.streams.is_empty());
        assert_eq!(m.ranges.len(), 1);
    }

    #[test]
    fn only_unclaimed_system_ranges_are_dropped() {
        let mut m = map();
        m.apply(&MetaCommand::AddSystemRanges {
            ranges: vec![sys(1, 7), sys(1, 7)],
        })
        .unwrap();
        m.apply(&MetaCommand::AddSystemRanges {
            ranges: vec![sys(1, 8)],
        })
        .unwrap();
        assert_eq!(
            m.unclaimed_system_ranges(),
            vec![RangeId(2), RangeId(3), RangeId(4)]
        );
        // Ranges 2 and 3 are claimed by a stream before the drop is applied.
        let spec = StreamSpec {
            name: "orders".into(),
            uid: 5,
            partitions: 2,
            ranges: vec![RangeId(2), RangeId(3)],
            retention: Retention::default(),
            placement: None,
            colocate: None,
        };
        m.apply(&MetaCommand::CreateStream(spec)).unwrap();
        assert_eq!(m.unclaimed_system_ranges(), vec![RangeId(4)]);
        let v = m.version;
        m.apply(&MetaCommand::DropUnclaimedRanges {
            ids: vec![RangeId(1), RangeId(2), RangeId(3), RangeId(4)],
        })
        .unwrap();
        // The key range and the stream's ranges stay; the orphan goes.
        let left: Vec<RangeId> = m.ranges.keys().copied().collect();
        assert_eq!(left, vec![RangeId(1), RangeId(2), RangeId(3)]);
        assert!(m.version > v);
        // Again: no change.
        let v = m.version;
        m.apply(&MetaCommand::DropUnclaimedRanges {
            ids: vec![RangeId(4)],
        })
        .unwrap();
        assert_eq!(m.version, v);
        assert!(m.validate().is_ok());
    }
}
