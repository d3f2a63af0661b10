//! Exactly-once application of retried writes: the results of the most recent request ids.

use meridian_types::RequestId;
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{HashMap, VecDeque};

/// Most request ids remembered per group; the oldest is forgotten first. A client that retries
/// a write after this many newer writes may see it applied twice.
pub const DEDUP_ENTRIES_MAX: usize = 100_000;

/// Remembers the result of each recent request id, in apply order (deterministic).
///
/// A hash map, not a B-tree: every write looks its id up, and in a table of 100,000 ids a
/// B-tree lookup missed the cache at every level (on a follower at 256 clients, the lookup was
/// most of the time spent applying a put). Nothing iterates the map except serialization,
/// which goes in apply order (`order`), so replicas write identical snapshot bytes
/// (`state_digest` compares them). The serialized form is the one the B-tree had: a map of
/// results, then the order.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Stored<V>")]
pub struct DedupTable<V> {
    results: HashMap<RequestId, V>,
    order: VecDeque<RequestId>,
}

/// The serialized form, checked before it becomes a table: every id in `order` once, each with
/// its result, and no other result (what `insert` keeps true, and a damaged snapshot may not).
#[derive(Deserialize)]
struct Stored<V> {
    results: HashMap<RequestId, V>,
    order: VecDeque<RequestId>,
}

impl<V> TryFrom<Stored<V>> for DedupTable<V> {
    type Error = &'static str;

    fn try_from(s: Stored<V>) -> Result<Self, Self::Error> {
        let mut seen = std::collections::HashSet::with_capacity(s.order.len());
        let consistent = s.order.len() == s.results.len()
            && s.order
                .iter()
                .all(|id| s.results.contains_key(id) && seen.insert(*id));
        if !consistent {
            return Err("dedup table: its ids and its results disagree");
        }
        Ok(Self {
            results: s.results,
            order: s.order,
        })
    }
}

impl<V> Default for DedupTable<V> {
    fn default() -> Self {
        Self {
            results: HashMap::new(),
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

impl<V: Serialize> Serialize for DedupTable<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("DedupTable", 2)?;
        st.serialize_field("results", &InApplyOrder(self))?;
        st.serialize_field("order", &self.order)?;
        st.end()
    }
}

/// The results as a map, in apply order.
struct InApplyOrder<'a, V>(&'a DedupTable<V>);

impl<V: Serialize> Serialize for InApplyOrder<'_, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        // Every remembered id is in `order` once and in `results` (`insert` keeps them in step).
        let mut map = s.serialize_map(Some(t.results.len()))?;
        for id in &t.order {
            if let Some(v) = t.results.get(id) {
                map.serialize_entry(id, v)?;
            }
        }
        map.end()
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

    /// The bytes the B-tree version wrote (a map in id order, then the order) still read back,
    /// and the same inserts always give the same bytes, in apply order.
    #[test]
    fn serializes_in_apply_order_and_reads_the_old_form() {
        #[derive(Serialize)]
        struct Old {
            results: std::collections::BTreeMap<RequestId, u8>,
            order: VecDeque<RequestId>,
        }
        let ids = [7u128, 3, 9, 1];
        let old = Old {
            results: ids.iter().map(|&i| (RequestId(i), i as u8)).collect(),
            order: ids.iter().map(|&i| RequestId(i)).collect(),
        };
        let mut t = DedupTable::<u8>::default();
        for &i in &ids {
            t.insert(RequestId(i), i as u8);
        }
        let read: DedupTable<u8> =
            postcard::from_bytes(&postcard::to_allocvec(&old).unwrap()).unwrap();
        assert_eq!(read, t);

        let bytes = postcard::to_allocvec(&t).unwrap();
        let mut again = DedupTable::<u8>::default();
        for &i in &ids {
            again.insert(RequestId(i), i as u8);
        }
        assert_eq!(
            postcard::to_allocvec(&again).unwrap(),
            bytes,
            "deterministic"
        );
        assert_eq!(bytes[0], 4, "the map's length first");
        assert_eq!(
            bytes[1..3],
            [7, 7],
            "then id 7 (the first applied) and its result"
        );
        let back: DedupTable<u8> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, t);
    }

    /// Bytes whose ids and results disagree are refused, not turned into a table that would
    /// write a map of the wrong length (found by the `wire_codec` fuzz target).
    #[test]
    fn a_table_whose_ids_and_results_disagree_is_refused() {
        #[derive(Serialize)]
        struct Raw {
            results: std::collections::BTreeMap<RequestId, u8>,
            order: Vec<RequestId>,
        }
        let raw = |results: &[u128], order: &[u128]| {
            postcard::to_allocvec(&Raw {
                results: results.iter().map(|&i| (RequestId(i), 0)).collect(),
                order: order.iter().map(|&i| RequestId(i)).collect(),
            })
            .unwrap()
        };
        for (results, order) in [
            (&[1u128, 2][..], &[1u128][..]),
            (&[1], &[1, 2]),
            (&[1, 2], &[1, 1]),
            (&[1], &[2]),
        ] {
            assert!(
                postcard::from_bytes::<DedupTable<u8>>(&raw(results, order)).is_err(),
                "{results:?} / {order:?}"
            );
        }
        assert!(postcard::from_bytes::<DedupTable<u8>>(&raw(&[1, 2], &[2, 1])).is_ok());
    }
}
