//! Exactly-once application of retried writes: the results of the most recent request ids.

use meridian_types::RequestId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Most request ids remembered per group; the oldest is forgotten first. A client that retries
/// a write after this many newer writes may see it applied twice.
pub const DEDUP_ENTRIES_MAX: usize = 100_000;

/// Remembers the result of each recent request id, in apply order (deterministic).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupTable<V> {
    results: BTreeMap<RequestId, V>,
    order: VecDeque<RequestId>,
}

impl<V> Default for DedupTable<V> {
    fn default() -> Self {
        Self {
            results: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<V> DedupTable<V> {
    pub fn get(&self, id: RequestId) -> Option<&V> {
        self.results.get(&id)
    }

    pub fn insert(&mut self, id: RequestId, result: V) {
        if self.results.insert(id, result).is_none() {
            self.order.push_back(id);
            while self.order.len() > DEDUP_ENTRIES_MAX {
                if let Some(old) = self.order.pop_front() {
                    self.results.remove(&old);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.results.len()
    }

    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_forgets_oldest_first() {
        let mut t = DedupTable::<Vec<u8>>::default();
        for i in 0..(DEDUP_ENTRIES_MAX as u128 + 5) {
            t.insert(RequestId(i), vec![i as u8]);
        }
        assert_eq!(t.len(), DEDUP_ENTRIES_MAX);
        assert!(t.get(RequestId(0)).is_none());
        assert!(t.get(RequestId(4)).is_none());
        assert_eq!(t.get(RequestId(5)), Some(&vec![5u8]));
        // Re-inserting a known id does not grow the table.
        t.insert(RequestId(5), vec![9]);
        assert_eq!(t.len(), DEDUP_ENTRIES_MAX);
    }
}
