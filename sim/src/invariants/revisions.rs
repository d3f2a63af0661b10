//! Revisions strictly increase within a range: a write acknowledged before another began has a
//! smaller revision, and two acknowledged writes never share one (a transaction's writes share
//! its single revision and are counted once).

use crate::history::Event;
use meridian_state::ClusterMap;
use std::collections::HashMap;

pub fn check(events: &[Event], map: Option<&ClusterMap>) -> Vec<String> {
    let range_of = |key: &str| -> u64 {
        map.and_then(|m| m.range_for(key.as_bytes()))
            .map(|r| r.id.0)
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    let mut key_of: HashMap<u64, String> = HashMap::new();
    // Per range: the highest revision acknowledged so far, and the owner of every revision.
    let mut high: HashMap<u64, u64> = HashMap::new();
    let mut floor_at_invoke: HashMap<u64, u64> = HashMap::new();
    let mut owner: HashMap<(u64, u64), u64> = HashMap::new();
    for e in events {
        match e {
            Event::Invoke { id, key, .. } => {
                let r = range_of(key);
                key_of.insert(*id, key.clone());
                floor_at_invoke.insert(*id, high.get(&r).copied().unwrap_or(0));
            }
            Event::Ok {
                id,
                revision: Some(rev),
                ..
            } => {
                let Some(key) = key_of.get(id) else { continue };
                let r = range_of(key);
                let floor = floor_at_invoke.get(id).copied().unwrap_or(0);
                if *rev <= floor {
                    out.push(format!(
                        "revisions: write #{id} on key {key} (range {r}) got revision {rev}, not above {floor} acknowledged before it began"
                    ));
                }
                if let Some(other) = owner.insert((r, *rev), *id) {
                    out.push(format!(
                        "revisions: writes #{other} and #{id} in range {r} share revision {rev}"
                    ));
                }
                let h = high.entry(r).or_insert(0);
                *h = (*h).max(*rev);
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, Ret};

    fn inv(id: u64) -> Event {
        Event::Invoke {
            id,
            thread: id,
            key: "k".into(),
            op: Op::Put("v".into()),
            at_ms: 0,
        }
    }
    fn ok(id: u64, rev: u64) -> Event {
        Event::Ok {
            id,
            ret: Ret::PutOk,
            revision: Some(rev),
            at_ms: 0,
        }
    }

    #[test]
    fn a_later_write_with_a_smaller_revision_is_caught() {
        assert!(check(&[inv(1), ok(1, 10), inv(2), ok(2, 11)], None).is_empty());
        // Concurrent writes may finish in either order.
        assert!(check(&[inv(1), inv(2), ok(2, 11), ok(1, 10)], None).is_empty());
        assert_eq!(check(&[inv(1), ok(1, 10), inv(2), ok(2, 9)], None).len(), 1);
        assert_eq!(
            check(&[inv(1), inv(2), ok(1, 10), ok(2, 10)], None).len(),
            1
        );
    }
}
