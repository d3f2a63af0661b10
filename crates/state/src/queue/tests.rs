//! Table-style unit tests of the queue state machine.

use super::*;

const Q: &str = "jobs";

fn set(config: QueueConfig) -> QueueSet {
    let mut s = QueueSet::default();
    s.apply(&QueueEntry {
        now_ms: 0,
        cmd: QueueCommand::Create {
            name: Q.into(),
            config,
        },
    })
    .unwrap();
    s
}

fn cfg(vt: u64, max: u32) -> QueueConfig {
    QueueConfig {
        visibility_timeout_ms: vt,
        max_deliveries: max,
        ..Default::default()
    }
}

fn run(s: &mut QueueSet, now_ms: u64, cmd: QueueCommand) -> Result<QueueResult, MeridianError> {
    let r = s.apply(&QueueEntry { now_ms, cmd });
    for (_, q) in s.iter() {
        q.check();
    }
    r
}

fn msg(body: &str) -> SendMessage {
    SendMessage {
        body: body.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn send(s: &mut QueueSet, now: u64, m: SendMessage) -> SendOutcome {
    match run(
        s,
        now,
        QueueCommand::Send {
            queue: Q.into(),
            messages: vec![m],
        },
    ) {
        Ok(QueueResult::Sent(v)) => v[0],
        other => panic!("{other:?}"),
    }
}

fn receive(s: &mut QueueSet, now: u64, max: u32) -> Vec<Delivery> {
    match run(
        s,
        now,
        QueueCommand::Receive {
            queue: Q.into(),
            max,
            visibility_timeout_ms: None,
        },
    ) {
        Ok(QueueResult::Received(v)) => v,
        other => panic!("{other:?}"),
    }
}

fn ack(s: &mut QueueSet, now: u64, r: Receipt) -> Result<bool, MeridianError> {
    match run(
        s,
        now,
        QueueCommand::Ack {
            queue: Q.into(),
            receipts: vec![r],
        },
    ) {
        Ok(QueueResult::Acked(mut v)) => v.remove(0),
        other => panic!("{other:?}"),
    }
}

fn stats(s: &QueueSet) -> QueueStats {
    s.get(Q).unwrap().stats(s.clock_ms())
}

#[test]
fn send_receive_ack() {
    let mut s = set(cfg(1000, 3));
    let a = send(&mut s, 10, msg("a"));
    let b = send(&mut s, 11, msg("b"));
    assert!(a.id < b.id);
    let got = receive(&mut s, 12, 10);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, b"a");
    assert_eq!(got[0].deadline_ms, 1012);
    assert_eq!(got[0].deliveries, 1);
    assert_eq!(stats(&s).in_flight, 2);
    assert_eq!(ack(&mut s, 13, got[0].receipt), Ok(true));
    // Acking again: gone, not an error.
    assert_eq!(ack(&mut s, 14, got[0].receipt), Ok(false));
    assert!(receive(&mut s, 15, 10).is_empty());
    let st = stats(&s);
    assert_eq!((st.ready, st.in_flight, st.counters.acked), (0, 1, 1));
}

#[test]
fn a_message_not_acked_in_time_is_redelivered_and_its_old_receipt_is_stale() {
    let mut s = set(cfg(100, 5));
    send(&mut s, 0, msg("a"));
    let first = receive(&mut s, 0, 1).remove(0);
    assert!(receive(&mut s, 99, 1).is_empty(), "still invisible");
    let second = receive(&mut s, 100, 1).remove(0);
    assert_eq!(second.id, first.id);
    assert_eq!(second.deliveries, 2);
    assert!(second.last_error.unwrap().contains("visibility timeout"));
    let e = ack(&mut s, 101, first.receipt).unwrap_err();
    assert_eq!(e.code, ErrorCode::StaleReceipt);
    assert!(e.message.contains("delivered again"), "{e}");
    assert_eq!(ack(&mut s, 101, second.receipt), Ok(true));
    assert_eq!(stats(&s).counters.redelivered, 1);
}

#[test]
fn an_ack_after_the_deadline_is_refused() {
    let mut s = set(cfg(100, 5));
    send(&mut s, 0, msg("a"));
    let d = receive(&mut s, 0, 1).remove(0);
    let e = ack(&mut s, 100, d.receipt).unwrap_err();
    assert_eq!(e.code, ErrorCode::StaleReceipt);
    assert_eq!(stats(&s).ready, 1);
}

#[test]
fn after_max_deliveries_a_message_is_dead_with_its_count_and_error() {
    let mut s = set(cfg(100, 2));
    let id = send(&mut s, 0, msg("a")).id;
    let d = receive(&mut s, 0, 1).remove(0);
    run(
        &mut s,
        1,
        QueueCommand::Nack {
            queue: Q.into(),
            receipt: d.receipt,
            delay_ms: 0,
            error: "boom".into(),
        },
    )
    .unwrap();
    let d2 = receive(&mut s, 2, 1).remove(0);
    assert_eq!(d2.last_error.as_deref(), Some("boom"));
    // The second delivery times out: dead, found by a tick.
    assert_eq!(
        run(&mut s, 500, QueueCommand::Tick),
        Ok(QueueResult::Ticked(TickOutcome {
            expired: 1,
            dead_lettered: 1
        }))
    );
    let q = s.get(Q).unwrap();
    let dead = q.dead_messages(10);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].deliveries, 2);
    assert!(dead[0].last_error.as_deref().unwrap().contains("timeout"));
    assert!(receive(&mut s, 600, 1).is_empty());
    assert_eq!(
        run(
            &mut s,
            601,
            QueueCommand::RemoveDead {
                queue: Q.into(),
                ids: vec![id, MessageId(99)]
            }
        ),
        Ok(QueueResult::Removed { removed: 1 })
    );
    assert_eq!(stats(&s).dead, 0);
}

#[test]
fn delays_hold_a_message_back() {
    let mut s = set(QueueConfig {
        delay_ms: 50,
        ..cfg(1000, 3)
    });
    send(&mut s, 0, msg("default delay"));
    send(
        &mut s,
        0,
        SendMessage {
            delay_ms: Some(0),
            ..msg("now")
        },
    );
    let got = receive(&mut s, 1, 10);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"now");
    assert_eq!(stats(&s).delayed, 1);
    assert_eq!(receive(&mut s, 50, 10)[0].body, b"default delay");
}

#[test]
fn a_group_is_delivered_one_at_a_time_in_order() {
    let mut s = set(cfg(100, 5));
    let g = |b: &str| SendMessage {
        group: Some("g".into()),
        ..msg(b)
    };
    send(&mut s, 0, g("1"));
    send(&mut s, 0, g("2"));
    send(&mut s, 0, msg("free"));
    let got = receive(&mut s, 0, 10);
    let bodies: Vec<&[u8]> = got.iter().map(|d| d.body.as_slice()).collect();
    assert_eq!(bodies, vec![b"1".as_slice(), b"free"]);
    // The head's nack with a delay holds the whole group.
    run(
        &mut s,
        1,
        QueueCommand::Nack {
            queue: Q.into(),
            receipt: got[0].receipt,
            delay_ms: 20,
            error: String::new(),
        },
    )
    .unwrap();
    assert!(receive(&mut s, 2, 10).is_empty());
    let again = receive(&mut s, 21, 10);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, b"1");
    assert_eq!(ack(&mut s, 22, again[0].receipt), Ok(true));
    assert_eq!(receive(&mut s, 23, 10)[0].body, b"2");
}

#[test]
fn a_duplicate_within_the_window_returns_the_first_id() {
    let mut s = set(QueueConfig {
        dedup_window_ms: 100,
        ..cfg(1000, 3)
    });
    let d = |b: &str| SendMessage {
        dedup_id: Some("x".into()),
        ..msg(b)
    };
    let a = send(&mut s, 0, d("a"));
    let b = send(&mut s, 99, d("b"));
    assert_eq!(b.id, a.id);
    assert!(b.duplicate);
    let c = send(&mut s, 100, d("c"));
    assert!(!c.duplicate);
    assert_ne!(c.id, a.id);
}

#[test]
fn extend_moves_the_deadline_and_time_never_runs_back() {
    let mut s = set(cfg(100, 3));
    send(&mut s, 1000, msg("a"));
    let d = receive(&mut s, 1000, 1).remove(0);
    // A new leader whose clock is behind: time stays at 1000.
    let r = run(
        &mut s,
        10,
        QueueCommand::Extend {
            queue: Q.into(),
            receipt: d.receipt,
            timeout_ms: 500,
        },
    );
    assert_eq!(r, Ok(QueueResult::Extended { deadline_ms: 1500 }));
    assert_eq!(s.next_expiry_ms(), Some(1500));
    assert!(receive(&mut s, 1499, 1).is_empty());
    assert_eq!(receive(&mut s, 1500, 1).len(), 1);
}

#[test]
fn bad_input_is_refused() {
    let mut s = set(cfg(100, 3));
    let bad = [
        QueueCommand::Receive {
            queue: Q.into(),
            max: 0,
            visibility_timeout_ms: None,
        },
        QueueCommand::Send {
            queue: Q.into(),
            messages: vec![],
        },
        QueueCommand::Send {
            queue: Q.into(),
            messages: vec![SendMessage {
                group: Some(String::new()),
                ..msg("a")
            }],
        },
        QueueCommand::Create {
            name: "no spaces".into(),
            config: QueueConfig::default(),
        },
        QueueCommand::Create {
            name: "q".into(),
            config: cfg(0, 1),
        },
    ];
    for cmd in bad {
        let e = run(&mut s, 1, cmd.clone()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{cmd:?}");
    }
    let e = run(
        &mut s,
        1,
        QueueCommand::Ack {
            queue: "nope".into(),
            receipts: vec![],
        },
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::QueueNotFound);
    assert!("7".parse::<Receipt>().is_err());
    assert_eq!(
        "7.2".parse::<Receipt>().unwrap(),
        Receipt {
            id: MessageId(7),
            delivery: 2
        }
    );
}

#[test]
fn a_batch_applies_each_command_with_its_own_result() {
    let mut s = set(cfg(100, 3));
    let r = run(
        &mut s,
        5,
        QueueCommand::Batch(vec![
            QueueCommand::Send {
                queue: Q.into(),
                messages: vec![msg("a")],
            },
            QueueCommand::Receive {
                queue: "nope".into(),
                max: 1,
                visibility_timeout_ms: None,
            },
            QueueCommand::Receive {
                queue: Q.into(),
                max: 5,
                visibility_timeout_ms: None,
            },
            QueueCommand::Batch(vec![]),
        ]),
    )
    .unwrap();
    let QueueResult::Batch(v) = r else {
        panic!("{r:?}")
    };
    assert!(matches!(v[0], Ok(QueueResult::Sent(_))));
    assert_eq!(v[1].as_ref().unwrap_err().code, ErrorCode::QueueNotFound);
    match &v[2] {
        Ok(QueueResult::Received(d)) => assert_eq!(d[0].deadline_ms, 105),
        other => panic!("{other:?}"),
    }
    assert_eq!(v[3].as_ref().unwrap_err().code, ErrorCode::InvalidArgument);
}
