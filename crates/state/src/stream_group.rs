//! Consumer groups of a stream: members, their heartbeats, and which partitions each reads.
//!
//! Membership is kept by the stream's partition 0 (the coordinator). Assignment is a pure
//! function of the sorted member ids and the partition count (range assignment), so every
//! replica and every member computes the same answer. The generation grows on every change of
//! membership; a member that learns a new generation drops the partitions it no longer holds and
//! picks up the new ones from their committed offsets, while the others read on.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Shortest session timeout a member may ask for.
pub const SESSION_TIMEOUT_MIN_MS: u64 = 1_000;
/// Longest session timeout a member may ask for.
pub const SESSION_TIMEOUT_MAX_MS: u64 = 300_000;
/// The session timeout when a member asks for none.
pub const SESSION_TIMEOUT_DEFAULT_MS: u64 = 10_000;
/// Most members of one group.
pub const MEMBERS_MAX: usize = 1_000;

/// One member: when it was last heard of (leader time) and how long it may stay silent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub last_seen_ms: u64,
    pub session_timeout_ms: u64,
}

/// A consumer group as its coordinator holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroup {
    pub generation: u64,
    pub partitions: u32,
    pub members: BTreeMap<String, Member>,
}

/// What a member is told on every heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupAssignment {
    pub generation: u64,
    /// The partitions this member reads, ascending.
    pub partitions: Vec<u32>,
    pub members: u32,
}

impl ConsumerGroup {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Records a heartbeat (joining an unknown member) and answers its assignment. A full group
    /// answers an empty assignment to a newcomer.
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        member: &str,
        partitions: u32,
        session_timeout_ms: u64,
    ) -> GroupAssignment {
        let timeout = if session_timeout_ms == 0 {
            SESSION_TIMEOUT_DEFAULT_MS
        } else {
            session_timeout_ms.clamp(SESSION_TIMEOUT_MIN_MS, SESSION_TIMEOUT_MAX_MS)
        };
        if self.partitions != partitions {
            self.partitions = partitions;
            self.generation += 1;
        }
        let full = self.members.len() >= MEMBERS_MAX;
        match self.members.get_mut(member) {
            Some(m) => {
                m.last_seen_ms = m.last_seen_ms.max(now_ms);
                m.session_timeout_ms = timeout;
            }
            None if full => {
                return GroupAssignment {
                    generation: self.generation,
                    partitions: Vec::new(),
                    members: self.members.len() as u32,
                };
            }
            None => {
                self.members.insert(
                    member.to_string(),
                    Member {
                        last_seen_ms: now_ms,
                        session_timeout_ms: timeout,
                    },
                );
                self.generation += 1;
            }
        }
        self.assignment_of(member)
    }

    /// Removes a member; the others share its partitions.
    pub fn leave(&mut self, member: &str) {
        if self.members.remove(member).is_some() {
            self.generation += 1;
        }
    }

    /// Whether some member has been silent past its session timeout at `now_ms`.
    pub fn expiry_due(&self, now_ms: u64) -> bool {
        self.members
            .values()
            .any(|m| m.last_seen_ms.saturating_add(m.session_timeout_ms) <= now_ms)
    }

    /// Removes the members silent past their session timeout.
    pub fn expire(&mut self, now_ms: u64) {
        let before = self.members.len();
        self.members
            .retain(|_, m| m.last_seen_ms.saturating_add(m.session_timeout_ms) > now_ms);
        if self.members.len() != before {
            self.generation += 1;
        }
    }

    /// The assignment of every member.
    pub fn assignments(&self) -> BTreeMap<String, Vec<u32>> {
        let ids: Vec<&str> = self.members.keys().map(String::as_str).collect();
        assign_range(&ids, self.partitions)
    }

    /// One member's assignment (empty if it is not a member).
    pub fn assignment_of(&self, member: &str) -> GroupAssignment {
        GroupAssignment {
            generation: self.generation,
            partitions: self.assignments().remove(member).unwrap_or_default(),
            members: self.members.len() as u32,
        }
    }
}

/// Range assignment: members sorted by id take contiguous runs of partitions, the first
/// `partitions % members` one more than the rest. Every partition goes to exactly one member.
pub fn assign_range(members: &[&str], partitions: u32) -> BTreeMap<String, Vec<u32>> {
    let mut sorted: Vec<&str> = members.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = BTreeMap::new();
    if sorted.is_empty() {
        return out;
    }
    let n = sorted.len() as u32;
    let (each, extra) = (partitions / n, partitions % n);
    let mut next = 0;
    for (i, m) in sorted.iter().enumerate() {
        let take = each + u32::from((i as u32) < extra);
        out.insert(m.to_string(), (next..next + take).collect());
        next += take;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn range_assignment_table() {
        let a = assign_range(&["b", "a", "c"], 7);
        assert_eq!(a["a"], vec![0, 1, 2]);
        assert_eq!(a["b"], vec![3, 4]);
        assert_eq!(a["c"], vec![5, 6]);
        let a = assign_range(&["x", "y"], 1);
        assert_eq!(a["x"], vec![0]);
        assert!(a["y"].is_empty());
        assert!(assign_range(&[], 4).is_empty());
    }

    #[test]
    fn join_leave_and_timeout_bump_the_generation() {
        let mut g = ConsumerGroup::default();
        let a = g.heartbeat(0, "m1", 4, 2_000);
        assert_eq!(a.partitions, vec![0, 1, 2, 3]);
        let g1 = a.generation;
        let b = g.heartbeat(100, "m2", 4, 2_000);
        assert!(b.generation > g1);
        assert_eq!(b.partitions, vec![2, 3]);
        assert_eq!(g.heartbeat(200, "m1", 4, 2_000).partitions, vec![0, 1]);
        // m2 stays silent past its timeout; m1 keeps beating.
        g.heartbeat(2_000, "m1", 4, 2_000);
        assert!(g.expiry_due(2_100));
        g.expire(2_100);
        assert_eq!(g.members.len(), 1);
        assert_eq!(g.assignment_of("m1").partitions, vec![0, 1, 2, 3]);
        let gen_before = g.generation;
        g.leave("m1");
        assert!(g.is_empty() && g.generation > gen_before);
    }

    proptest! {
        #[test]
        fn every_partition_has_exactly_one_owner(
            members in proptest::collection::btree_set("[a-e]{1,3}", 0..8),
            partitions in 0u32..40,
        ) {
            let ids: Vec<&str> = members.iter().map(String::as_str).collect();
            let a = assign_range(&ids, partitions);
            let mut all: Vec<u32> = a.values().flatten().copied().collect();
            all.sort_unstable();
            if ids.is_empty() {
                prop_assert!(all.is_empty());
            } else {
                prop_assert_eq!(all, (0..partitions).collect::<Vec<_>>());
                let sizes: Vec<usize> = a.values().map(Vec::len).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                prop_assert!(hi - lo <= 1);
            }
            // Deterministic whatever the input order.
            let mut rev = ids.clone();
            rev.reverse();
            prop_assert_eq!(assign_range(&rev, partitions), a);
        }
    }
}
