//! Election safety: at most one leader per term per group. Sampled from every live node's Raft
//! state every 10 simulated milliseconds during the whole run.

use std::collections::BTreeMap;

#[derive(Default)]
pub struct Observer {
    leaders: BTreeMap<(u64, u64), u64>,
}

impl Observer {
    /// Records that `node` leads `group` in `term`; a violation when another node was seen
    /// leading the same group in the same term.
    pub fn saw_leader(&mut self, group: u64, term: u64, node: u64) -> Option<String> {
        match self.leaders.insert((group, term), node) {
            Some(other) if other != node => Some(format!(
                "election safety: group {group} had two leaders in term {term}: nodes {other} and {node}"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_leaders_in_one_term_is_a_violation() {
        let mut o = super::Observer::default();
        assert!(o.saw_leader(1, 5, 1).is_none());
        assert!(o.saw_leader(1, 5, 1).is_none());
        assert!(o.saw_leader(1, 6, 2).is_none());
        assert!(o.saw_leader(2, 5, 2).is_none());
        assert!(o.saw_leader(1, 5, 3).is_some());
    }
}
