//! Linearizability of one key's history by the Wing–Gong search with Lowe's memoisation (the
//! algorithm of Knossos' `wgl` and Porcupine): walk the call/return events in time order, try to
//! linearize a pending call next, back-track when a return is reached whose call is still
//! pending, and never revisit a (set of linearized operations, register state) pair.
//!
//! It checks the same sequential specification as [`crate::history`] ([`CasRegister`]) and
//! agrees with stateright's `LinearizabilityTester` (a unit test compares them on random
//! histories), but its memo keeps it polynomial on the long histories a real-network run
//! produces, where many writes end with an unknown outcome.

use crate::history::{CasRegister, Op, Ret};
use std::collections::HashSet;

/// The most search steps spent on one key before giving up (the answer is then "unknown",
/// which a test treats as a failure).
pub const SEARCH_STEPS_MAX: u64 = 50_000_000;

/// One operation of one key's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub op: Op,
    /// `None`: the outcome is unknown (no answer, or an ambiguous error). Such an operation may
    /// take effect at any point after its call, or never.
    pub ret: Option<Ret>,
    pub call_ns: u64,
    /// `None` together with `ret: None`: never returned.
    pub return_ns: Option<u64>,
}

/// What the search found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    /// No order explains the history. `linearized` are the indexes of the longest prefix order
    /// found, `state` the register after it, and `stuck` the operation whose return was reached
    /// while it could not be placed.
    NotLinearizable {
        linearized: Vec<usize>,
        state: Option<String>,
        stuck: usize,
    },
    /// [`SEARCH_STEPS_MAX`] reached.
    GaveUp {
        steps: u64,
    },
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call: the index of its return event.
    partner: usize,
}

/// Checks `ops` (one key) against a register that starts empty.
pub fn check(ops: &[Operation]) -> Outcome {
    check_with_limit(ops, SEARCH_STEPS_MAX)
}

pub fn check_with_limit(ops: &[Operation], steps_max: u64) -> Outcome {
    let n = ops.len();
    if n == 0 {
        return Outcome::Linearizable;
    }
    // Events in time order; at equal times calls come first (the operations then overlap, the
    // weaker and so safer reading of a tie).
    let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        order.push((o.call_ns, 0, i));
        let ret_at = match (o.ret.is_some(), o.return_ns) {
            (true, Some(t)) => t.max(o.call_ns),
            // An unknown outcome is open to the end of the history.
            _ => u64::MAX,
        };
        order.push((ret_at, 1, i));
    }
    order.sort_unstable();
    let mut events: Vec<Event> = order
        .iter()
        .map(|&(_, kind, op)| Event {
            op,
            is_call: kind == 0,
            partner: usize::MAX,
        })
        .collect();
    let mut return_of = vec![usize::MAX; n];
    for (ix, e) in events.iter().enumerate() {
        if !e.is_call {
            return_of[e.op] = ix;
        }
    }
    for e in events.iter_mut() {
        if e.is_call {
            e.partner = return_of[e.op];
        }
    }

    // A circular doubly linked list over the events with a sentinel at `head`.
    let head = events.len();
    let mut next: Vec<usize> = (1..=events.len() + 1).collect();
    let mut prev: Vec<usize> = (0..=events.len()).map(|i| i.wrapping_sub(1)).collect();
    next[head] = 0;
    prev[0] = head;
    next[head - 1] = head;
    prev[head] = head - 1;
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, nx) = (prev[e], next[e]);
        next[p] = nx;
        prev[nx] = p;
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, nx) = (prev[e], next[e]);
        next[p] = e;
        prev[nx] = e;
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut n_linearized = 0usize;
    let mut state = CasRegister::default();
    let mut memo: HashSet<(Vec<u64>, CasRegister)> = HashSet::new();
    let mut stack: Vec<(usize, CasRegister)> = Vec::new();
    let mut best: Option<(usize, Vec<u64>, CasRegister, usize)> = None;
    let mut entry = next[head];
    let mut steps = 0u64;

    while next[head] != head {
        steps += 1;
        if steps > steps_max {
            return Outcome::GaveUp { steps };
        }
        let e = events[entry];
        if e.is_call {
            let o = &ops[e.op];
            let mut s = state.clone();
            let got = s.step(&o.op);
            let fits = o.ret.as_ref().is_none_or(|want| *want == got);
            if fits {
                let mut lin = linearized.clone();
                lin[e.op / 64] |= 1 << (e.op % 64);
                if memo.insert((lin.clone(), s.clone())) {
                    stack.push((entry, state));
                    state = s;
                    linearized = lin;
                    n_linearized += 1;
                    lift(&mut next, &mut prev, entry);
                    lift(&mut next, &mut prev, e.partner);
                    entry = next[head];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // A return whose call is still pending: this order cannot go on. Remember the
            // longest order that a completed operation stopped (an unknown one, whose return
            // is at the end, is never the cause).
            let better = best.as_ref().is_none_or(|b| n_linearized > b.0);
            if better && (ops[e.op].ret.is_some() || best.is_none()) {
                best = Some((n_linearized, linearized.clone(), state.clone(), e.op));
            }
            let Some((call, s)) = stack.pop() else {
                let (_, lin, st, stuck) = best.expect("a stuck search records where");
                return Outcome::NotLinearizable {
                    linearized: ordered(&lin, n),
                    state: st.0,
                    stuck,
                };
            };
            let op = events[call].op;
            unlift(&mut next, &mut prev, events[call].partner);
            unlift(&mut next, &mut prev, call);
            linearized[op / 64] &= !(1 << (op % 64));
            n_linearized -= 1;
            state = s;
            entry = next[call];
        }
    }
    Outcome::Linearizable
}

fn ordered(bits: &[u64], n: usize) -> Vec<usize> {
    (0..n)
        .filter(|i| bits[i / 64] & (1 << (i % 64)) != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

    fn op(op: Op, ret: Option<Ret>, call: u64, ret_at: Option<u64>) -> Operation {
        Operation {
            op,
            ret,
            call_ns: call,
            return_ns: ret_at,
        }
    }

    #[test]
    fn sequential_and_concurrent_histories() {
        let put = |v: &str| Op::Put(v.into());
        let got = |v: Option<&str>| Some(Ret::GetOk(v.map(String::from)));
        // put a; get → a.
        let ok = [
            op(put("a"), Some(Ret::PutOk), 0, Some(10)),
            op(Op::Get, got(Some("a")), 20, Some(30)),
        ];
        assert_eq!(check(&ok), Outcome::Linearizable);
        // put a; get → absent: a stale read.
        let stale = [
            op(put("a"), Some(Ret::PutOk), 0, Some(10)),
            op(Op::Get, got(None), 20, Some(30)),
        ];
        assert!(matches!(
            check(&stale),
            Outcome::NotLinearizable { stuck: 1, .. }
        ));
        // A get concurrent with the put may see either.
        let overlap = [
            op(put("a"), Some(Ret::PutOk), 0, Some(30)),
            op(Op::Get, got(None), 10, Some(20)),
        ];
        assert_eq!(check(&overlap), Outcome::Linearizable);
        // An unknown write may apply late, but once seen stays seen.
        let unknown = [
            op(put("a"), None, 0, None),
            op(Op::Get, got(Some("a")), 10, Some(20)),
            op(Op::Get, got(None), 30, Some(40)),
        ];
        assert!(matches!(check(&unknown), Outcome::NotLinearizable { .. }));
        // Deletes.
        let del = [
            op(put("a"), Some(Ret::PutOk), 0, Some(10)),
            op(Op::Delete, Some(Ret::DeleteOk(true)), 20, Some(30)),
            op(Op::Delete, Some(Ret::DeleteOk(true)), 40, Some(50)),
        ];
        assert!(matches!(check(&del), Outcome::NotLinearizable { .. }));
    }

    #[test]
    fn gives_up_at_the_step_limit() {
        // Unknown writes are open to the end, so each subset of them is a state to try: 2^12.
        let ops: Vec<Operation> = (0..12)
            .map(|i| op(Op::Put(format!("v{i}")), None, i, None))
            .chain([op(
                Op::Get,
                Some(Ret::GetOk(Some("x".into()))),
                100,
                Some(110),
            )])
            .collect();
        assert!(matches!(
            check_with_limit(&ops, 1000),
            Outcome::GaveUp { .. }
        ));
        assert!(matches!(check(&ops), Outcome::NotLinearizable { .. }));
    }

    /// Random small histories of a few threads: this search and stateright's tester agree.
    #[test]
    fn agrees_with_stateright_on_random_histories() {
        let mut disagreements = Vec::new();
        let mut n_bad = 0;
        for seed in 0..400u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            // Each thread runs operations one after another; some return a made-up (possibly
            // wrong) answer, some never return.
            let mut clock = 0u64;
            let mut ops = Vec::new();
            let mut tester = LinearizabilityTester::<u64, crate::history::Model>::default();
            let mut in_flight: Vec<Option<(usize, u64)>> = vec![None; 3];
            let mut thread_of = Vec::new();
            let mut retired = [false; 3];
            for _ in 0..12 {
                clock += 1;
                let t = rng.random_range(0..3usize);
                if retired[t] {
                    continue;
                }
                match in_flight[t].take() {
                    None => {
                        let v = || format!("v{}", clock);
                        let o = match rng.random_range(0..4) {
                            0 => Op::Put(v()),
                            1 => Op::Get,
                            2 => Op::Cas {
                                expect: [None, Some("v1".to_string()), Some("v3".into())]
                                    [rng.random_range(0..3)]
                                .clone(),
                                new: v(),
                            },
                            _ => Op::Delete,
                        };
                        tester.on_invoke(t as u64, o.clone()).unwrap();
                        ops.push(op(o, None, clock, None));
                        thread_of.push(t);
                        in_flight[t] = Some((ops.len() - 1, clock));
                    }
                    Some((i, _)) => {
                        if rng.random_bool(0.15) {
                            // Never returns; the thread stops.
                            retired[t] = true;
                            continue;
                        }
                        let ret = match &ops[i].op {
                            Op::Put(_) => Ret::PutOk,
                            Op::Get => Ret::GetOk(
                                [None, Some("v1".to_string()), Some("v3".into())]
                                    [rng.random_range(0..3)]
                                .clone(),
                            ),
                            Op::Cas { .. } => Ret::CasOk(rng.random_bool(0.5)),
                            Op::Delete => Ret::DeleteOk(rng.random_bool(0.5)),
                        };
                        tester.on_return(t as u64, ret.clone()).unwrap();
                        ops[i].ret = Some(ret);
                        ops[i].return_ns = Some(clock);
                    }
                }
            }
            let theirs = tester.is_consistent();
            let ours = check(&ops) == Outcome::Linearizable;
            if !ours {
                n_bad += 1;
            }
            if theirs != ours {
                disagreements.push((seed, theirs, ours, ops));
            }
        }
        assert!(disagreements.is_empty(), "{:#?}", &disagreements[..1]);
        // The generator makes both kinds.
        assert!(n_bad > 20 && n_bad < 380, "{n_bad} of 400 not linearizable");
    }
}
