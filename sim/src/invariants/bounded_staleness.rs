//! A `bounded` read is at most as stale as it says: its answer holds every write of its key
//! acknowledged more than `staleness_ms` before the read began (and the reported staleness is
//! within the bound asked for).
//!
//! Times are the simulation's clock in whole milliseconds, taken by the clients: a write's
//! acknowledgement is recorded when its client hears it (after the server sent it), a read's
//! start before the request leaves, so `ack_ms + 1 <= invoked_ms - staleness_ms` means the write
//! was acknowledged before the start of the window the bound leaves open.

use crate::history::{BoundedRead, Event, operations};
use meridian_tests::history::{Op, Ret};

pub fn check(events: &[Event], reads: &[BoundedRead]) -> Vec<String> {
    let ops = operations(events);
    let ack_ms = |i: usize| match events.get(i) {
        Some(Event::Ok { at_ms, .. }) => Some(*at_ms),
        _ => None,
    };
    let mut out = Vec::new();
    for r in reads {
        if r.staleness_ms > r.bound_ms {
            out.push(format!(
                "bounded staleness: a bounded:{} read of {} reported {} ms",
                r.bound_ms, r.key, r.staleness_ms
            ));
        }
        let Some(horizon) = r.invoked_ms.checked_sub(r.staleness_ms) else {
            continue;
        };
        // The newest write of the key with a known revision acknowledged before the horizon.
        let must_see = ops
            .iter()
            .filter(|o| o.key == r.key && o.acked_write())
            .filter_map(|o| {
                let at = ack_ms(o.answered?)?;
                (at < horizon).then_some((o.revision?, o))
            })
            .max_by_key(|(rev, _)| *rev);
        let Some((rev, w)) = must_see else { continue };
        match r.mod_revision {
            Some(m) if m >= rev => {}
            Some(m) => out.push(format!(
                "bounded staleness: a bounded:{} read of {} begun at {} ms reported staleness {} ms \
                 but returned revision {m}, older than write #{} (revision {rev}) acknowledged before {horizon} ms",
                r.bound_ms, r.key, r.invoked_ms, r.staleness_ms, w.id
            )),
            None => {
                // Absent is right after a delete that may have landed later.
                let deleted_later = ops.iter().any(|o| {
                    o.key == r.key
                        && matches!(o.op, Op::Delete)
                        && (o.ret.is_none()
                            || (matches!(o.ret, Some(Ret::DeleteOk(true)))
                                && o.revision.is_none_or(|d| d >= rev)))
                });
                if !matches!(w.op, Op::Delete) && !deleted_later {
                    out.push(format!(
                        "bounded staleness: a bounded:{} read of {} begun at {} ms (staleness {} ms) \
                         found no key, but write #{} (revision {rev}) was acknowledged before {horizon} ms",
                        r.bound_ms, r.key, r.invoked_ms, r.staleness_ms, w.id
                    ));
                }
            }
        }
    }
    out
}
