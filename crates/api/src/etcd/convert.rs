//! Conversions between etcd's protobuf messages and Meridian's key-value requests.
//!
//! etcd counts revisions, versions and limits in `i64`; Meridian in `u64`. Negative numbers from
//! a client are `invalid_argument`; a Meridian number over `i64::MAX` (not reachable in
//! practice) saturates.

use meridian_proto::etcd::{etcdserverpb as pb, mvccpb};
use meridian_state::{
    Compare, CompareOp, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyValue,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, TxnRequest,
    TxnResponse,
};
use meridian_types::MeridianError;
use pb::compare::{CompareResult, CompareTarget as PbTarget, TargetUnion};
use pb::range_request::{SortOrder, SortTarget};
use pb::request_op::Request;
use pb::response_op::Response;

/// A Meridian counter as etcd's `int64`.
pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An etcd `int64` that must not be negative.
pub fn to_u64(field: &str, v: i64) -> Result<u64, MeridianError> {
    u64::try_from(v).map_err(|_| MeridianError::invalid(format!("{field} is negative ({v})")))
}

/// The `ResponseHeader` every etcd answer carries.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderInfo {
    pub cluster_id: u64,
    pub member_id: u64,
}

impl HeaderInfo {
    pub fn header(self, revision: u64, raft_term: u64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision: to_i64(revision),
            raft_term,
        }
    }
}

pub fn kv_to_pb(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: to_i64(kv.create_revision),
        mod_revision: to_i64(kv.mod_revision),
        version: to_i64(kv.version),
        value: kv.value,
        lease: kv.lease,
    }
}

fn require_key(key: &[u8]) -> Result<(), MeridianError> {
    if key.is_empty() {
        return Err(MeridianError::invalid("key is not provided"));
    }
    Ok(())
}

/// What a range read asks beyond Meridian's plain key-ordered read: a sort other than by key
/// ascending and revision filters. Served by reading the whole range and reordering it here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeExtras {
    /// `None`: key order as read.
    pub sort: Option<(SortTarget, SortOrder)>,
    pub min_mod_revision: u64,
    pub max_mod_revision: u64,
    pub min_create_revision: u64,
    pub max_create_revision: u64,
    /// The client's `limit`, applied after sorting and filtering; 0 means none.
    pub limit: u64,
}

impl RangeExtras {
    fn of(r: &pb::RangeRequest) -> Result<Self, MeridianError> {
        let order = SortOrder::try_from(r.sort_order)
            .map_err(|_| MeridianError::invalid(format!("unknown sort_order {}", r.sort_order)))?;
        let target = SortTarget::try_from(r.sort_target).map_err(|_| {
            MeridianError::invalid(format!("unknown sort_target {}", r.sort_target))
        })?;
        // etcd: results are in key order already; any other target without an order means
        // ascending by that target.
        let sort = match (target, order) {
            (SortTarget::Key, SortOrder::None | SortOrder::Ascend) => None,
            (target, SortOrder::None) => Some((target, SortOrder::Ascend)),
            (target, order) => Some((target, order)),
        };
        Ok(Self {
            sort,
            min_mod_revision: to_u64("min_mod_revision", r.min_mod_revision)?,
            max_mod_revision: to_u64("max_mod_revision", r.max_mod_revision)?,
            min_create_revision: to_u64("min_create_revision", r.min_create_revision)?,
            max_create_revision: to_u64("max_create_revision", r.max_create_revision)?,
            limit: to_u64("limit", r.limit)?,
        })
    }

    /// Whether the read needs the whole range and work here.
    pub fn is_plain(&self) -> bool {
        self.sort.is_none()
            && self.min_mod_revision == 0
            && self.max_mod_revision == 0
            && self.min_create_revision == 0
            && self.max_create_revision == 0
    }

    /// Filters, sorts and truncates a complete read as etcd does. `count` stays the number of
    /// keys in the range before filtering (etcd's rule).
    pub fn apply(&self, resp: &mut RangeResponse) {
        let keep = |kv: &KeyValue| {
            (self.min_mod_revision == 0 || kv.mod_revision >= self.min_mod_revision)
                && (self.max_mod_revision == 0 || kv.mod_revision <= self.max_mod_revision)
                && (self.min_create_revision == 0 || kv.create_revision >= self.min_create_revision)
                && (self.max_create_revision == 0 || kv.create_revision <= self.max_create_revision)
        };
        resp.kvs.retain(keep);
        if let Some((target, order)) = self.sort {
            resp.kvs.sort_by(|a, b| {
                let ord = match target {
                    SortTarget::Key => a.key.cmp(&b.key),
                    SortTarget::Version => a.version.cmp(&b.version),
                    SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                    SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                    SortTarget::Value => a.value.cmp(&b.value),
                };
                if order == SortOrder::Descend {
                    ord.reverse()
                } else {
                    ord
                }
            });
        }
        resp.more = false;
        if let Ok(limit) = usize::try_from(self.limit)
            && limit > 0
            && resp.kvs.len() > limit
        {
            resp.kvs.truncate(limit);
            resp.more = true;
        }
    }
}

/// A range read: the Meridian request, whether it is `serializable`, and what is left to do
/// here. With extras, the request reads the whole range (no limit).
pub fn range_from_pb(
    r: pb::RangeRequest,
) -> Result<(RangeRequest, bool, RangeExtras), MeridianError> {
    require_key(&r.key)?;
    let extras = RangeExtras::of(&r)?;
    let limit = if extras.is_plain() { extras.limit } else { 0 };
    let req = RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit,
        revision: to_u64("revision", r.revision)?,
        keys_only: r.keys_only,
        count_only: r.count_only,
    };
    Ok((req, r.serializable, extras))
}

pub fn range_to_pb(
    mut resp: RangeResponse,
    keys_only: bool,
    count_only: bool,
    h: HeaderInfo,
) -> pb::RangeResponse {
    if count_only {
        resp.kvs.clear();
    }
    if keys_only {
        resp.kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    pb::RangeResponse {
        header: Some(h.header(resp.revision, 0)),
        kvs: resp.kvs.into_iter().map(kv_to_pb).collect(),
        more: resp.more,
        count: to_i64(resp.count),
    }
}

pub fn put_from_pb(r: pb::PutRequest) -> Result<PutRequest, MeridianError> {
    require_key(&r.key)?;
    Ok(PutRequest {
        key: r.key,
        value: r.value,
        prev_kv: r.prev_kv,
        lease: r.lease,
        ignore_lease: r.ignore_lease,
        ignore_value: r.ignore_value,
    })
}

pub fn put_to_pb(resp: PutResponse, h: HeaderInfo) -> pb::PutResponse {
    pb::PutResponse {
        header: Some(h.header(resp.revision, 0)),
        prev_kv: resp.prev_kv.map(kv_to_pb),
    }
}

pub fn delete_from_pb(r: pb::DeleteRangeRequest) -> Result<DeleteRangeRequest, MeridianError> {
    require_key(&r.key)?;
    Ok(DeleteRangeRequest {
        key: r.key,
        range_end: r.range_end,
        prev_kv: r.prev_kv,
    })
}

pub fn delete_to_pb(resp: DeleteRangeResponse, h: HeaderInfo) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: Some(h.header(resp.revision, 0)),
        deleted: to_i64(resp.deleted),
        prev_kvs: resp.prev_kvs.into_iter().map(kv_to_pb).collect(),
    }
}

/// A compare reads the field its `target` names; a missing value is the zero value (etcd's
/// rule), a value of another kind is invalid.
pub fn compare_from_pb(c: pb::Compare) -> Result<Compare, MeridianError> {
    require_key(&c.key)?;
    let op = match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => CompareOp::Equal,
        Ok(CompareResult::NotEqual) => CompareOp::NotEqual,
        Ok(CompareResult::Greater) => CompareOp::Greater,
        Ok(CompareResult::Less) => CompareOp::Less,
        Err(_) => {
            return Err(MeridianError::invalid(format!(
                "unknown compare result {}",
                c.result
            )));
        }
    };
    let mismatch = || MeridianError::invalid("compare target and target value differ in kind");
    let target = match PbTarget::try_from(c.target) {
        Ok(PbTarget::Value) => match c.target_union {
            Some(TargetUnion::Value(v)) => CompareTarget::Value(v),
            None => CompareTarget::Value(Vec::new()),
            Some(_) => return Err(mismatch()),
        },
        Ok(PbTarget::Version) => match c.target_union {
            Some(TargetUnion::Version(v)) => CompareTarget::Version(to_u64("compare version", v)?),
            None => CompareTarget::Version(0),
            Some(_) => return Err(mismatch()),
        },
        Ok(PbTarget::Create) => match c.target_union {
            Some(TargetUnion::CreateRevision(v)) => {
                CompareTarget::CreateRevision(to_u64("compare create_revision", v)?)
            }
            None => CompareTarget::CreateRevision(0),
            Some(_) => return Err(mismatch()),
        },
        Ok(PbTarget::Mod) => match c.target_union {
            Some(TargetUnion::ModRevision(v)) => {
                CompareTarget::ModRevision(to_u64("compare mod_revision", v)?)
            }
            None => CompareTarget::ModRevision(0),
            Some(_) => return Err(mismatch()),
        },
        Ok(PbTarget::Lease) => match c.target_union {
            Some(TargetUnion::Lease(v)) => CompareTarget::Lease(v),
            None => CompareTarget::Lease(0),
            Some(_) => return Err(mismatch()),
        },
        Err(_) => {
            return Err(MeridianError::invalid(format!(
                "unknown compare target {}",
                c.target
            )));
        }
    };
    Ok(Compare {
        key: c.key,
        range_end: c.range_end,
        op,
        target,
    })
}

/// An op of a txn, with the sort and filters of a range op (done here on its whole answer).
fn request_op_from_pb(op: pb::RequestOp) -> Result<(RequestOp, RangeExtras), MeridianError> {
    let plain = RangeExtras {
        sort: None,
        min_mod_revision: 0,
        max_mod_revision: 0,
        min_create_revision: 0,
        max_create_revision: 0,
        limit: 0,
    };
    let op = match op.request {
        Some(Request::RequestRange(r)) => {
            let (req, _serializable, extras) = range_from_pb(r)?;
            return Ok((RequestOp::Range(req), extras));
        }
        Some(Request::RequestPut(p)) => RequestOp::Put(put_from_pb(p)?),
        Some(Request::RequestDeleteRange(d)) => RequestOp::DeleteRange(delete_from_pb(d)?),
        Some(Request::RequestTxn(_)) => {
            return Err(MeridianError::invalid(
                "unsupported: nested txn inside a txn",
            ));
        }
        None => return Err(MeridianError::invalid("txn request op is empty")),
    };
    Ok((op, plain))
}

/// What is left to do on the range answers of a txn's branches (sorts, revision filters,
/// limits after sorting), per op.
#[derive(Clone, Debug, Default)]
pub struct TxnExtras {
    pub success: Vec<RangeExtras>,
    pub failure: Vec<RangeExtras>,
}

pub fn txn_from_pb(t: pb::TxnRequest) -> Result<TxnRequest, MeridianError> {
    txn_from_pb_with_extras(t).map(|(t, _)| t)
}

/// A txn and the work left on its range answers (etcd's lock and election recipes read
/// `sort by create revision, limit 1` inside a txn).
pub fn txn_from_pb_with_extras(
    t: pb::TxnRequest,
) -> Result<(TxnRequest, TxnExtras), MeridianError> {
    let ops = |ops: Vec<pb::RequestOp>| {
        ops.into_iter()
            .map(request_op_from_pb)
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.into_iter().unzip::<_, _, Vec<_>, Vec<_>>())
    };
    let (success, s_extras) = ops(t.success)?;
    let (failure, f_extras) = ops(t.failure)?;
    Ok((
        TxnRequest {
            compare: t
                .compare
                .into_iter()
                .map(compare_from_pb)
                .collect::<Result<_, _>>()?,
            success,
            failure,
        },
        TxnExtras {
            success: s_extras,
            failure: f_extras,
        },
    ))
}

/// The answer of a txn. `ran` are the ops of the branch that ran, to shape range answers.
pub fn txn_to_pb(resp: TxnResponse, ran: &[RequestOp], h: HeaderInfo) -> pb::TxnResponse {
    let responses = resp
        .responses
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            let response = match op {
                ResponseOp::Range(r) => {
                    let (keys_only, count_only) = match ran.get(i) {
                        Some(RequestOp::Range(req)) => (req.keys_only, req.count_only),
                        _ => (false, false),
                    };
                    Response::ResponseRange(range_to_pb(r, keys_only, count_only, h))
                }
                ResponseOp::Put(p) => Response::ResponsePut(put_to_pb(p, h)),
                ResponseOp::DeleteRange(d) => Response::ResponseDeleteRange(delete_to_pb(d, h)),
            };
            pb::ResponseOp {
                response: Some(response),
            }
        })
        .collect();
    pb::TxnResponse {
        header: Some(h.header(resp.revision, 0)),
        succeeded: resp.succeeded,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, create: u64, modr: u64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: create,
            mod_revision: modr,
            version: 1,
            lease: 0,
        }
    }

    fn range(order: SortOrder, target: SortTarget, limit: i64) -> pb::RangeRequest {
        pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            limit,
            sort_order: order as i32,
            sort_target: target as i32,
            ..Default::default()
        }
    }

    #[test]
    fn key_ascending_is_plain_and_keeps_the_limit() {
        for order in [SortOrder::None, SortOrder::Ascend] {
            let (req, _, extras) = range_from_pb(range(order, SortTarget::Key, 5)).unwrap();
            assert!(extras.is_plain());
            assert_eq!(req.limit, 5);
        }
    }

    #[test]
    fn other_sorts_read_everything_then_sort_and_cut() {
        let (req, _, extras) =
            range_from_pb(range(SortOrder::Descend, SortTarget::Mod, 2)).unwrap();
        assert_eq!(req.limit, 0);
        let mut resp = RangeResponse {
            kvs: vec![kv("a", "1", 1, 5), kv("b", "2", 2, 9), kv("c", "3", 3, 7)],
            more: false,
            count: 3,
            revision: 9,
        };
        extras.apply(&mut resp);
        let keys: Vec<_> = resp.kvs.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(keys, vec![b"b".to_vec(), b"c".to_vec()]);
        assert!(resp.more);
        assert_eq!(resp.count, 3);
    }

    #[test]
    fn revision_filters_prune() {
        let mut r = range(SortOrder::None, SortTarget::Key, 0);
        r.min_create_revision = 2;
        let (_, _, extras) = range_from_pb(r).unwrap();
        let mut resp = RangeResponse {
            kvs: vec![kv("a", "1", 1, 5), kv("b", "2", 2, 9)],
            more: false,
            count: 2,
            revision: 9,
        };
        extras.apply(&mut resp);
        assert_eq!(resp.kvs.len(), 1);
        assert_eq!(resp.kvs[0].key, b"b");
    }

    #[test]
    fn bad_ranges_are_invalid() {
        let mut r = range(SortOrder::None, SortTarget::Key, -1);
        assert!(range_from_pb(r.clone()).is_err());
        r.limit = 0;
        r.sort_order = 42;
        assert!(range_from_pb(r.clone()).is_err());
        r.sort_order = 0;
        r.key.clear();
        assert!(range_from_pb(r).is_err());
    }

    #[test]
    fn compares_map_by_target() {
        let c = pb::Compare {
            result: CompareResult::Less as i32,
            target: PbTarget::Mod as i32,
            key: b"k".to_vec(),
            range_end: vec![],
            target_union: Some(TargetUnion::ModRevision(7)),
        };
        let got = compare_from_pb(c.clone()).unwrap();
        assert_eq!(got.op, CompareOp::Less);
        assert_eq!(got.target, CompareTarget::ModRevision(7));
        let missing = pb::Compare {
            target_union: None,
            ..c.clone()
        };
        assert_eq!(
            compare_from_pb(missing).unwrap().target,
            CompareTarget::ModRevision(0)
        );
        let mismatched = pb::Compare {
            target_union: Some(TargetUnion::Value(b"x".to_vec())),
            ..c
        };
        assert!(compare_from_pb(mismatched).is_err());
    }

    #[test]
    fn nested_txn_is_unsupported_and_ignore_flags_pass() {
        let nested = pb::TxnRequest {
            success: vec![pb::RequestOp {
                request: Some(Request::RequestTxn(pb::TxnRequest::default())),
            }],
            ..Default::default()
        };
        let err = txn_from_pb(nested).unwrap_err();
        assert!(err.message.contains("unsupported"));
        let put = pb::PutRequest {
            key: b"k".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        let put = put_from_pb(put).unwrap();
        assert!(put.ignore_value && !put.ignore_lease);
    }
}
