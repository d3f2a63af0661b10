//! Linearizability of the client history, per key, against a register with compare-and-set
//! and delete (stateright's `LinearizabilityTester`). An operation without a definite answer
//! stays in flight: it may take effect at any point after its invocation, or never.

use crate::history::{Event, Op, Ret};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Register(pub Option<String>);

impl SequentialSpec for Register {
    type Op = Op;
    type Ret = Ret;

    fn invoke(&mut self, op: &Op) -> Ret {
        match op {
            Op::Put(v) => {
                self.0 = Some(v.clone());
                Ret::PutOk
            }
            Op::Get => Ret::GetOk(self.0.clone()),
            Op::Cas { expect, new } => {
                if &self.0 == expect {
                    self.0 = Some(new.clone());
                    Ret::CasOk(true)
                } else {
                    Ret::CasOk(false)
                }
            }
            Op::Delete => {
                self.0 = None;
                Ret::DeleteOk
            }
        }
    }
}

pub fn check(events: &[Event]) -> Vec<String> {
    let mut testers: BTreeMap<String, LinearizabilityTester<u64, Register>> = BTreeMap::new();
    let mut of: HashMap<u64, (String, u64)> = HashMap::new();
    let mut out = Vec::new();
    for e in events {
        match e {
            Event::Invoke {
                id,
                thread,
                key,
                op,
                ..
            } => {
                of.insert(*id, (key.clone(), *thread));
                let t = testers
                    .entry(key.clone())
                    .or_insert_with(|| LinearizabilityTester::new(Register::default()));
                if let Err(m) = t.on_invoke(*thread, op.clone()) {
                    out.push(format!("history of key {key} is malformed: {m}"));
                }
            }
            Event::Ok { id, ret, .. } => {
                let Some((key, thread)) = of.get(id) else {
                    continue;
                };
                if let Some(t) = testers.get_mut(key)
                    && let Err(m) = t.on_return(*thread, ret.clone())
                {
                    out.push(format!("history of key {key} is malformed: {m}"));
                }
            }
            Event::Unknown { .. } => {}
        }
    }
    for (key, t) in &testers {
        if !t.is_consistent() {
            let ops: Vec<String> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Invoke {
                        id,
                        thread,
                        key: k,
                        op,
                        at_ms,
                    } if k == key => Some(format!("  {at_ms:>6}ms t{thread} #{id} invoke {op:?}")),
                    Event::Ok { id, ret, at_ms, .. } if of.get(id).map(|o| &o.0) == Some(key) => {
                        Some(format!("  {at_ms:>6}ms #{id} ok {ret:?}"))
                    }
                    Event::Unknown { id, at_ms, why } if of.get(id).map(|o| &o.0) == Some(key) => {
                        Some(format!("  {at_ms:>6}ms #{id} unknown ({why})"))
                    }
                    _ => None,
                })
                .collect();
            out.push(format!(
                "linearizability: history of key {key} is not linearizable:\n{}",
                ops.join("\n")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ok(3, Ret::DeleteOk),
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
