//! The partition state machine against a `Vec` model over arbitrary operations and clocks.

use super::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Publish(Vec<(Option<u8>, usize, Option<u8>)>),
    Tick,
    Read(u8, u64, usize, u64),
    /// Group, offset, and a member's generation (none: an unfenced commit).
    Commit(u8, u64, Option<u64>),
}

fn op() -> impl Strategy<Value = (i64, Op)> {
    let msg = (
        proptest::option::of(0u8..4),
        0usize..24,
        proptest::option::of(0u8..6),
    );
    let op = prop_oneof![
        4 => proptest::collection::vec(msg, 1..5).prop_map(Op::Publish),
        1 => Just(Op::Tick),
        2 => (0u8..4, 0u64..60, 0usize..8, 0u64..80).prop_map(|(k, o, c, b)| Op::Read(k, o, c, b)),
        2 => (0u8..3, 0u64..60, proptest::option::of(0u64..5))
            .prop_map(|(g, o, n)| Op::Commit(g, o, n)),
    ];
    // Clock steps: mostly forward, sometimes backwards (a new leader's clock is behind).
    (-3_000i64..50_000, op)
}

/// The model: every message ever published, how many were trimmed, the dedup ids.
#[derive(Default)]
struct Model {
    all: Vec<StreamMessage>,
    first: usize,
    clock: u64,
    dedup: Vec<(String, u64, u64)>,
    commits: BTreeMap<String, u64>,
    fences: BTreeMap<String, u64>,
}

impl Model {
    fn retained(&self) -> &[StreamMessage] {
        &self.all[self.first..]
    }

    fn trim(&mut self, r: &Retention) {
        loop {
            let kept = self.retained();
            let Some(m) = kept.first() else { break };
            let bytes: u64 = kept.iter().map(StreamMessage::size).sum();
            let old = r
                .max_age_ms
                .is_some_and(|a| m.timestamp_ms + a <= self.clock);
            let big = r.max_bytes.is_some_and(|b| bytes > b);
            let many = r.max_messages.is_some_and(|c| kept.len() as u64 > c);
            if !(old || big || many) {
                break;
            }
            self.first += 1;
        }
    }

    fn expire(&mut self) {
        let now = self.clock;
        self.dedup.retain(|(_, _, t)| t + DEDUP_WINDOW_MS > now);
    }
}

fn retention() -> impl Strategy<Value = Retention> {
    (
        proptest::option::of(1_000u64..200_000),
        proptest::option::of(0u64..200),
        proptest::option::of(0u64..20),
    )
        .prop_map(|(a, b, c)| Retention {
            max_age_ms: a,
            max_bytes: b,
            max_messages: c,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn partition_matches_a_vec_model(
        ret in retention(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut s = StreamsState::default();
        let mut m = Model::default();
        let mut leader_now: u64 = 1_000_000;
        let create = StreamEntry {
            now_ms: leader_now,
            request_id: None,
            cmd: StreamCommand::CreatePartition {
                stream: "s".into(),
                partition: 0,
                uid: 1,
                retention: ret.clone(),
            },
        };
        s.apply(&create).unwrap();
        m.clock = leader_now;
        let mut highest_offset_seen: Option<u64> = None;
        for (dt, op) in ops {
            leader_now = leader_now.saturating_add_signed(dt);
            let entry = |cmd| StreamEntry { now_ms: leader_now, request_id: None, cmd };
            match op {
                Op::Publish(batch) => {
                    let msgs: Vec<NewMessage> = batch
                        .iter()
                        .map(|(k, len, d)| NewMessage {
                            key: k.map(|k| vec![k]),
                            payload: vec![7; *len],
                            headers: vec![],
                            dedup_id: d.map(|d| format!("d{d}")),
                        })
                        .collect();
                    let got = s.apply(&entry(StreamCommand::Publish {
                        stream: "s".into(),
                        partition: 0,
                        messages: msgs.clone(),
                    })).unwrap();
                    m.clock = m.clock.max(leader_now);
                    m.expire();
                    let mut want = Vec::new();
                    for n in &msgs {
                        if let Some(id) = &n.dedup_id
                            && let Some((_, off, _)) = m.dedup.iter().find(|(i, _, _)| i == id)
                        {
                            want.push(PublishAck { offset: *off, duplicate: true });
                            continue;
                        }
                        let offset = m.all.len() as u64;
                        m.all.push(StreamMessage {
                            offset,
                            timestamp_ms: m.clock,
                            key: n.key.clone(),
                            payload: n.payload.clone(),
                            headers: vec![],
                        });
                        if let Some(id) = &n.dedup_id {
                            m.dedup.push((id.clone(), offset, m.clock));
                        }
                        want.push(PublishAck { offset, duplicate: false });
                    }
                    m.trim(&ret);
                    // Offsets are never reused: a new offset is above every one seen.
                    for a in &want {
                        if !a.duplicate {
                            prop_assert!(highest_offset_seen.is_none_or(|h| a.offset > h));
                            highest_offset_seen = Some(a.offset);
                        }
                    }
                    prop_assert_eq!(got, StreamResult::Published(want));
                }
                Op::Tick => {
                    let p = s.partition("s", 0).unwrap();
                    let due = p.tick_due(leader_now);
                    let before = p.clone();
                    s.apply(&entry(StreamCommand::Tick { stream: "s".into(), partition: 0 })).unwrap();
                    m.clock = m.clock.max(leader_now);
                    m.expire();
                    m.trim(&ret);
                    let after = s.partition("s", 0).unwrap();
                    // `tick_due` says exactly when a tick changes anything but the clock.
                    let mut b = before.clone();
                    b.clock_ms = after.clock_ms;
                    prop_assert_eq!(due, &b != after);
                }
                Op::Read(kind, o, count, bytes) => {
                    let p = s.partition("s", 0).unwrap();
                    let from = match kind {
                        0 => ReadFrom::Offset(o),
                        1 => ReadFrom::Time(1_000_000 + o * 5_000),
                        2 => ReadFrom::Earliest,
                        _ => ReadFrom::Latest,
                    };
                    let r = p.read(from, count, bytes);
                    let kept = m.retained();
                    let start = match from {
                        ReadFrom::Offset(o) => (o.clamp(m.first as u64, m.all.len() as u64) as usize) - m.first,
                        ReadFrom::Time(t) => kept.iter().position(|x| x.timestamp_ms >= t).unwrap_or(kept.len()),
                        ReadFrom::Earliest => 0,
                        ReadFrom::Latest => kept.len(),
                    };
                    let mut want = Vec::new();
                    let mut used = 0;
                    for x in kept[start..].iter().take(count) {
                        if !want.is_empty() && used + x.size() > bytes {
                            break;
                        }
                        used += x.size();
                        want.push(x.clone());
                    }
                    prop_assert_eq!(r.next_offset, (m.first + start + want.len()) as u64);
                    prop_assert_eq!(&r.messages, &want);
                }
                Op::Commit(g, o, generation) => {
                    let group = format!("g{g}");
                    let got = s.apply(&entry(StreamCommand::Commit {
                        stream: "s".into(),
                        partition: 0,
                        group: group.clone(),
                        offset: o,
                        generation,
                    }));
                    m.clock = m.clock.max(leader_now);
                    let fence = m.fences.get(&group).copied().unwrap_or(0);
                    if o > m.all.len() as u64 {
                        prop_assert_eq!(got.unwrap_err().code, ErrorCode::InvalidArgument);
                    } else if generation.is_some_and(|n| n < fence) {
                        prop_assert_eq!(got.unwrap_err().code, ErrorCode::StaleGeneration);
                    } else {
                        prop_assert!(got.is_ok());
                        if let Some(n) = generation {
                            m.fences.insert(group.clone(), n);
                        }
                        m.commits.insert(group, o);
                    }
                }
            }
            let p = s.partition("s", 0).unwrap();
            prop_assert_eq!(p.first_offset(), m.first as u64);
            prop_assert_eq!(p.end_offset(), m.all.len() as u64);
            prop_assert_eq!(p.clock_ms(), m.clock);
            prop_assert_eq!(p.commits(), &m.commits);
            prop_assert_eq!(p.fences(), &m.fences);
            let all = p.read(ReadFrom::Earliest, usize::MAX, u64::MAX);
            prop_assert_eq!(&all.messages[..], m.retained());
            prop_assert_eq!(p.bytes(), m.retained().iter().map(StreamMessage::size).sum::<u64>());
            // Offsets are gap-free.
            for (i, x) in all.messages.iter().enumerate() {
                prop_assert_eq!(x.offset, m.first as u64 + i as u64);
            }
        }
    }
}

#[test]
fn request_ids_apply_once_and_partitions_route_by_key() {
    let mut g = crate::group::GroupState::default();
    let create = crate::group::Command::Stream(StreamEntry {
        now_ms: 1,
        request_id: None,
        cmd: StreamCommand::CreatePartition {
            stream: "s".into(),
            partition: 0,
            uid: 1,
            retention: Retention::default(),
        },
    });
    g.apply(&create);
    let publish = crate::group::Command::Stream(StreamEntry {
        now_ms: 2,
        request_id: Some(RequestId(9)),
        cmd: StreamCommand::Publish {
            stream: "s".into(),
            partition: 0,
            messages: vec![NewMessage::default()],
        },
    });
    let a = g.apply(&publish);
    let b = g.apply(&publish);
    assert_eq!(a, b);
    assert_eq!(g.streams.partition("s", 0).unwrap().end_offset(), 1);
    // Unknown partition: the range does not hold it.
    let e = g.streams.apply(&StreamEntry {
        now_ms: 3,
        request_id: None,
        cmd: StreamCommand::Tick {
            stream: "t".into(),
            partition: 0,
        },
    });
    assert_eq!(e.unwrap_err().code, ErrorCode::RangeMoved);
    assert_eq!(
        partition_for_key(b"user-1", 8),
        partition_for_key(b"user-1", 8)
    );
    assert!(partition_for_key(b"x", 3) < 3);
    assert_eq!(partition_for_key(b"anything", 1), 0);
}

/// A group that lost its last member and formed again under its name must not repeat an old
/// generation: a partition's fence would refuse its members' commits for good.
#[test]
fn a_group_formed_again_continues_above_its_old_generations() {
    let mut p = PartitionState::new(1, Retention::default());
    let a = p.heartbeat(1, "g", "m1", 1, 0);
    let b = p.heartbeat(2, "g", "m2", 1, 0);
    assert!(b.generation > a.generation);
    p.commit(3, "g", 0, Some(b.generation)).unwrap();
    p.leave(4, "g", "m1");
    p.leave(5, "g", "m2");
    assert!(p.groups().is_empty());
    let c = p.heartbeat(6, "g", "m3", 1, 0);
    assert!(c.generation > b.generation, "{c:?} after {b:?}");
    p.commit(7, "g", 0, Some(c.generation)).unwrap();
    // Expiry removes a group the same way.
    let before = p.heartbeat(8, "g", "m3", 1, 1_000).generation;
    p.tick(8 + 2_000);
    assert!(p.groups().is_empty());
    assert!(p.heartbeat(9_000, "g", "m4", 1, 0).generation > before);
}
