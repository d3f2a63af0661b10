//! Client histories and their linearizability check: every operation's invocation and return
//! in real-time order, checked per key against a compare-and-set register with stateright's
//! `LinearizabilityTester`.

use parking_lot::Mutex;
use std::collections::BTreeMap;

/// The sequential specification the history is checked against, kept free of any checker crate
/// so it can be unit-tested on its own.
mod stateright_free {
    use serde::Serialize;

    #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
    pub enum Op {
        Put(String),
        Get,
        /// Set to `new` if the current value is `expect` (`None`: the key is absent).
        Cas {
            expect: Option<String>,
            new: String,
        },
        /// Remove the key.
        Delete,
    }

    #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
    pub enum Ret {
        PutOk,
        GetOk(Option<String>),
        CasOk(bool),
        /// Whether a key was there to delete.
        DeleteOk(bool),
    }

    /// A register with compare-and-set: the model of one key.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
    pub struct CasRegister(pub Option<String>);

    impl CasRegister {
        pub fn step(&mut self, op: &Op) -> Ret {
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
                Op::Delete => Ret::DeleteOk(self.0.take().is_some()),
            }
        }
    }
}

pub use stateright_free::{CasRegister, Op, Ret};

#[derive(Clone, Debug)]
enum Event {
    Invoke { key: String, thread: u64, op: Op },
    Return { key: String, thread: u64, ret: Ret },
}

/// A shared, append-only record of client operations. Writers call [`History::invoke`] before
/// sending a request and [`History::ok`] after a definite answer; an operation with no definite
/// answer (a timeout, an unknown outcome) is simply never returned, so the checker may place it
/// anywhere after its invocation, or nowhere.
#[derive(Default)]
pub struct History {
    events: Mutex<Vec<Event>>,
}

impl History {
    pub fn invoke(&self, key: &str, thread: u64, op: Op) {
        self.events.lock().push(Event::Invoke {
            key: key.into(),
            thread,
            op,
        });
    }

    pub fn ok(&self, key: &str, thread: u64, ret: Ret) {
        self.events.lock().push(Event::Return {
            key: key.into(),
            thread,
            ret,
        });
    }

    pub fn len(&self) -> usize {
        self.events.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of completed operations.
    pub fn completed(&self) -> usize {
        self.events
            .lock()
            .iter()
            .filter(|e| matches!(e, Event::Return { .. }))
            .count()
    }

    /// Checks each key's history; `Err` names the first key that is not linearizable.
    pub fn check(&self) -> Result<(), String> {
        use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
        let events = self.events.lock().clone();
        let mut testers: BTreeMap<String, LinearizabilityTester<u64, Model>> = BTreeMap::new();
        for e in &events {
            match e {
                Event::Invoke { key, thread, op } => {
                    let t = testers
                        .entry(key.clone())
                        .or_insert_with(|| LinearizabilityTester::new(Model::default()));
                    t.on_invoke(*thread, op.clone())
                        .map_err(|m| format!("key {key}: {m}"))?;
                }
                Event::Return { key, thread, ret } => {
                    let t = testers
                        .get_mut(key)
                        .ok_or_else(|| format!("return before invoke on {key}"))?;
                    t.on_return(*thread, ret.clone())
                        .map_err(|m| format!("key {key}: {m}"))?;
                }
            }
        }
        for (key, t) in &testers {
            if !t.is_consistent() {
                let ops: Vec<String> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Invoke { key: k, thread, op } if k == key => {
                            Some(format!("  t{thread} invoke {op:?}"))
                        }
                        Event::Return {
                            key: k,
                            thread,
                            ret,
                        } if k == key => Some(format!("  t{thread} return {ret:?}")),
                        _ => None,
                    })
                    .collect();
                return Err(format!(
                    "history of key {key} is not linearizable:\n{}",
                    ops.join("\n")
                ));
            }
        }
        Ok(())
    }
}

/// [`CasRegister`] as a stateright sequential specification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Model(pub CasRegister);

impl stateright::semantics::SequentialSpec for Model {
    type Op = Op;
    type Ret = Ret;

    fn invoke(&mut self, op: &Op) -> Ret {
        self.0.step(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_linearizable_history_and_rejects_a_stale_read() {
        let h = History::default();
        h.invoke("k", 1, Op::Put("a".into()));
        h.ok("k", 1, Ret::PutOk);
        h.invoke("k", 2, Op::Get);
        h.ok("k", 2, Ret::GetOk(Some("a".into())));
        assert!(h.check().is_ok());

        let bad = History::default();
        bad.invoke("k", 1, Op::Put("a".into()));
        bad.ok("k", 1, Ret::PutOk);
        bad.invoke("k", 2, Op::Get);
        bad.ok("k", 2, Ret::GetOk(None));
        assert!(bad.check().is_err());
    }

    #[test]
    fn an_unfinished_write_may_or_may_not_take_effect() {
        let h = History::default();
        h.invoke("k", 1, Op::Put("a".into())); // never returns
        h.invoke("k", 2, Op::Get);
        h.ok("k", 2, Ret::GetOk(Some("a".into())));
        h.invoke("k", 3, Op::Get);
        h.ok("k", 3, Ret::GetOk(Some("a".into())));
        assert!(h.check().is_ok());
        // But once seen, it cannot be unseen.
        h.invoke("k", 4, Op::Get);
        h.ok("k", 4, Ret::GetOk(None));
        assert!(h.check().is_err());
    }

    #[test]
    fn cas_semantics() {
        let mut r = CasRegister::default();
        assert_eq!(
            r.step(&Op::Cas {
                expect: None,
                new: "x".into()
            }),
            Ret::CasOk(true)
        );
        assert_eq!(
            r.step(&Op::Cas {
                expect: None,
                new: "y".into()
            }),
            Ret::CasOk(false)
        );
        assert_eq!(r.step(&Op::Get), Ret::GetOk(Some("x".into())));
    }
}
