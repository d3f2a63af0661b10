//! A stream partition is a log: after the heal, each partition (read in full through every node)
//! holds consecutive offsets, one message each, only messages the workload published, each in
//! the partition its key hashes to, and every publish acknowledged with `(partition, offset)` at
//! exactly that place with its key and value. Every node reads the same partition the same.
//!
//! No value appears twice: each message was published under one request id, whatever its
//! attempts, and a group remembers far more request ids (`DEDUP_ENTRIES_MAX`) than a run
//! publishes, so a retry must find the first attempt's result instead of appending again; an
//! acknowledged publish sent once more must be answered with the same place.

use crate::messaging::{PartitionRead, Publish, Record, STREAM_PARTITIONS};
use meridian_state::stream::partition_for_key;
use std::collections::BTreeMap;

/// Most lines one kind of violation reports; the rest are counted.
const REPORT_MAX: usize = 10;

/// Pushes the first [`REPORT_MAX`] of `lines`, and how many more there were.
pub(crate) fn report(out: &mut Vec<String>, lines: Vec<String>) {
    let more = lines.len().saturating_sub(REPORT_MAX);
    out.extend(lines.into_iter().take(REPORT_MAX));
    if more > 0 {
        out.push(format!("  ... and {more} more like the above"));
    }
}

/// One content of a partition as read after the heal, and the nodes it was read through.
struct Seen<'a> {
    read: &'a PartitionRead,
    /// `n1, n3`.
    through: String,
}

/// The distinct reads of each partition: every node should read the same, and a problem is
/// reported once for all the nodes that read it.
fn distinct(reads: &[PartitionRead]) -> Vec<Seen<'_>> {
    let mut out: Vec<(&PartitionRead, Vec<String>)> = Vec::new();
    for r in reads {
        let same = |(f, _): &&mut (&PartitionRead, Vec<String>)| {
            f.partition == r.partition && f.messages == r.messages && f.end_offset == r.end_offset
        };
        match out.iter_mut().find(same) {
            Some((_, nodes)) => nodes.push(format!("n{}", r.node)),
            None => out.push((r, vec![format!("n{}", r.node)])),
        }
    }
    out.into_iter()
        .map(|(read, nodes)| Seen {
            read,
            through: nodes.join(", "),
        })
        .collect()
}

/// Offsets consecutive from the first, one message each.
fn gaps(s: &Seen) -> Vec<String> {
    let (read, through) = (s.read, &s.through);
    let mut out = Vec::new();
    for w in read.messages.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            out.push(format!(
                "stream log: partition {} read through {through} goes from offset {} to {} (a gap or a reused offset)",
                read.partition, w[0].0, w[1].0
            ));
        }
    }
    if let Some(last) = read.messages.last()
        && last.0 + 1 != read.end_offset
    {
        out.push(format!(
            "stream log: partition {} read through {through} ends at offset {} but reports end_offset {}",
            read.partition, last.0, read.end_offset
        ));
    }
    out
}

/// Each message read was published by the workload, under a key of its partition, at most once.
fn contents(s: &Seen, published: &BTreeMap<&str, &Publish>) -> Vec<String> {
    let (p, through) = (s.read.partition, &s.through);
    let mut out = Vec::new();
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    for (offset, key, value) in &s.read.messages {
        let Some(publish) = published.get(value.as_str()) else {
            out.push(format!(
                "stream log: partition {p} read through {through} holds {value:?} at offset {offset}, which nobody published"
            ));
            continue;
        };
        if key.as_deref() != Some(publish.key.as_str()) {
            out.push(format!(
                "stream log: {value:?} at offset {offset} of partition {p} (through {through}) has key {key:?}, published with {:?}",
                publish.key
            ));
        }
        let home = partition_for_key(publish.key.as_bytes(), STREAM_PARTITIONS);
        if home != p {
            out.push(format!(
                "stream log: {value:?} (key {}) is in partition {p} (through {through}), its key's partition is {home}",
                publish.key
            ));
        }
        if let Some(first) = seen.insert(value, *offset) {
            out.push(format!(
                "stream log: {value:?} is at offsets {first} and {offset} of partition {p} (through {through}); \
                 it was published under one request id ({} attempts, {}{})",
                publish.attempts,
                if publish.acked.is_some() {
                    "acknowledged"
                } else {
                    "never acknowledged"
                },
                if publish.resent.is_some() {
                    ", then once more"
                } else {
                    ""
                }
            ));
        }
    }
    out
}

/// Every acknowledged publish is where its acknowledgement put it.
fn acknowledged(s: &Seen, publishes: &[Publish]) -> Vec<String> {
    let at: BTreeMap<u64, &str> = s
        .read
        .messages
        .iter()
        .map(|(o, _, v)| (*o, v.as_str()))
        .collect();
    publishes
        .iter()
        .filter_map(|pb| {
            let (p, offset) = pb.acked.filter(|(p, _)| *p == s.read.partition)?;
            match at.get(&offset) {
                Some(v) if *v == pb.value => None,
                found => Some(format!(
                    "stream log: acknowledged publish {:?} (partition {p}, offset {offset}) is lost: \
                     the read through {} has {found:?} there",
                    pb.value, s.through
                )),
            }
        })
        .collect()
}

/// A publish sent once more after its acknowledgement was answered with the same place.
fn resent(publishes: &[Publish]) -> Vec<String> {
    publishes
        .iter()
        .filter_map(|p| {
            let (acked, again) = (p.acked?, p.resent?);
            (acked != again).then(|| {
                format!(
                    "stream log: {:?} was acknowledged at {acked:?} (partition, offset), but sent again with its request id at {again:?}",
                    p.value
                )
            })
        })
        .collect()
}

/// Every node reads a partition the same (each read is served by the partition's leader).
fn agreement(seen: &[Seen]) -> Vec<String> {
    let mut out = Vec::new();
    for p in 0..STREAM_PARTITIONS {
        let views: Vec<String> = seen
            .iter()
            .filter(|s| s.read.partition == p)
            .map(|s| format!("{} messages through {}", s.read.messages.len(), s.through))
            .collect();
        if views.len() > 1 {
            out.push(format!(
                "stream log: partition {p} reads differently: {}",
                views.join("; ")
            ));
        }
    }
    out
}

pub fn check(rec: &Record) -> Vec<String> {
    let mut out = Vec::new();
    if !rec.stream_created {
        return out;
    }
    let published: BTreeMap<&str, &Publish> = rec
        .publishes
        .iter()
        .map(|p| (p.value.as_str(), p))
        .collect();
    let seen = distinct(&rec.reads);
    let mut found = Vec::new();
    for s in &seen {
        found.extend(gaps(s));
        found.extend(contents(s, &published));
    }
    report(&mut out, found);
    report(
        &mut out,
        seen.iter()
            .flat_map(|s| acknowledged(s, &rec.publishes))
            .collect(),
    );
    report(&mut out, agreement(&seen));
    report(&mut out, resent(&rec.publishes));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(p: u32) -> String {
        (0..)
            .map(|i| format!("k{i}"))
            .find(|k| partition_for_key(k.as_bytes(), STREAM_PARTITIONS) == p)
            .expect("a key of the partition")
    }

    fn publish(value: &str, key: &str, acked: Option<(u32, u64)>) -> Publish {
        Publish {
            key: key.into(),
            value: value.into(),
            attempts: 1,
            acked,
            resent: None,
        }
    }

    fn read(node: u64, p: u32, msgs: &[(u64, &str, &str)]) -> PartitionRead {
        PartitionRead {
            node,
            partition: p,
            messages: msgs
                .iter()
                .map(|(o, k, v)| (*o, Some(k.to_string()), v.to_string()))
                .collect(),
            end_offset: msgs.last().map_or(0, |m| m.0 + 1),
        }
    }

    fn record(publishes: Vec<Publish>, reads: Vec<PartitionRead>) -> Record {
        Record {
            stream_created: true,
            publishes,
            reads,
            ..Record::default()
        }
    }

    #[test]
    fn a_consistent_log_passes() {
        let k = key_of(0);
        let rec = record(
            vec![
                publish("m1", &k, Some((0, 0))),
                publish("m2", &k, None),
                publish("m3", &k, Some((0, 2))),
                publish("m4", &k, None), // never landed
            ],
            vec![
                read(1, 0, &[(0, &k, "m1"), (1, &k, "m2"), (2, &k, "m3")]),
                read(2, 0, &[(0, &k, "m1"), (1, &k, "m2"), (2, &k, "m3")]),
            ],
        );
        assert_eq!(check(&rec), Vec::<String>::new());
    }

    #[test]
    fn lost_duplicated_misplaced_and_gapped_messages_are_reported() {
        let (k0, k1) = (key_of(0), key_of(1));
        let lost = record(
            vec![publish("m1", &k0, Some((0, 0)))],
            vec![read(1, 0, &[])],
        );
        assert_eq!(check(&lost).len(), 1);
        let dup = record(
            vec![publish("m1", &k0, None)],
            vec![read(1, 0, &[(0, &k0, "m1"), (1, &k0, "m1")])],
        );
        assert_eq!(check(&dup).len(), 1);
        let gap = record(
            vec![publish("m1", &k0, None), publish("m2", &k0, None)],
            vec![read(1, 0, &[(0, &k0, "m1"), (2, &k0, "m2")])],
        );
        assert_eq!(check(&gap).len(), 1);
        let misplaced = record(
            vec![publish("m1", &k1, None)],
            vec![read(1, 0, &[(0, &k1, "m1")])],
        );
        assert_eq!(check(&misplaced).len(), 1);
        let phantom = record(vec![], vec![read(1, 0, &[(0, &k0, "x")])]);
        assert_eq!(check(&phantom).len(), 1);
        let disagree = record(
            vec![publish("m1", &k0, None)],
            vec![read(1, 0, &[(0, &k0, "m1")]), read(2, 0, &[])],
        );
        assert_eq!(check(&disagree).len(), 1);
        let mut moved = publish("m1", &k0, Some((0, 0)));
        moved.resent = Some((0, 1));
        let resent = record(vec![moved], vec![read(1, 0, &[(0, &k0, "m1")])]);
        assert_eq!(check(&resent).len(), 1);
    }
}
