//! The work queue delivers at least once and forgets only what was acked:
//!
//! - every delivered body was sent by the workload, under one message id (a retried send carries
//!   the first attempt's deduplication id, and the window is minutes, longer than a run; so does
//!   a send repeated after its acknowledgement);
//! - every acknowledged send is delivered at least once, as the id its acknowledgement named;
//! - a message is never delivered by a receive sent after an ack of it was answered `acked`;
//! - after the drain the queue is empty: every message reached an ack (the run has no
//!   dead-letter queue and allows far more deliveries than it makes, so none may die).

use super::stream_log::report;
use crate::messaging::{Record, Send};
use std::collections::{BTreeMap, BTreeSet};

/// The ids each body was delivered or acknowledged as (a send once more after its
/// acknowledgement too).
fn ids_by_body(rec: &Record) -> BTreeMap<&str, BTreeSet<u64>> {
    let mut ids: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for d in &rec.deliveries {
        ids.entry(d.body.as_str()).or_default().insert(d.id);
    }
    for s in &rec.sends {
        for id in s.acked.iter().chain(&s.resent) {
            ids.entry(s.body.as_str()).or_default().insert(*id);
        }
    }
    ids
}

/// Delivered bodies that were sent, once each.
fn one_message_per_send(rec: &Record, sent: &BTreeMap<&str, &Send>) -> Vec<String> {
    let mut out = Vec::new();
    for (body, ids) in ids_by_body(rec) {
        match sent.get(body) {
            None => out.push(format!(
                "queue: a receive delivered {body:?} (ids {ids:?}), which nobody sent"
            )),
            Some(s) if ids.len() > 1 => out.push(format!(
                "queue: {body:?} is in the queue as ids {ids:?}, but it was sent under one deduplication id ({} attempts, {}{})",
                s.attempts,
                if s.acked.is_some() {
                    "acknowledged"
                } else {
                    "never acknowledged"
                },
                if s.resent.is_some() {
                    ", then once more"
                } else {
                    ""
                }
            )),
            Some(_) => {}
        }
    }
    out
}

/// Every acknowledged send was delivered.
fn at_least_once(rec: &Record) -> Vec<String> {
    let delivered: BTreeSet<u64> = rec.deliveries.iter().map(|d| d.id).collect();
    rec.sends
        .iter()
        .filter_map(|s| {
            let id = s.acked?;
            (!delivered.contains(&id)).then(|| {
                format!(
                    "queue: acknowledged send {:?} (id {id}) was never delivered",
                    s.body
                )
            })
        })
        .collect()
}

/// No delivery of a message by a receive sent after an ack of it was answered.
fn nothing_back_after_ack(rec: &Record) -> Vec<String> {
    let mut acked_at: BTreeMap<u64, u64> = BTreeMap::new();
    for a in rec.acks.iter().filter(|a| a.acked) {
        let at = acked_at.entry(a.id).or_insert(a.answered);
        *at = (*at).min(a.answered);
    }
    rec.deliveries
        .iter()
        .filter(|d| acked_at.get(&d.id).is_some_and(|&at| d.invoked > at))
        .map(|d| {
            format!(
                "queue: message {} ({:?}) was delivered again after an ack of it was answered",
                d.id, d.body
            )
        })
        .collect()
}

pub fn check(rec: &Record) -> Vec<String> {
    let mut out = Vec::new();
    if !rec.queue_created {
        return out;
    }
    let sent: BTreeMap<&str, &Send> = rec.sends.iter().map(|s| (s.body.as_str(), s)).collect();
    report(&mut out, one_message_per_send(rec, &sent));
    report(&mut out, at_least_once(rec));
    report(&mut out, nothing_back_after_ack(rec));
    if !rec.drained {
        out.push(format!(
            "queue: not empty when the drain gave up: {:?}",
            rec.final_depth
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::{Ack, Delivery};

    fn send(body: &str, acked: Option<u64>) -> Send {
        Send {
            body: body.into(),
            attempts: 1,
            acked,
            resent: None,
        }
    }

    fn delivery(id: u64, body: &str, invoked: u64) -> Delivery {
        Delivery {
            id,
            body: body.into(),
            invoked,
        }
    }

    fn record(sends: Vec<Send>, deliveries: Vec<Delivery>, acks: Vec<Ack>) -> Record {
        Record {
            queue_created: true,
            drained: true,
            sends,
            deliveries,
            acks,
            ..Record::default()
        }
    }

    #[test]
    fn redelivery_before_the_ack_is_fine() {
        let rec = record(
            vec![send("j1", Some(1)), send("j2", None)],
            vec![
                delivery(1, "j1", 1),
                delivery(1, "j1", 3),
                delivery(2, "j2", 4),
            ],
            vec![Ack {
                id: 1,
                acked: true,
                answered: 5,
            }],
        );
        assert_eq!(check(&rec), Vec::<String>::new());
    }

    #[test]
    fn lost_duplicated_and_resurrected_messages_are_reported() {
        let lost = record(vec![send("j1", Some(1))], vec![], vec![]);
        assert_eq!(check(&lost).len(), 1);
        let twice = record(
            vec![send("j1", None)],
            vec![delivery(1, "j1", 1), delivery(2, "j1", 2)],
            vec![],
        );
        assert_eq!(check(&twice).len(), 1);
        let mut again = send("j1", Some(1));
        again.resent = Some(2);
        let resent = record(vec![again], vec![delivery(1, "j1", 1)], vec![]);
        assert_eq!(check(&resent).len(), 1);
        let back = record(
            vec![send("j1", Some(1))],
            vec![delivery(1, "j1", 1), delivery(1, "j1", 4)],
            vec![Ack {
                id: 1,
                acked: true,
                answered: 3,
            }],
        );
        assert_eq!(check(&back).len(), 1);
        let left = Record {
            drained: false,
            ..record(vec![], vec![], vec![])
        };
        assert_eq!(check(&left).len(), 1);
    }
}
