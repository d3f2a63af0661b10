//! Placement rules: for a key prefix, how many replicas, over which regions and zones, what
//! failure they must survive and where the leader should live. Stored in the meta group's
//! [`ClusterMap`](crate::ClusterMap); the placement driver (node crate) makes ranges meet them.

use serde::{Deserialize, Serialize};

/// Replica counts a rule may ask for.
pub const PLACEMENT_REPLICAS_ALLOWED: [u8; 2] = [3, 5];
/// Longest prefix a rule may name, in bytes.
pub const PLACEMENT_PREFIX_MAX: usize = 1024;
/// Most rules a cluster holds.
pub const PLACEMENT_RULES_MAX: usize = 1000;

/// What failure a range's replicas must survive with a majority left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Survival {
    /// Losing any one zone leaves a majority: at most `(replicas - 1) / 2` replicas per zone.
    #[default]
    Zone,
    /// Losing any one region leaves a majority: at most `(replicas - 1) / 2` per region.
    Region,
}

impl Survival {
    pub fn as_str(self) -> &'static str {
        match self {
            Survival::Zone => "zone",
            Survival::Region => "region",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "zone" => Some(Survival::Zone),
            "region" => Some(Survival::Region),
            _ => None,
        }
    }
}

/// One placement rule. It applies to every range whose keys all begin with `prefix` (the rule
/// with the longest such prefix wins); the empty prefix is the cluster default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRule {
    pub prefix: Vec<u8>,
    /// Voters per range: 3 or 5.
    pub replicas: u8,
    /// Regions replicas may live in; empty means any.
    pub regions: Vec<String>,
    /// Zones replicas may live in (`region/zone` or a bare zone name); empty means any.
    pub zones: Vec<String>,
    pub survival: Survival,
    /// Preferred leader regions, most preferred (the home region) first; the leader goes to the
    /// first of these holding a live replica. Empty: no preference.
    pub leader_regions: Vec<String>,
}

impl PlacementRule {
    /// Whether every key of `[start, end)` (`end` empty = the end of the key space) begins with
    /// this rule's prefix.
    pub fn covers(&self, start: &[u8], end: &[u8]) -> bool {
        if !start.starts_with(&self.prefix) {
            return false;
        }
        if self.prefix.is_empty() {
            return true;
        }
        match prefix_end(&self.prefix) {
            // The prefix is all 0xff: every key from it on begins with it only if `end` is too.
            None => end.is_empty() || end.starts_with(&self.prefix),
            Some(pe) => !end.is_empty() && end <= pe.as_slice(),
        }
    }

    /// Most replicas one failure domain (zone or region, per `survival`) may hold.
    pub fn max_per_domain(&self) -> usize {
        (self.replicas as usize).saturating_sub(1) / 2
    }
}

/// The first key after every key beginning with `prefix`, or `None` if there is none.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut v = prefix.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xff {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &[u8]) -> PlacementRule {
        PlacementRule {
            prefix: prefix.to_vec(),
            replicas: 3,
            regions: vec![],
            zones: vec![],
            survival: Survival::Region,
            leader_regions: vec![],
        }
    }

    #[test]
    fn covers_whole_ranges_only() {
        assert!(rule(b"").covers(b"", b""));
        assert!(rule(b"eu/").covers(b"eu/", b"eu0"));
        assert!(rule(b"eu/").covers(b"eu/a", b"eu/b"));
        assert!(!rule(b"eu/").covers(b"eu/", b""));
        assert!(!rule(b"eu/").covers(b"e", b"eu0"));
        assert!(!rule(b"eu/").covers(b"eu/", b"eu1"));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(rule(b"").max_per_domain(), 1);
    }
}
