//! Linearizability of the client history, per key, against a register with compare-and-set
//! and delete. The search is Wing–Gong with Lowe's memoisation (`meridian_tests::wgl`, checked
//! against stateright's `LinearizabilityTester` on random histories): stateright's tester alone
//! went exponential on some seeds' histories. An operation without a definite answer may take
//! effect at any point after its invocation, or never.

use crate::history::Event;
use meridian_tests::wgl;
use std::collections::{BTreeMap, HashMap};

/// Search steps allowed per key before the answer counts as a failure.
pub const SEARCH_STEPS_MAX: u64 = 20_000_000;

pub fn check(events: &[Event]) -> Vec<String> {
    // Event positions are the real-time order (one thread runs the whole simulation).
    let mut per_key: BTreeMap<String, Vec<wgl::Operation>> = BTreeMap::new();
    let mut slot: HashMap<u64, (String, usize)> = HashMap::new();
    for (pos, e) in events.iter().enumerate() {
        let t = pos as u64;
        match e {
            Event::Invoke { id, key, op: o, .. } => {
                let ops = per_key.entry(key.clone()).or_default();
                slot.insert(*id, (key.clone(), ops.len()));
                ops.push(wgl::Operation {
                    op: o.clone(),
                    ret: None,
                    call_ns: t,
                    return_ns: None,
                });
            }
            Event::Ok { id, ret: r, .. } => {
                if let Some((key, i)) = slot.get(id)
                    && let Some(o) = per_key.get_mut(key).and_then(|ops| ops.get_mut(*i))
                {
                    o.ret = Some(r.clone());
                    o.return_ns = Some(t);
                }
            }
            Event::Unknown { .. } => {}
        }
    }
    let mut out = Vec::new();
    for (key, ops) in &per_key {
        match wgl::check_with_limit(ops, SEARCH_STEPS_MAX) {
            wgl::Outcome::Linearizable => {}
            bad => {
                let lines: Vec<String> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Invoke {
                            id,
                            thread,
                            key: k,
                            op,
                            at_ms,
                        } if k == key => {
                            Some(format!("  {at_ms:>6}ms t{thread} #{id} invoke {op:?}"))
                        }
                        Event::Ok { id, ret, at_ms, .. }
                            if slot.get(id).map(|o| &o.0) == Some(key) =>
                        {
                            Some(format!("  {at_ms:>6}ms #{id} ok {ret:?}"))
                        }
                        Event::Unknown { id, at_ms, why }
                            if slot.get(id).map(|o| &o.0) == Some(key) =>
                        {
                            Some(format!("  {at_ms:>6}ms #{id} unknown ({why})"))
                        }
                        _ => None,
                    })
                    .collect();
                let what = match bad {
                    wgl::Outcome::GaveUp { steps } => {
                        format!("could not be decided within {steps} search steps")
                    }
                    _ => "is not linearizable".to_string(),
                };
                out.push(format!(
                    "linearizability: history of key {key} {what} ({bad:?}):\n{}",
                    lines.join("\n")
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, Ret};

    fn inv(id: u64, thread: u64, op: Op) -> Event {
        Event::Invoke {
            id,
            thread,
            key: "k".into(),
            op,
            at_ms: 0,
        }
    }
    fn ok(id: u64, ret: Ret) -> Event {
        Event::Ok {
            id,
            ret,
            revision: None,
            at_ms: 0,
        }
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_caught() {
        let good = vec![
            inv(1, 1, Op::Put("a".into())),
            ok(1, Ret::PutOk),
            inv(2, 2, Op::Get),
            ok(2, Ret::GetOk(Some("a".into()))),
            inv(3, 2, Op::Delete),
            ok(3, Ret::DeleteOk(true)),
            inv(4, 1, Op::Get),
            ok(4, Ret::GetOk(None)),
        ];
        assert!(check(&good).is_empty());
        let bad = vec![
            inv(1, 1, Op::Put("a".into())),
            ok(1, Ret::PutOk),
            inv(2, 2, Op::Get),
            ok(2, Ret::GetOk(None)),
        ];
        assert_eq!(check(&bad).len(), 1);
    }
}
