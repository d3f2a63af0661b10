//! Model-based property tests of `KvState`: random command sequences over a small key set run
//! against the store and against a deliberately naive model (a full copy of the live map at
//! every revision), and every response, error and read must agree. Also: snapshots round-trip
//! through postcard and replicas fed the same log end equal.

use meridian_state::*;
use meridian_types::ErrorCode;
use proptest::prelude::*;
use std::cmp::Ordering;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// The model: obviously correct, not fast.
// ---------------------------------------------------------------------------------------------

type Map = BTreeMap<Vec<u8>, KeyValue>;

/// The whole live map after every write, so a read at any revision is a look-up.
struct Model {
    /// `(revision, live map at that revision)`, ascending, starting with `(0, empty)`.
    history: Vec<(u64, Map)>,
    compact: u64,
    /// Leases revoked in this range: a put with one fails.
    revoked: std::collections::BTreeSet<i64>,
}

/// etcd's range rule, written as a filter so it shares nothing with the store's bounds code.
fn in_range(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        k == key
    } else if end == [0] {
        k >= key
    } else {
        k >= key && k < end
    }
}

fn holds(ord: Ordering, op: CompareOp) -> bool {
    match op {
        CompareOp::Equal => ord.is_eq(),
        CompareOp::NotEqual => ord.is_ne(),
        CompareOp::Greater => ord.is_gt(),
        CompareOp::Less => ord.is_lt(),
    }
}

/// A missing key compares as `KeyValue::default()`: empty value, every number 0.
fn compare_kv(kv: &KeyValue, c: &Compare) -> bool {
    let ord = match &c.target {
        CompareTarget::Value(v) => kv.value.cmp(v),
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::CreateRevision(v) => kv.create_revision.cmp(v),
        CompareTarget::ModRevision(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
    };
    holds(ord, c.op)
}

impl Model {
    fn new() -> Self {
        Model {
            history: vec![(0, Map::new())],
            compact: 0,
            revoked: Default::default(),
        }
    }

    fn rev(&self) -> u64 {
        self.history.last().unwrap().0
    }

    fn at(&self, rev: u64) -> &Map {
        &self
            .history
            .iter()
            .rev()
            .find(|(r, _)| *r <= rev)
            .unwrap()
            .1
    }

    /// A read as if the store's revision were `current`; `pending` is the uncommitted map of a
    /// txn that has written at `current`.
    fn read(
        &self,
        r: &RangeRequest,
        current: u64,
        pending: Option<&Map>,
    ) -> Result<RangeResponse, ErrorCode> {
        if r.key.is_empty() {
            return Err(ErrorCode::InvalidArgument);
        }
        let at = match r.revision {
            0 => current,
            rev if rev > current => return Err(ErrorCode::FutureRevision),
            rev if rev < self.compact => return Err(ErrorCode::Compacted),
            rev => rev,
        };
        let map = match pending {
            Some(p) if at == current => p,
            _ => self.at(at),
        };
        let mut kvs: Vec<KeyValue> = map
            .values()
            .filter(|kv| in_range(&kv.key, &r.key, &r.range_end))
            .cloned()
            .collect();
        let count = kvs.len() as u64;
        let mut more = false;
        if r.count_only {
            kvs.clear();
        } else if r.limit > 0 && count > r.limit {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        if r.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        Ok(RangeResponse {
            kvs,
            more,
            count,
            revision: current,
        })
    }

    fn apply(&mut self, e: &KvEntry) -> Result<KvResult, ErrorCode> {
        match &e.cmd {
            KvCommand::Compact { revision } => {
                if *revision <= self.compact {
                    return Err(ErrorCode::Compacted);
                }
                if *revision > self.rev() {
                    return Err(ErrorCode::FutureRevision);
                }
                self.compact = *revision;
                Ok(KvResult::Compact {
                    revision: *revision,
                })
            }
            KvCommand::Txn(t) => self.txn(t, e.hlc).map(KvResult::Txn),
            KvCommand::Advance => {
                if e.hlc > self.rev() {
                    let map = self.at(self.rev()).clone();
                    self.history.push((e.hlc, map));
                }
                Ok(KvResult::Advance {
                    revision: self.rev(),
                })
            }
            KvCommand::RevokeLease { lease } => {
                if *lease == 0 {
                    return Err(ErrorCode::InvalidArgument);
                }
                self.revoked.insert(*lease);
                let mut work = self.at(self.rev()).clone();
                let before = work.len();
                work.retain(|_, kv| kv.lease != *lease);
                let deleted = (before - work.len()) as u64;
                if deleted > 0 {
                    let rev = (self.rev() + 1).max(e.hlc);
                    self.history.push((rev, work));
                }
                Ok(KvResult::RevokeLease {
                    deleted,
                    revision: self.rev(),
                })
            }
        }
    }

    /// The events after `after`, read off the difference between consecutive maps: a key
    /// whose version changed was put, a key that went was deleted.
    fn events_after(&self, after: u64) -> Result<Vec<WatchEvent>, u64> {
        if self.compact > 0 && after < self.compact {
            return Err(self.compact);
        }
        let mut out = Vec::new();
        for pair in self.history.windows(2) {
            let ((_, old), (rev, new)) = (&pair[0], &pair[1]);
            if *rev <= after {
                continue;
            }
            let keys: std::collections::BTreeSet<&Vec<u8>> = old.keys().chain(new.keys()).collect();
            for k in keys {
                match (old.get(k), new.get(k)) {
                    (prev, Some(kv)) if prev != Some(kv) => out.push(WatchEvent {
                        kind: EventKind::Put,
                        kv: kv.clone(),
                        prev_kv: prev.cloned(),
                    }),
                    (Some(prev), None) => out.push(WatchEvent {
                        kind: EventKind::Delete,
                        kv: KeyValue {
                            key: k.clone(),
                            mod_revision: *rev,
                            ..KeyValue::default()
                        },
                        prev_kv: Some(prev.clone()),
                    }),
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    fn txn(&mut self, t: &TxnRequest, hlc: u64) -> Result<TxnResponse, ErrorCode> {
        let begin = self.rev();
        let new_rev = (begin + 1).max(hlc);
        let mut work = self.at(begin).clone();
        let succeeded = t.compare.iter().all(|c| {
            let kvs: Vec<&KeyValue> = work
                .values()
                .filter(|kv| in_range(&kv.key, &c.key, &c.range_end))
                .collect();
            if kvs.is_empty() {
                // etcd: a value compare on a missing key always fails.
                !matches!(c.target, CompareTarget::Value(_)) && compare_kv(&KeyValue::default(), c)
            } else {
                kvs.iter().all(|kv| compare_kv(kv, c))
            }
        });
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut wrote = false;
        let mut responses = Vec::new();
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => {
                    let current = if wrote { new_rev } else { begin };
                    ResponseOp::Range(self.read(r, current, wrote.then_some(&work))?)
                }
                RequestOp::Put(p) => {
                    if p.key.is_empty() {
                        return Err(ErrorCode::InvalidArgument);
                    }
                    if p.lease != 0 && self.revoked.contains(&p.lease) {
                        return Err(ErrorCode::LeaseNotFound);
                    }
                    let prev = work.get(&p.key).cloned();
                    let (create_revision, version) = prev
                        .as_ref()
                        .map_or((new_rev, 1), |kv| (kv.create_revision, kv.version + 1));
                    let kv = KeyValue {
                        key: p.key.clone(),
                        value: p.value.clone(),
                        create_revision,
                        mod_revision: new_rev,
                        version,
                        lease: p.lease,
                    };
                    work.insert(p.key.clone(), kv);
                    wrote = true;
                    ResponseOp::Put(PutResponse {
                        prev_kv: prev.filter(|_| p.prev_kv),
                        revision: 0,
                    })
                }
                RequestOp::DeleteRange(d) => {
                    if d.key.is_empty() {
                        return Err(ErrorCode::InvalidArgument);
                    }
                    let victims: Vec<KeyValue> = work
                        .values()
                        .filter(|kv| in_range(&kv.key, &d.key, &d.range_end))
                        .cloned()
                        .collect();
                    for kv in &victims {
                        work.remove(&kv.key);
                    }
                    wrote |= !victims.is_empty();
                    let deleted = victims.len() as u64;
                    ResponseOp::DeleteRange(DeleteRangeResponse {
                        deleted,
                        prev_kvs: if d.prev_kv { victims } else { vec![] },
                        revision: 0,
                    })
                }
            });
        }
        let revision = if wrote {
            self.history.push((new_rev, work));
            new_rev
        } else {
            begin
        };
        for r in &mut responses {
            match r {
                ResponseOp::Range(x) => x.revision = revision,
                ResponseOp::Put(x) => x.revision = revision,
                ResponseOp::DeleteRange(x) => x.revision = revision,
            }
        }
        Ok(TxnResponse {
            succeeded,
            responses,
            revision,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Generated commands. Revisions and hlc values are relative to the current revision and
// resolved when the step runs, so they land near the interesting edges.
// ---------------------------------------------------------------------------------------------

/// A revision relative to the current one; `Latest` is 0 (for a compaction: the current).
#[derive(Clone, Debug)]
enum RevSel {
    Latest,
    Back(u64),
    Ahead(u64),
}

impl RevSel {
    fn resolve(&self, cur: u64) -> u64 {
        match self {
            RevSel::Latest => 0,
            RevSel::Back(n) => cur.saturating_sub(*n),
            RevSel::Ahead(n) => cur + n,
        }
    }
}

#[derive(Clone, Debug)]
struct GenRange {
    key: Vec<u8>,
    end: Vec<u8>,
    limit: u64,
    rev: RevSel,
    keys_only: bool,
    count_only: bool,
}

impl GenRange {
    fn resolve(&self, cur: u64) -> RangeRequest {
        RangeRequest {
            key: self.key.clone(),
            range_end: self.end.clone(),
            limit: self.limit,
            revision: self.rev.resolve(cur),
            keys_only: self.keys_only,
            count_only: self.count_only,
        }
    }
}

#[derive(Clone, Debug)]
enum GenOp {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Range(GenRange),
}

#[derive(Clone, Debug)]
enum Step {
    /// A txn with `hlc = cur + 1 + hlc_ahead`, or 0..=cur (behind) when `hlc_ahead` is None.
    Txn {
        hlc_ahead: Option<u64>,
        hlc_behind: u64,
        compare: Vec<Compare>,
        success: Vec<GenOp>,
        failure: Vec<GenOp>,
    },
    Compact(RevSel),
    Read(GenRange),
    /// Revokes a lease in this range (deleting its keys).
    Revoke {
        lease: i64,
        hlc_ahead: u64,
    },
    /// Advances the revision to `cur + ahead` (a no-op when `ahead` is 0).
    Advance {
        ahead: u64,
    },
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => (b'a'..=b'f').prop_map(|c| vec![c]),
        1 => Just(vec![]),
        1 => Just(vec![0]),
    ]
}

/// A range end: mostly a single key, else every key from, or an interval (maybe empty).
fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(vec![]),
        1 => Just(vec![0]),
        3 => (b'a'..=b'g').prop_map(|c| vec![c]),
    ]
}

fn rev_sel() -> impl Strategy<Value = RevSel> {
    prop_oneof![
        3 => Just(RevSel::Latest),
        4 => (0u64..6).prop_map(RevSel::Back),
        1 => (1u64..3).prop_map(RevSel::Ahead),
    ]
}

fn gen_range() -> impl Strategy<Value = GenRange> {
    (
        key(),
        range_end(),
        prop_oneof![3 => Just(0u64), 2 => 1u64..4, 1 => Just(u64::MAX)],
        rev_sel(),
        any::<bool>(),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(key, end, limit, rev, keys_only, count_only)| GenRange {
            key,
            end,
            limit,
            rev,
            keys_only,
            count_only,
        })
}

fn gen_op() -> impl Strategy<Value = GenOp> {
    prop_oneof![
        5 => (key(), 0u8..3, -1i64..2, any::<bool>()).prop_map(|(key, v, lease, prev_kv)| GenOp::Put(PutRequest {
            key,
            value: vec![b'0' + v; v as usize],
            prev_kv,
            lease,
            ignore_lease: false,
            ignore_value: false,
        })),
        2 => (key(), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| GenOp::Delete(DeleteRangeRequest { key, range_end, prev_kv })),
        2 => gen_range().prop_map(GenOp::Range),
    ]
}

fn gen_compare() -> impl Strategy<Value = Compare> {
    let op = prop_oneof![
        Just(CompareOp::Equal),
        Just(CompareOp::NotEqual),
        Just(CompareOp::Greater),
        Just(CompareOp::Less)
    ];
    let target = prop_oneof![
        (0u8..3).prop_map(|v| CompareTarget::Value(vec![b'0' + v; v as usize])),
        (0u64..4).prop_map(CompareTarget::Version),
        (0u64..8).prop_map(CompareTarget::CreateRevision),
        (0u64..8).prop_map(CompareTarget::ModRevision),
        (-1i64..2).prop_map(CompareTarget::Lease),
    ];
    (
        key(),
        prop_oneof![4 => Just(vec![]), 1 => range_end()],
        op,
        target,
    )
        .prop_map(|(key, range_end, op, target)| Compare {
            key,
            range_end,
            op,
            target,
        })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (
            prop::option::weighted(0.3, 0u64..4),
            0u64..3,
            prop::collection::vec(gen_compare(), 0..3),
            prop::collection::vec(gen_op(), 0..4),
            prop::collection::vec(gen_op(), 0..3),
        )
            .prop_map(|(hlc_ahead, hlc_behind, compare, success, failure)| Step::Txn { hlc_ahead, hlc_behind, compare, success, failure }),
        1 => rev_sel().prop_map(Step::Compact),
        2 => gen_range().prop_map(Step::Read),
        1 => (-1i64..2, 0u64..3).prop_map(|(lease, hlc_ahead)| Step::Revoke { lease, hlc_ahead }),
        1 => (0u64..4).prop_map(|ahead| Step::Advance { ahead }),
    ]
}

/// Turns a step into a log entry (or a read) against the current revision.
fn resolve(step: &Step, cur: u64) -> Result<KvEntry, RangeRequest> {
    let resolve_ops = |ops: &[GenOp]| -> Vec<RequestOp> {
        ops.iter()
            .map(|op| match op {
                GenOp::Put(p) => RequestOp::Put(p.clone()),
                GenOp::Delete(d) => RequestOp::DeleteRange(d.clone()),
                GenOp::Range(r) => RequestOp::Range(r.resolve(cur)),
            })
            .collect()
    };
    match step {
        Step::Txn {
            hlc_ahead,
            hlc_behind,
            compare,
            success,
            failure,
        } => Ok(KvEntry {
            request_id: None,
            hlc: match hlc_ahead {
                Some(n) => cur + 1 + n,
                None => cur.saturating_sub(*hlc_behind),
            },
            cmd: KvCommand::Txn(TxnRequest {
                compare: compare.clone(),
                success: resolve_ops(success),
                failure: resolve_ops(failure),
            }),
        }),
        Step::Compact(rev) => {
            let revision = match rev {
                RevSel::Latest => cur,
                other => other.resolve(cur),
            };
            Ok(KvEntry {
                request_id: None,
                hlc: 0,
                cmd: KvCommand::Compact { revision },
            })
        }
        Step::Read(r) => Err(r.resolve(cur)),
        Step::Advance { ahead } => Ok(KvEntry {
            request_id: None,
            hlc: cur + ahead,
            cmd: KvCommand::Advance,
        }),
        Step::Revoke { lease, hlc_ahead } => Ok(KvEntry {
            request_id: None,
            hlc: cur + hlc_ahead,
            cmd: KvCommand::RevokeLease { lease: *lease },
        }),
    }
}

fn all_keys(revision: u64) -> RangeRequest {
    RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision,
        ..RangeRequest::default()
    }
}

/// Every readable revision must read the same from both.
fn check_history(state: &KvState, model: &Model) -> Result<(), TestCaseError> {
    for rev in model.compact.max(1)..=model.rev() {
        let want = model.read(&all_keys(rev), model.rev(), None);
        prop_assert_eq!(
            state.range(&all_keys(rev)).map_err(|e| e.code),
            want,
            "full read at {}",
            rev
        );
    }
    // The change feed: from every resumable revision, exactly the model's events.
    for after in model.compact..=model.rev() {
        let got = state
            .events_after(&[0], &[0], after, true, usize::MAX)
            .map(|b| b.events);
        prop_assert_eq!(got, model.events_after(after), "events after {}", after);
    }
    if model.compact > 0 {
        prop_assert_eq!(
            state
                .events_after(&[0], &[0], model.compact - 1, false, 10)
                .map(|b| b.events),
            Err(model.compact)
        );
    }
    if model.compact > 1 {
        let below = state
            .range(&all_keys(model.compact - 1))
            .map_err(|e| e.code);
        prop_assert_eq!(below, Err(ErrorCode::Compacted));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The store and the model agree on every response and error; a failed entry leaves the
    /// store exactly as it was.
    #[test]
    fn store_matches_model(steps in prop::collection::vec(step(), 1..60)) {
        let mut state = KvState::new();
        let mut model = Model::new();
        for (i, step) in steps.iter().enumerate() {
            match resolve(step, model.rev()) {
                Ok(entry) => {
                    let before = state.clone();
                    let got = state.apply(&entry).map_err(|e| e.code);
                    let want = model.apply(&entry);
                    prop_assert_eq!(&got, &want, "step {}: {:?}", i, entry);
                    if got.is_err() {
                        prop_assert_eq!(&state, &before, "step {}: a failed entry changed the state", i);
                    }
                    if matches!(entry.cmd, KvCommand::Compact { .. }) {
                        check_history(&state, &model)?;
                    }
                }
                Err(read) => {
                    let got = state.range(&read).map_err(|e| e.code);
                    prop_assert_eq!(got, model.read(&read, model.rev(), None), "step {}: {:?}", i, read);
                }
            }
            prop_assert_eq!(state.revision(), model.rev());
            prop_assert_eq!(state.compact_revision(), model.compact);
        }
        check_history(&state, &model)?;
    }

    /// A snapshot round-trips through postcard, a replica restored from a snapshot mid-log
    /// ends equal to one that applied the whole log, and so does a second replica.
    #[test]
    fn replicas_and_snapshots_agree(steps in prop::collection::vec(step(), 1..60), cut in 0usize..60) {
        let mut state = KvState::new();
        let mut log = Vec::new();
        for step in &steps {
            if let Ok(entry) = resolve(step, state.revision()) {
                let _ = state.apply(&entry);
                log.push(entry);
            }
        }
        let bytes = postcard::to_stdvec(&state).unwrap();
        let restored: KvState = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&restored, &state);

        let cut = cut.min(log.len());
        let mut replica = KvState::new();
        for entry in &log[..cut] {
            let _ = replica.apply(entry);
        }
        let mut replica: KvState = postcard::from_bytes(&postcard::to_stdvec(&replica).unwrap()).unwrap();
        let mut other = KvState::new();
        for entry in &log[..cut] {
            let _ = other.apply(entry);
        }
        for entry in &log[cut..] {
            prop_assert_eq!(replica.apply(entry), other.apply(entry));
        }
        prop_assert_eq!(&replica, &state);
        prop_assert_eq!(&other, &state);
        prop_assert_eq!(postcard::to_stdvec(&replica).unwrap(), bytes);
    }
}
