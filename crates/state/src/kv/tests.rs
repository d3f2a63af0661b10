//! Table-driven unit tests of the MVCC store: revisions, versions, tombstones, prev_kv, txn
//! compares and branches, compaction, old-revision reads and the shape of range responses.

use super::{EventKind, KvState};
use crate::kv_types::*;
use meridian_types::ErrorCode;

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn put(k: &str, v: &str) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: b(k),
        value: b(v),
        ..PutRequest::default()
    })
}

fn put_full(k: &str, v: &str, lease: i64, prev_kv: bool) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: b(k),
        value: b(v),
        lease,
        ignore_lease: false,
        ignore_value: false,
        prev_kv,
    })
}

fn del(k: &str, end: &[u8], prev_kv: bool) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest {
        key: b(k),
        range_end: end.to_vec(),
        prev_kv,
    })
}

fn get_at(k: &str, revision: u64) -> RangeRequest {
    RangeRequest {
        key: b(k),
        revision,
        ..RangeRequest::default()
    }
}

fn scan(k: &[u8], end: &[u8]) -> RangeRequest {
    RangeRequest {
        key: k.to_vec(),
        range_end: end.to_vec(),
        ..RangeRequest::default()
    }
}

fn txn_entry(
    hlc: u64,
    compare: Vec<Compare>,
    success: Vec<RequestOp>,
    failure: Vec<RequestOp>,
) -> KvEntry {
    KvEntry {
        request_id: None,
        hlc,
        cmd: KvCommand::Txn(TxnRequest {
            compare,
            success,
            failure,
        }),
    }
}

fn ops_entry(hlc: u64, ops: Vec<RequestOp>) -> KvEntry {
    txn_entry(hlc, vec![], ops, vec![])
}

fn compact_entry(revision: u64) -> KvEntry {
    KvEntry {
        request_id: None,
        hlc: 0,
        cmd: KvCommand::Compact { revision },
    }
}

fn kv(k: &str, v: &str, create: u64, modr: u64, version: u64, lease: i64) -> KeyValue {
    KeyValue {
        key: b(k),
        value: b(v),
        create_revision: create,
        mod_revision: modr,
        version,
        lease,
    }
}

/// Applies a txn that must succeed and returns its response.
fn txn(s: &mut KvState, entry: KvEntry) -> TxnResponse {
    match s.apply(&entry) {
        Ok(KvResult::Txn(r)) => r,
        other => panic!("expected a txn response, got {other:?}"),
    }
}

fn apply_ops(s: &mut KvState, hlc: u64, ops: Vec<RequestOp>) -> TxnResponse {
    txn(s, ops_entry(hlc, ops))
}

/// The live kv of `k` at `revision` (0 = latest), or None.
fn get(s: &KvState, k: &str, revision: u64) -> Option<KeyValue> {
    let r = s.range(&get_at(k, revision)).expect("read");
    assert!(r.kvs.len() <= 1);
    r.kvs.into_iter().next()
}

fn err_code<T: std::fmt::Debug>(r: Result<T, meridian_types::MeridianError>) -> ErrorCode {
    r.expect_err("expected an error").code
}

#[test]
fn revisions_versions_and_tombstones() {
    // (ops, hlc, store revision after, live kv of "a" after)
    let table: Vec<(Vec<RequestOp>, u64, u64, Option<KeyValue>)> = vec![
        (vec![put("a", "1")], 0, 1, Some(kv("a", "1", 1, 1, 1, 0))),
        (vec![put("a", "2")], 0, 2, Some(kv("a", "2", 1, 2, 2, 0))),
        // An hlc ahead of the revision jumps the revision to it.
        (vec![put("b", "x")], 10, 10, Some(kv("a", "2", 1, 2, 2, 0))),
        // An hlc behind it is ignored.
        (
            vec![put_full("a", "3", 7, false)],
            5,
            11,
            Some(kv("a", "3", 1, 11, 3, 7)),
        ),
        (vec![del("a", b"", false)], 0, 12, None),
        // Deleting nothing is no write: no new revision, even with an hlc ahead.
        (vec![del("a", b"", false)], 50, 12, None),
        (vec![del("x", b"z", false)], 0, 12, None),
        // Recreated after the tombstone: version 1, a new create revision.
        (vec![put("a", "4")], 0, 13, Some(kv("a", "4", 13, 13, 1, 0))),
        // A read-only txn takes no revision.
        (
            vec![RequestOp::Range(get_at("a", 0))],
            99,
            13,
            Some(kv("a", "4", 13, 13, 1, 0)),
        ),
        // An empty txn takes none either.
        (vec![], 99, 13, Some(kv("a", "4", 13, 13, 1, 0))),
        // Several writes of one txn share one revision.
        (
            vec![put("a", "5"), put("c", "y")],
            0,
            14,
            Some(kv("a", "5", 13, 14, 2, 0)),
        ),
    ];
    let mut s = KvState::new();
    for (i, (ops, hlc, rev, want_a)) in table.into_iter().enumerate() {
        let resp = apply_ops(&mut s, hlc, ops);
        assert_eq!(resp.revision, rev, "step {i}");
        assert_eq!(s.revision(), rev, "step {i}");
        assert_eq!(get(&s, "a", 0), want_a, "step {i}");
    }
    assert_eq!(get(&s, "c", 0), Some(kv("c", "y", 14, 14, 1, 0)));
    assert_eq!(get(&s, "b", 0), Some(kv("b", "x", 10, 10, 1, 0)));
}

#[test]
fn reads_at_old_revisions() {
    let mut s = KvState::new();
    apply_ops(&mut s, 0, vec![put("a", "1")]); // 1
    apply_ops(&mut s, 0, vec![put("a", "2")]); // 2
    apply_ops(&mut s, 5, vec![del("a", b"", false)]); // 5
    apply_ops(&mut s, 0, vec![put("a", "3")]); // 6
    let table: Vec<(u64, Option<KeyValue>)> = vec![
        (1, Some(kv("a", "1", 1, 1, 1, 0))),
        (2, Some(kv("a", "2", 1, 2, 2, 0))),
        // Revisions 3 and 4 were skipped by the hlc: the state is that of revision 2.
        (3, Some(kv("a", "2", 1, 2, 2, 0))),
        (4, Some(kv("a", "2", 1, 2, 2, 0))),
        (5, None),
        (6, Some(kv("a", "3", 6, 6, 1, 0))),
        (0, Some(kv("a", "3", 6, 6, 1, 0))),
    ];
    for (rev, want) in table {
        assert_eq!(get(&s, "a", rev), want, "at {rev}");
        // The response reports the current revision whatever revision was read.
        assert_eq!(s.range(&get_at("a", rev)).unwrap().revision, 6);
    }
    assert_eq!(
        err_code(s.range(&get_at("a", 7))),
        ErrorCode::FutureRevision
    );
}

#[test]
fn prev_kv_of_put_and_delete() {
    let mut s = KvState::new();
    let r = apply_ops(&mut s, 0, vec![put_full("a", "1", 3, true)]);
    assert_eq!(
        r.responses,
        vec![ResponseOp::Put(PutResponse {
            prev_kv: None,
            revision: 1
        })]
    );
    let r = apply_ops(
        &mut s,
        0,
        vec![put_full("a", "2", 0, true), put_full("b", "1", 0, false)],
    );
    let want = ResponseOp::Put(PutResponse {
        prev_kv: Some(kv("a", "1", 1, 1, 1, 3)),
        revision: 2,
    });
    assert_eq!(r.responses[0], want);
    // Without prev_kv nothing is returned.
    let r = apply_ops(&mut s, 0, vec![put("a", "3")]);
    assert_eq!(
        r.responses,
        vec![ResponseOp::Put(PutResponse {
            prev_kv: None,
            revision: 3
        })]
    );
    let r = apply_ops(&mut s, 0, vec![del("a", b"c", true)]);
    let want = DeleteRangeResponse {
        deleted: 2,
        prev_kvs: vec![kv("a", "3", 1, 3, 3, 0), kv("b", "1", 2, 2, 1, 0)],
        revision: 4,
    };
    assert_eq!(r.responses, vec![ResponseOp::DeleteRange(want)]);
    let r = apply_ops(&mut s, 0, vec![put_full("a", "4", 0, true)]);
    assert_eq!(
        r.responses,
        vec![ResponseOp::Put(PutResponse {
            prev_kv: None,
            revision: 5
        })]
    );
    let r = apply_ops(&mut s, 0, vec![del("a", &[0], false)]);
    let want = DeleteRangeResponse {
        deleted: 1,
        prev_kvs: vec![],
        revision: 6,
    };
    assert_eq!(r.responses, vec![ResponseOp::DeleteRange(want)]);
}

fn cmp(k: &str, end: &[u8], op: CompareOp, target: CompareTarget) -> Compare {
    Compare {
        key: b(k),
        range_end: end.to_vec(),
        op,
        target,
    }
}

#[test]
fn txn_compares_every_target_and_op() {
    use CompareOp::*;
    use CompareTarget as T;
    let mut s = KvState::new();
    apply_ops(&mut s, 0, vec![put("a", "m")]); // a: create 1
    apply_ops(&mut s, 0, vec![put("z", "z")]); // 2
    apply_ops(&mut s, 0, vec![put_full("a", "m", 7, false)]); // a: mod 3, version 2, lease 7
    // "a" is {value m, version 2, create 1, mod 3, lease 7}; "q" is missing.
    let table: Vec<(&str, CompareOp, CompareTarget, bool)> = vec![
        ("a", Equal, T::Value(b("m")), true),
        ("a", NotEqual, T::Value(b("m")), false),
        ("a", Greater, T::Value(b("l")), true),
        ("a", Greater, T::Value(b("m")), false),
        ("a", Less, T::Value(b("n")), true),
        ("a", Less, T::Value(b("mm")), true),
        ("a", Equal, T::Version(2), true),
        ("a", Greater, T::Version(1), true),
        ("a", Less, T::Version(2), false),
        ("a", NotEqual, T::Version(3), true),
        ("a", Equal, T::CreateRevision(1), true),
        ("a", Greater, T::CreateRevision(1), false),
        ("a", Less, T::CreateRevision(2), true),
        ("a", Equal, T::ModRevision(3), true),
        ("a", Greater, T::ModRevision(2), true),
        ("a", NotEqual, T::ModRevision(3), false),
        ("a", Equal, T::Lease(7), true),
        ("a", Less, T::Lease(8), true),
        ("a", Greater, T::Lease(-1), true),
        // A missing key: a value compare always fails (etcd), everything else compares as 0.
        ("q", Equal, T::Value(vec![]), false),
        ("q", Less, T::Value(b("a")), false),
        ("q", NotEqual, T::Value(b("a")), false),
        ("q", Equal, T::Version(0), true),
        ("q", Greater, T::Version(0), false),
        ("q", Equal, T::CreateRevision(0), true),
        ("q", Equal, T::ModRevision(0), true),
        ("q", Equal, T::Lease(0), true),
        ("q", Less, T::Lease(1), true),
    ];
    for (key, op, target, want) in table {
        let before = s.clone();
        let e = txn_entry(42, vec![cmp(key, b"", op, target.clone())], vec![], vec![]);
        let r = txn(&mut s, e);
        assert_eq!(r.succeeded, want, "{key} {op:?} {target:?}");
        assert_eq!(s, before, "a txn without ops changes nothing");
    }
}

#[test]
fn txn_compare_over_a_range() {
    use CompareOp::*;
    use CompareTarget as T;
    let mut s = KvState::new();
    apply_ops(&mut s, 0, vec![put("a", "1"), put("b", "1"), put("c", "2")]);
    apply_ops(&mut s, 0, vec![put("a", "1"), del("c", b"", false)]);
    // live: a (version 2), b (version 1); c is a tombstone.
    let table: Vec<(&str, &[u8], CompareOp, CompareTarget, bool)> = vec![
        ("a", b"c", Equal, T::Value(b("1")), true),
        ("a", b"d", Equal, T::Value(b("1")), true), // the tombstone of c does not count
        ("a", b"c", Equal, T::Version(2), false),   // b has version 1
        ("a", b"c", Greater, T::Version(0), true),
        ("a", &[0], Equal, T::CreateRevision(1), true),
        // No live key in the range: compared as one missing key.
        ("c", b"z", Equal, T::Version(0), true),
        ("c", b"z", Greater, T::Version(0), false),
        // An empty (reversed) range is no live key too.
        ("b", b"a", Equal, T::ModRevision(0), true),
    ];
    for (key, end, op, target, want) in table {
        let r = txn(
            &mut s,
            txn_entry(0, vec![cmp(key, end, op, target.clone())], vec![], vec![]),
        );
        assert_eq!(r.succeeded, want, "{key} {end:?} {op:?} {target:?}");
    }
}

#[test]
fn txn_runs_then_or_else() {
    let mut s = KvState::new();
    apply_ops(&mut s, 0, vec![put("a", "1")]);
    let cas = |expect: &str, new: &str| {
        txn_entry(
            0,
            vec![cmp(
                "a",
                b"",
                CompareOp::Equal,
                CompareTarget::Value(b(expect)),
            )],
            vec![put("a", new)],
            vec![RequestOp::Range(get_at("a", 0))],
        )
    };
    let r = txn(&mut s, cas("1", "2"));
    assert!(r.succeeded);
    assert_eq!(r.revision, 2);
    assert_eq!(
        r.responses,
        vec![ResponseOp::Put(PutResponse {
            prev_kv: None,
            revision: 2
        })]
    );
    let r = txn(&mut s, cas("1", "3"));
    assert!(!r.succeeded);
    assert_eq!(r.revision, 2);
    let want = RangeResponse {
        kvs: vec![kv("a", "2", 1, 2, 2, 0)],
        more: false,
        count: 1,
        revision: 2,
    };
    assert_eq!(r.responses, vec![ResponseOp::Range(want)]);
    // Any failing compare picks the else branch.
    let e = txn_entry(
        0,
        vec![
            cmp("a", b"", CompareOp::Equal, CompareTarget::Value(b("2"))),
            cmp("a", b"", CompareOp::Equal, CompareTarget::Version(9)),
        ],
        vec![put("x", "then")],
        vec![put("x", "else")],
    );
    assert!(!txn(&mut s, e).succeeded);
    assert_eq!(get(&s, "x", 0).unwrap().value, b("else"));
}

#[test]
fn ops_in_a_txn_see_earlier_ops() {
    let mut s = KvState::new();
    apply_ops(&mut s, 0, vec![put("a", "1")]); // 1
    let r = apply_ops(
        &mut s,
        10,
        vec![
            RequestOp::Range(get_at("a", 0)),
            put("a", "2"),
            RequestOp::Range(get_at("a", 0)),
            // The txn's own revision is readable once it has written...
            RequestOp::Range(get_at("a", 10)),
            // ...and a skipped revision shows the state before the txn.
            RequestOp::Range(get_at("a", 5)),
            put_full("a", "3", 0, true),
            del("a", b"", true),
            put("a", "4"),
            put("n", "1"),
            del("n", b"", false),
        ],
    );
    let range = |kv: KeyValue| {
        ResponseOp::Range(RangeResponse {
            kvs: vec![kv],
            count: 1,
            more: false,
            revision: 10,
        })
    };
    assert_eq!(r.responses[0], range(kv("a", "1", 1, 1, 1, 0)));
    assert_eq!(r.responses[2], range(kv("a", "2", 1, 10, 2, 0)));
    assert_eq!(r.responses[3], range(kv("a", "2", 1, 10, 2, 0)));
    assert_eq!(r.responses[4], range(kv("a", "1", 1, 1, 1, 0)));
    let put3 = PutResponse {
        prev_kv: Some(kv("a", "2", 1, 10, 2, 0)),
        revision: 10,
    };
    assert_eq!(r.responses[5], ResponseOp::Put(put3));
    let del3 = DeleteRangeResponse {
        deleted: 1,
        prev_kvs: vec![kv("a", "3", 1, 10, 3, 0)],
        revision: 10,
    };
    assert_eq!(r.responses[6], ResponseOp::DeleteRange(del3));
    // Deleted and put again in one txn: recreated at the txn's revision.
    assert_eq!(get(&s, "a", 0), Some(kv("a", "4", 10, 10, 1, 0)));
    assert_eq!(get(&s, "a", 9), Some(kv("a", "1", 1, 1, 1, 0)));
    assert_eq!(get(&s, "n", 0), None);
    assert_eq!(s.revision(), 10);
    // A key created and deleted by one txn leaves no trace in the store, and a key written
    // many times by one txn keeps one version for it: the same store as the plain txn.
    assert!(!s.keys.contains_key(b"n".as_slice()));
    let mut plain = KvState::new();
    apply_ops(&mut plain, 0, vec![put("a", "1")]);
    apply_ops(&mut plain, 10, vec![del("a", b"", false), put("a", "4")]);
    assert_eq!(s, plain);
}

#[test]
fn failed_apply_leaves_state_unchanged() {
    let mut s = KvState::new();
    apply_ops(&mut s, 0, vec![put("a", "1"), put("b", "1")]); // 1
    apply_ops(&mut s, 0, vec![put("a", "2")]); // 2
    s.apply(&compact_entry(2)).unwrap();
    let cases: Vec<(KvEntry, ErrorCode)> = vec![
        (ops_entry(0, vec![put("", "x")]), ErrorCode::InvalidArgument),
        (
            ops_entry(0, vec![put("a", "x"), del("", b"z", false)]),
            ErrorCode::InvalidArgument,
        ),
        (
            ops_entry(0, vec![put("a", "x"), RequestOp::Range(get_at("", 0))]),
            ErrorCode::InvalidArgument,
        ),
        (
            ops_entry(0, vec![put("a", "x"), RequestOp::Range(get_at("a", 1))]),
            ErrorCode::Compacted,
        ),
        // Future for the txn: it would write at 3, so 4 is never readable.
        (
            ops_entry(0, vec![put("a", "x"), RequestOp::Range(get_at("a", 4))]),
            ErrorCode::FutureRevision,
        ),
        // 3 is the txn's own revision, but the read comes before its first write.
        (
            ops_entry(0, vec![RequestOp::Range(get_at("a", 3)), put("a", "x")]),
            ErrorCode::FutureRevision,
        ),
        // The same after writes that must be rolled back, including a new key and a delete.
        (
            ops_entry(
                0,
                vec![
                    put("c", "x"),
                    del("a", b"", false),
                    put("b", "y"),
                    RequestOp::Range(get_at("a", 4)),
                ],
            ),
            ErrorCode::FutureRevision,
        ),
        (
            ops_entry(
                0,
                vec![del("a", b"", false), RequestOp::Range(get_at("a", 4))],
            ),
            ErrorCode::FutureRevision,
        ),
        (compact_entry(2), ErrorCode::Compacted),
        (compact_entry(1), ErrorCode::Compacted),
        (compact_entry(3), ErrorCode::FutureRevision),
    ];
    for (i, (entry, code)) in cases.into_iter().enumerate() {
        let before = s.clone();
        assert_eq!(err_code(s.apply(&entry)), code, "case {i}");
        assert_eq!(s, before, "case {i}");
    }
    // An invalid op in the branch not taken does not matter.
    let e = txn_entry(0, vec![], vec![put("a", "3")], vec![put("", "x")]);
    assert!(txn(&mut s, e).succeeded);
    // A read at the txn's own revision after its first write is fine.
    let r = apply_ops(
        &mut s,
        0,
        vec![put("a", "4"), RequestOp::Range(get_at("a", 4))],
    );
    assert_eq!(r.revision, 4);
}

#[test]
fn compaction_rules() {
    let mut s = KvState::new();
    assert_eq!(err_code(s.apply(&compact_entry(0))), ErrorCode::Compacted);
    assert_eq!(
        err_code(s.apply(&compact_entry(1))),
        ErrorCode::FutureRevision
    );
    apply_ops(&mut s, 0, vec![put("a", "1"), put("b", "1"), put("c", "1")]); // 1
    apply_ops(&mut s, 0, vec![put("a", "2"), del("b", b"", false)]); // 2
    apply_ops(&mut s, 0, vec![put("a", "3"), del("c", b"", false)]); // 3
    apply_ops(&mut s, 0, vec![put("b", "4")]); // 4
    let full = |s: &KvState, rev| {
        s.range(&RangeRequest {
            revision: rev,
            ..scan(&[0], &[0])
        })
    };
    let before: Vec<_> = (2..=4).map(|rev| full(&s, rev).unwrap()).collect();
    assert_eq!(
        s.apply(&compact_entry(2)).unwrap(),
        KvResult::Compact { revision: 2 }
    );
    assert_eq!(s.compact_revision(), 2);
    assert_eq!(s.revision(), 4, "compaction takes no revision");
    // Reads at the compact revision and later are as they were.
    let after: Vec<_> = (2..=4).map(|rev| full(&s, rev).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(err_code(full(&s, 1)), ErrorCode::Compacted);
    assert_eq!(err_code(full(&s, 5)), ErrorCode::FutureRevision);
    // b's tombstone at 2 is gone, its later put stays; a keeps versions 2 and 3.
    assert_eq!(s.keys[b"a".as_slice()].live_at(2).unwrap().0, 2);
    assert!(s.keys[b"b".as_slice()].live_at(3).is_none());
    assert_eq!(err_code(s.apply(&compact_entry(2))), ErrorCode::Compacted);
    s.apply(&compact_entry(4)).unwrap();
    // c was deleted at 3: compacted at 4 it is forgotten entirely.
    assert_eq!(
        s.keys.keys().cloned().collect::<Vec<_>>(),
        vec![b("a"), b("b")]
    );
    assert_eq!(full(&s, 4).unwrap(), before[2]);
    // Writes after a compaction go on from the current revision.
    let r = apply_ops(&mut s, 0, vec![put("c", "5")]);
    assert_eq!(r.revision, 5);
    assert_eq!(get(&s, "c", 0), Some(kv("c", "5", 5, 5, 1, 0)));
}

#[test]
fn range_shapes_count_limit_keys_only() {
    let mut s = KvState::new();
    apply_ops(
        &mut s,
        0,
        vec![
            put("a", "va"),
            put("b", "vb"),
            put("c", "vc"),
            put("d", "vd"),
        ],
    );
    apply_ops(&mut s, 0, vec![del("c", b"", false)]);
    let all = |limit, keys_only, count_only| RangeRequest {
        limit,
        keys_only,
        count_only,
        ..scan(b"a", &[0])
    };
    // (request, expected keys, expected values emptied, count, more)
    let table: Vec<(RangeRequest, Vec<&str>, bool, u64, bool)> = vec![
        (all(0, false, false), vec!["a", "b", "d"], false, 3, false),
        (all(2, false, false), vec!["a", "b"], false, 3, true),
        (all(3, false, false), vec!["a", "b", "d"], false, 3, false),
        (
            all(u64::MAX, false, false),
            vec!["a", "b", "d"],
            false,
            3,
            false,
        ),
        (all(1, true, false), vec!["a"], true, 3, true),
        (all(0, true, false), vec!["a", "b", "d"], true, 3, false),
        (all(1, false, true), vec![], false, 3, false),
        (scan(b"b", b""), vec!["b"], false, 1, false),
        (scan(b"c", b""), vec![], false, 0, false),
        (scan(b"b", b"d"), vec!["b"], false, 1, false),
        (scan(b"b", b"e"), vec!["b", "d"], false, 2, false),
        (scan(b"b", &[0]), vec!["b", "d"], false, 2, false),
        (scan(&[0], &[0]), vec!["a", "b", "d"], false, 3, false),
        (scan(b"b", b"b"), vec![], false, 0, false),
        (scan(b"d", b"a"), vec![], false, 0, false),
        (scan(b"a", &[0, 0]), vec![], false, 0, false),
        (scan(&[0xff, 0xff], &[0]), vec![], false, 0, false),
    ];
    for (i, (req, keys, emptied, count, more)) in table.into_iter().enumerate() {
        let r = s.range(&req).unwrap();
        let got: Vec<Vec<u8>> = r.kvs.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(
            got,
            keys.iter().map(|k| b(k)).collect::<Vec<_>>(),
            "case {i}"
        );
        assert!(
            r.kvs.iter().all(|kv| kv.value.is_empty() == emptied),
            "case {i}"
        );
        assert_eq!((r.count, r.more, r.revision), (count, more, 2), "case {i}");
    }
    assert_eq!(
        err_code(s.range(&scan(b"", &[0]))),
        ErrorCode::InvalidArgument
    );
}

#[test]
fn revision_space_exhausted_is_an_error_not_a_panic() {
    let mut s = KvState::new();
    apply_ops(&mut s, u64::MAX, vec![put("a", "1")]);
    assert_eq!(s.revision(), u64::MAX);
    let before = s.clone();
    assert_eq!(
        err_code(s.apply(&ops_entry(0, vec![put("b", "1")]))),
        ErrorCode::Internal
    );
    assert_eq!(
        err_code(s.apply(&ops_entry(0, vec![del("a", b"", false)]))),
        ErrorCode::Internal
    );
    assert_eq!(s, before);
    // Reads and writes that write nothing still work.
    let r = apply_ops(
        &mut s,
        0,
        vec![
            RequestOp::Range(get_at("a", u64::MAX)),
            del("z", b"", false),
        ],
    );
    assert_eq!(r.revision, u64::MAX);
    assert_eq!(
        get(&s, "a", 0),
        Some(kv("a", "1", u64::MAX, u64::MAX, 1, 0))
    );
}

#[test]
fn events_come_back_in_revision_order_and_batches_keep_txns_whole() {
    let mut s = KvState::new();
    txn(&mut s, ops_entry(0, vec![put("b", "1"), put("a", "1")])); // rev 1: a txn of two
    txn(&mut s, ops_entry(0, vec![put("a", "2")])); // rev 2
    txn(&mut s, ops_entry(0, vec![del("b", b"", false)])); // rev 3
    let all = s.events_after(&b("a"), &b("c"), 0, true, 100).unwrap();
    let got: Vec<(u64, &[u8], EventKind)> = all
        .events
        .iter()
        .map(|e| (e.kv.mod_revision, e.kv.key.as_slice(), e.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, &b"a"[..], EventKind::Put),
            (1, &b"b"[..], EventKind::Put),
            (2, &b"a"[..], EventKind::Put),
            (3, &b"b"[..], EventKind::Delete),
        ]
    );
    assert_eq!(all.cursor, 3);
    assert_eq!(
        all.events[2].prev_kv.as_ref().map(|p| p.value.clone()),
        Some(b("1"))
    );
    // A batch of one event still carries the whole txn of revision 1, and says where it
    // stopped; asking from there gives the rest.
    let first = s.events_after(&b("a"), &b("c"), 0, false, 1).unwrap();
    assert_eq!((first.events.len(), first.cursor), (2, 1));
    let rest = s
        .events_after(&b("a"), &b("c"), first.cursor, false, 100)
        .unwrap();
    assert_eq!((rest.events.len(), rest.cursor), (2, 3));
    // Up to date: nothing, and the cursor never goes back.
    let none = s.events_after(&b("a"), &b("c"), 7, false, 100).unwrap();
    assert_eq!((none.events.len(), none.cursor), (0, 7));
    // Compacted history cannot be replayed.
    s.apply(&compact_entry(2)).unwrap();
    assert_eq!(s.events_after(&b("a"), &b("c"), 1, false, 100), Err(2));
    assert_eq!(
        s.events_after(&b("a"), &b("c"), 2, false, 100)
            .unwrap()
            .events
            .len(),
        1
    );
}

#[test]
fn revoking_a_lease_deletes_its_keys_and_refuses_later_puts() {
    let mut s = KvState::new();
    txn(
        &mut s,
        ops_entry(
            0,
            vec![put_full("x", "1", 7, false), put_full("y", "1", 8, false)],
        ),
    );
    assert_eq!(s.keys_with_lease(7), vec![b("x")]);
    let revoke = KvEntry {
        request_id: None,
        hlc: 0,
        cmd: KvCommand::RevokeLease { lease: 7 },
    };
    assert_eq!(
        s.apply(&revoke).unwrap(),
        KvResult::RevokeLease {
            deleted: 1,
            revision: 2
        }
    );
    // Idempotent: nothing left, no new revision.
    assert_eq!(
        s.apply(&revoke).unwrap(),
        KvResult::RevokeLease {
            deleted: 0,
            revision: 2
        }
    );
    let err = s
        .apply(&ops_entry(0, vec![put_full("z", "1", 7, false)]))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::LeaseNotFound);
    assert!(s.range(&get_at("y", 0)).unwrap().kvs.len() == 1);
}

#[test]
fn ignore_lease_and_ignore_value_keep_what_the_key_has() {
    let mut s = KvState::new();
    txn(&mut s, ops_entry(0, vec![put_full("k", "v1", 5, false)]));
    let keep_lease = RequestOp::Put(PutRequest {
        key: b("k"),
        value: b("v2"),
        ignore_lease: true,
        ..PutRequest::default()
    });
    txn(&mut s, ops_entry(0, vec![keep_lease.clone()]));
    let got = s.range(&get_at("k", 0)).unwrap().kvs[0].clone();
    assert_eq!((got.value, got.lease), (b("v2"), 5));
    let keep_value = RequestOp::Put(PutRequest {
        key: b("k"),
        lease: 6,
        ignore_value: true,
        ..PutRequest::default()
    });
    txn(&mut s, ops_entry(0, vec![keep_value]));
    let got = s.range(&get_at("k", 0)).unwrap().kvs[0].clone();
    assert_eq!((got.value, got.lease), (b("v2"), 6));
    // Keeping what a missing key has is an error.
    let missing = RequestOp::Put(PutRequest {
        key: b("nope"),
        ignore_lease: true,
        ..PutRequest::default()
    });
    assert_eq!(
        s.apply(&ops_entry(0, vec![missing])).unwrap_err().code,
        ErrorCode::KeyNotFound
    );
}
