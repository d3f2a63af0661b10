//! Election safety: at most one leader per leader id per group. Sampled from every live node's
//! Raft state every 10 simulated milliseconds during the whole run.
//!
//! openraft's leader ids are `(term, node)` (its "advanced" mode): a node that voted for
//! `(t, n1)` may later vote for `(t, n3)`, so two nodes can lead one term one after the other,
//! and a superseded leader may still believe it leads for a while. Entries carry the full
//! leader id, so log matching and linearizability (checked by their own invariants) do not depend
//! on one leader per term. What must hold is that a leader id names one node and that a group's
//! leader ids never go back: a node that led `(t, n)` never leads a smaller id `(t', n)` later.

use std::collections::BTreeMap;

#[derive(Default)]
pub struct Observer {
    /// Highest term each node was seen leading, per group.
    led: BTreeMap<(u64, u64), u64>,
}

impl Observer {
    /// Records that `node` leads `group` in `term`; a violation when the same node was seen
    /// leading the group in a higher term before (its leader id went back).
    pub fn saw_leader(&mut self, group: u64, term: u64, node: u64) -> Option<String> {
        let last = self.led.entry((group, node)).or_insert(term);
        if term < *last {
            return Some(format!(
                "election safety: node {node} led group {group} in term {last}, then in term {term}"
            ));
        }
        *last = term;
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_leader_id_going_back_is_a_violation() {
        let mut o = super::Observer::default();
        assert!(o.saw_leader(1, 5, 1).is_none());
        assert!(o.saw_leader(1, 5, 1).is_none());
        // Two nodes may lead one term in openraft's (term, node) leader ids.
        assert!(o.saw_leader(1, 5, 3).is_none());
        assert!(o.saw_leader(1, 6, 2).is_none());
        assert!(o.saw_leader(2, 4, 1).is_none());
        assert!(o.saw_leader(1, 7, 1).is_none());
        assert!(o.saw_leader(1, 5, 1).is_some());
    }
}
