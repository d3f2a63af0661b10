//! No acknowledged write is lost: after the heal, each key's value (read on every node) must be
//! written by a write that nothing acknowledged later replaced — never an older value.

use crate::history::Event;
use crate::history::{Completed, Op, Ret, operations};
use std::collections::BTreeMap;

/// The value `w` leaves behind.
fn written(w: &Completed) -> Option<String> {
    match &w.op {
        Op::Put(v) => Some(v.clone()),
        Op::Cas { new, .. } => Some(new.clone()),
        _ => None,
    }
}

/// Threads at or above this id are the final reader's.
pub const FINAL_READER_THREADS: u64 = 999 << 20;

pub fn check(events: &[Event]) -> Vec<String> {
    let ops = operations(events);
    let mut by_key: BTreeMap<&str, Vec<&Completed>> = BTreeMap::new();
    for o in &ops {
        by_key.entry(o.key.as_str()).or_default().push(o);
    }
    let mut out = Vec::new();
    for (key, ops) in by_key {
        let Some(last_read) = ops
            .iter()
            .filter(|o| o.thread >= FINAL_READER_THREADS && o.ret.is_some())
            .max_by_key(|o| o.answered)
        else {
            continue;
        };
        let Some(Ret::GetOk(final_value)) = &last_read.ret else {
            continue;
        };
        let (r_inv, r_ans) = (last_read.invoked, last_read.answered.unwrap_or(usize::MAX));
        // Writes that could have affected the read: invoked before it was answered.
        let writes: Vec<&&Completed> = ops
            .iter()
            .filter(|o| o.maybe_write() && o.invoked < r_ans)
            .collect();
        // Acknowledged before the read began: these certainly precede it.
        let before_read = |w: &Completed| w.acked_write() && w.answered.is_some_and(|a| a < r_inv);
        // A write is replaced when an acknowledged write began after it was acknowledged and
        // was itself acknowledged before the read began.
        let replaced = |w: &Completed| {
            w.answered.is_some_and(|done| {
                writes
                    .iter()
                    .any(|w2| before_read(w2) && w2.invoked > done && w2.id != w.id)
            })
        };
        let mut allowed: Vec<Option<String>> = writes
            .iter()
            .filter(|w| !replaced(w))
            .map(|w| written(w))
            .collect();
        // The initial absence survives only if no write certainly precedes the read.
        if !writes.iter().any(|w| before_read(w)) {
            allowed.push(None);
        }
        if !allowed.contains(final_value) {
            let acked: Vec<String> = writes
                .iter()
                .filter(|w| w.acked_write())
                .map(|w| format!("#{} {:?}", w.id, w.op))
                .collect();
            out.push(format!(
                "lost write: key {key} ends as {final_value:?}, but only {allowed:?} may be its value (acknowledged writes: {})",
                acked.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Event;

    fn ev(id: u64, thread: u64, op: Op) -> Event {
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
    fn an_acknowledged_write_that_vanished_is_reported() {
        let f = FINAL_READER_THREADS;
        let lost = vec![
            ev(1, 1, Op::Put("a".into())),
            ok(1, Ret::PutOk),
            ev(2, 1, Op::Put("b".into())),
            ok(2, Ret::PutOk),
            ev(3, f, Op::Get),
            ok(3, Ret::GetOk(Some("a".into()))),
        ];
        assert_eq!(check(&lost).len(), 1);
        let kept = vec![
            ev(1, 1, Op::Put("a".into())),
            ok(1, Ret::PutOk),
            ev(2, 2, Op::Put("b".into())), // no answer: may or may not have happened
            ev(3, f, Op::Get),
            ok(3, Ret::GetOk(Some("a".into()))),
        ];
        assert!(check(&kept).is_empty());
    }
}
