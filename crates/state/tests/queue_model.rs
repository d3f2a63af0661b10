//! Model-based property tests of the queue state machine: random sequences of sends (delayed,
//! grouped, deduplicated), receives, acks, nacks, extensions and ticks, with the clock moving
//! forward in steps and jumps (and sometimes backwards, as a new leader's clock may), run
//! against `QueueSet` and against a naive model that keeps one state per message
//! (ready(visible at) / in flight(deadline) / dead) and scans everything on every step. Every
//! result and the depth after every step must agree; the set's own invariants are checked too.

use meridian_state::queue::*;
use meridian_types::{ErrorCode, MeridianError};
use proptest::prelude::*;
use std::collections::BTreeMap;

const Q: &str = "q";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MState {
    Ready(u64),
    InFlight(u64),
    Dead,
}

#[derive(Clone, Debug)]
struct MMsg {
    body: Vec<u8>,
    group: Option<String>,
    state: MState,
    deliveries: u32,
    last_error: Option<String>,
    enqueued: u64,
}

/// The obviously correct queue: a map of messages, every question answered by a scan.
struct Model {
    clock: u64,
    next_id: u64,
    cfg: QueueConfig,
    msgs: BTreeMap<u64, MMsg>,
    /// dedup id → (message id, forgotten at)
    dedup: BTreeMap<String, (u64, u64)>,
}

impl Model {
    fn advance(&mut self, now: u64) -> (u64, u64) {
        let (mut expired, mut died) = (0, 0);
        for m in self.msgs.values_mut() {
            if let MState::InFlight(d) = m.state
                && d <= now
            {
                expired += 1;
                m.last_error = Some(format!(
                    "visibility timeout passed during delivery {}",
                    m.deliveries
                ));
                if m.deliveries >= self.cfg.max_deliveries {
                    m.state = MState::Dead;
                    died += 1;
                } else {
                    m.state = MState::Ready(now);
                }
            }
        }
        self.dedup.retain(|_, (_, exp)| *exp > now);
        (expired, died)
    }

    fn live(s: MState) -> bool {
        !matches!(s, MState::Dead)
    }

    fn deliverable(&self, id: u64, now: u64) -> bool {
        let m = &self.msgs[&id];
        let MState::Ready(v) = m.state else {
            return false;
        };
        if v > now {
            return false;
        }
        match &m.group {
            None => true,
            Some(g) => !self
                .msgs
                .range(..id)
                .any(|(_, o)| o.group.as_ref() == Some(g) && Self::live(o.state)),
        }
    }

    fn apply(&mut self, now_ms: u64, op: &Op, receipts: &[Receipt]) -> Out {
        let now = self.clock.max(now_ms);
        self.clock = now;
        match op {
            Op::Tick => {
                let (e, d) = self.advance(now);
                Out::Tick(e, d)
            }
            Op::Send {
                body,
                group,
                dedup,
                delay,
            } => {
                self.advance(now);
                let dedup = dedup.map(|d| format!("d{d}"));
                if let Some(d) = &dedup
                    && let Some((id, _)) = self.dedup.get(d)
                {
                    return Out::Sent(*id, true);
                }
                let id = self.next_id;
                self.next_id += 1;
                self.msgs.insert(
                    id,
                    MMsg {
                        body: vec![*body],
                        group: group.map(|g| format!("g{g}")),
                        state: MState::Ready(now + delay.unwrap_or(self.cfg.delay_ms)),
                        deliveries: 0,
                        last_error: None,
                        enqueued: now,
                    },
                );
                if let Some(d) = dedup {
                    self.dedup.insert(d, (id, now + self.cfg.dedup_window_ms));
                }
                Out::Sent(id, false)
            }
            Op::Receive { max } => {
                self.advance(now);
                let deadline = now + self.cfg.visibility_timeout_ms;
                let mut out = Vec::new();
                let ids: Vec<u64> = self.msgs.keys().copied().collect();
                for id in ids {
                    if out.len() >= *max as usize {
                        break;
                    }
                    if self.deliverable(id, now) {
                        let m = self.msgs.get_mut(&id).unwrap();
                        m.deliveries += 1;
                        m.state = MState::InFlight(deadline);
                        out.push((
                            id,
                            m.deliveries,
                            m.body.clone(),
                            deadline,
                            m.last_error.clone(),
                            m.enqueued,
                        ));
                    }
                }
                Out::Received(out)
            }
            Op::Ack(i) => {
                self.advance(now);
                let r = pick(receipts, *i);
                let res = match self.msgs.get(&r.id.0) {
                    None => Ok(false),
                    Some(m) if m.state == MState::Dead => Err(ErrorCode::StaleReceipt),
                    Some(m)
                        if matches!(m.state, MState::InFlight(_)) && m.deliveries == r.delivery =>
                    {
                        self.msgs.remove(&r.id.0);
                        Ok(true)
                    }
                    Some(_) => Err(ErrorCode::StaleReceipt),
                };
                Out::Acked(res)
            }
            Op::Nack { i, delay, error } => {
                self.advance(now);
                let r = pick(receipts, *i);
                let max = self.cfg.max_deliveries;
                let Some(m) = self.msgs.get_mut(&r.id.0) else {
                    return Out::Err(ErrorCode::StaleReceipt);
                };
                if !(matches!(m.state, MState::InFlight(_)) && m.deliveries == r.delivery) {
                    return Out::Err(ErrorCode::StaleReceipt);
                }
                m.last_error = Some(if *error {
                    "failed".to_string()
                } else {
                    format!("nacked on delivery {}", m.deliveries)
                });
                m.state = if m.deliveries >= max {
                    MState::Dead
                } else {
                    MState::Ready(now + delay)
                };
                Out::Done
            }
            Op::Extend { i, timeout } => {
                self.advance(now);
                let r = pick(receipts, *i);
                let Some(m) = self.msgs.get_mut(&r.id.0) else {
                    return Out::Err(ErrorCode::StaleReceipt);
                };
                if !(matches!(m.state, MState::InFlight(_)) && m.deliveries == r.delivery) {
                    return Out::Err(ErrorCode::StaleReceipt);
                }
                m.state = MState::InFlight(now + timeout);
                Out::Extended(now + timeout)
            }
        }
    }

    fn depth(&self) -> (u64, u64, u64) {
        let mut d = (0, 0, 0);
        for m in self.msgs.values() {
            match m.state {
                MState::Ready(_) => d.0 += 1,
                MState::InFlight(_) => d.1 += 1,
                MState::Dead => d.2 += 1,
            }
        }
        d
    }

    fn next_expiry(&self) -> Option<u64> {
        self.msgs
            .values()
            .filter_map(|m| match m.state {
                MState::InFlight(d) => Some(d),
                _ => None,
            })
            .min()
    }
}

fn pick(receipts: &[Receipt], i: usize) -> Receipt {
    if receipts.is_empty() {
        Receipt {
            id: MessageId(12345),
            delivery: 1,
        }
    } else {
        receipts[i % receipts.len()]
    }
}

#[derive(Clone, Debug)]
enum Op {
    Send {
        body: u8,
        group: Option<u8>,
        dedup: Option<u8>,
        delay: Option<u64>,
    },
    Receive {
        max: u32,
    },
    /// Index into the receipts seen so far.
    Ack(usize),
    Nack {
        i: usize,
        delay: u64,
        error: bool,
    },
    Extend {
        i: usize,
        timeout: u64,
    },
    Tick,
}

/// A comparable outcome: (id, delivery, body, deadline, last error, enqueued) per delivery.
type Got = (u64, u32, Vec<u8>, u64, Option<String>, u64);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Sent(u64, bool),
    Received(Vec<Got>),
    Acked(Result<bool, ErrorCode>),
    Extended(u64),
    Tick(u64, u64),
    Done,
    Err(ErrorCode),
}

fn to_cmd(op: &Op, receipts: &[Receipt]) -> QueueCommand {
    let queue = Q.to_string();
    match op {
        Op::Send {
            body,
            group,
            dedup,
            delay,
        } => QueueCommand::Send {
            queue,
            messages: vec![SendMessage {
                body: vec![*body],
                group: group.map(|g| format!("g{g}")),
                dedup_id: dedup.map(|d| format!("d{d}")),
                delay_ms: *delay,
                ..Default::default()
            }],
        },
        Op::Receive { max } => QueueCommand::Receive {
            queue,
            max: *max,
            visibility_timeout_ms: None,
        },
        Op::Ack(i) => QueueCommand::Ack {
            queue,
            receipts: vec![pick(receipts, *i)],
        },
        Op::Nack { i, delay, error } => QueueCommand::Nack {
            queue,
            receipt: pick(receipts, *i),
            delay_ms: *delay,
            error: if *error {
                "failed".into()
            } else {
                String::new()
            },
        },
        Op::Extend { i, timeout } => QueueCommand::Extend {
            queue,
            receipt: pick(receipts, *i),
            timeout_ms: *timeout,
        },
        Op::Tick => QueueCommand::Tick,
    }
}

fn observe(r: Result<QueueResult, MeridianError>) -> Out {
    match r {
        Ok(QueueResult::Sent(v)) => Out::Sent(v[0].id.0, v[0].duplicate),
        Ok(QueueResult::Received(v)) => Out::Received(
            v.into_iter()
                .map(|d| {
                    assert_eq!(d.receipt.id, d.id);
                    assert_eq!(d.receipt.delivery, d.deliveries);
                    (
                        d.id.0,
                        d.deliveries,
                        d.body,
                        d.deadline_ms,
                        d.last_error,
                        d.enqueued_ms,
                    )
                })
                .collect(),
        ),
        Ok(QueueResult::Acked(mut v)) => Out::Acked(v.remove(0).map_err(|e| e.code)),
        Ok(QueueResult::Extended { deadline_ms }) => Out::Extended(deadline_ms),
        Ok(QueueResult::Ticked(t)) => Out::Tick(t.expired, t.dead_lettered),
        Ok(QueueResult::Done) => Out::Done,
        Ok(other) => panic!("unexpected {other:?}"),
        Err(e) => Out::Err(e.code),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), prop::option::weighted(0.4, 0u8..3), prop::option::weighted(0.3, 0u8..4),
              prop::option::weighted(0.2, 0u64..200))
            .prop_map(|(body, group, dedup, delay)| Op::Send { body, group, dedup, delay }),
        4 => (1u32..4).prop_map(|max| Op::Receive { max }),
        3 => any::<usize>().prop_map(Op::Ack),
        1 => (any::<usize>(), 0u64..150, any::<bool>())
            .prop_map(|(i, delay, error)| Op::Nack { i, delay, error }),
        1 => (any::<usize>(), 0u64..300).prop_map(|(i, timeout)| Op::Extend { i, timeout }),
        1 => Just(Op::Tick),
    ]
}

/// A clock step: mostly small, sometimes a jump past every deadline, sometimes backwards.
fn step() -> impl Strategy<Value = i64> {
    prop_oneof![6 => 0i64..40, 1 => 200i64..2000, 1 => -300i64..0]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn queue_matches_model(
        vt in prop_oneof![Just(50u64), Just(120)],
        max_deliveries in 1u32..4,
        delay_ms in prop_oneof![Just(0u64), Just(30)],
        ops in prop::collection::vec((step(), op()), 1..120),
    ) {
        let cfg = QueueConfig {
            visibility_timeout_ms: vt,
            max_deliveries,
            dead_letter: None,
            delay_ms,
            dedup_window_ms: 250,
        };
        let mut set = QueueSet::default();
        set.apply(&QueueEntry { now_ms: 0, cmd: QueueCommand::Create { name: Q.into(), config: cfg.clone() } }).unwrap();
        let mut model = Model { clock: 0, next_id: 0, cfg, msgs: BTreeMap::new(), dedup: BTreeMap::new() };
        let mut receipts: Vec<Receipt> = Vec::new();
        let mut leader_clock: i64 = 1000;
        for (i, (dt, op)) in ops.iter().enumerate() {
            leader_clock = (leader_clock + dt).max(0);
            let now = leader_clock as u64;
            let got = observe(set.apply(&QueueEntry { now_ms: now, cmd: to_cmd(op, &receipts) }));
            let want = model.apply(now, op, &receipts);
            prop_assert_eq!(&got, &want, "step {} {:?} at {}", i, op, now);
            if let Out::Received(v) = &got {
                receipts.extend(v.iter().map(|d| Receipt { id: MessageId(d.0), delivery: d.1 }));
            }
            let q = set.get(Q).unwrap();
            q.check();
            let st = q.stats(set.clock_ms());
            prop_assert_eq!((st.ready, st.in_flight, st.dead), model.depth(), "depth after step {}", i);
            prop_assert_eq!(set.next_expiry_ms(), model.next_expiry(), "expiry after step {}", i);
        }
        // Snapshots round-trip and replay is deterministic.
        let bytes = postcard::to_allocvec(&set).unwrap();
        let back: QueueSet = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &set);
    }
}

/// Every message is either acked or ends up dead, given enough receives and time: nothing is
/// lost, however the clock moves.
#[test]
fn nothing_is_lost_when_no_one_acks() {
    let mut set = QueueSet::default();
    let cfg = QueueConfig {
        visibility_timeout_ms: 10,
        max_deliveries: 3,
        ..Default::default()
    };
    set.apply(&QueueEntry {
        now_ms: 0,
        cmd: QueueCommand::Create {
            name: Q.into(),
            config: cfg,
        },
    })
    .unwrap();
    let messages = (0..20u8)
        .map(|b| SendMessage {
            body: vec![b],
            group: (b % 2 == 0).then(|| "even".to_string()),
            ..Default::default()
        })
        .collect();
    set.apply(&QueueEntry {
        now_ms: 0,
        cmd: QueueCommand::Send {
            queue: Q.into(),
            messages,
        },
    })
    .unwrap();
    let mut t = 0;
    for _ in 0..200 {
        t += 11;
        set.apply(&QueueEntry {
            now_ms: t,
            cmd: QueueCommand::Receive {
                queue: Q.into(),
                max: 5,
                visibility_timeout_ms: None,
            },
        })
        .unwrap();
    }
    set.apply(&QueueEntry {
        now_ms: t + 1000,
        cmd: QueueCommand::Tick,
    })
    .unwrap();
    let st = set.get(Q).unwrap().stats(t + 1000);
    assert_eq!((st.ready, st.in_flight, st.dead), (0, 0, 20));
    assert_eq!(st.counters.delivered, 60);
}
