//! Transaction execution: compares, then the ops of the chosen branch, atomically.
//!
//! The ops write straight into the store, so a later op in the same txn sees an earlier one's
//! effects (etcd's rule) without a second, merged view. All writes of one txn carry the txn's
//! revision, newer than anything stored, which makes a rollback cheap and exact: cut every
//! touched key's history back to the versions older than that revision.

use super::history::{KeyHistory, Live};
use super::{KvState, key_bounds, require_key};
use crate::kv_types::*;
use meridian_types::{ErrorCode, MeridianError};
use std::cmp::Ordering;

/// The bookkeeping of one txn while its ops run.
struct TxnCtx {
    /// The store's revision before the txn.
    begin: u64,
    /// The revision this txn's writes get, `max(begin + 1, hlc)`; `None` if `begin` is the
    /// largest revision there is, so a write must fail rather than wrap around.
    rev: Option<u64>,
    /// Whether an op has written, so the txn takes `rev` as the store's revision.
    wrote: bool,
    /// The keys written so far, for the rollback (repeats are harmless: it is idempotent).
    touched: Vec<Vec<u8>>,
}

impl TxnCtx {
    /// The store's revision as an op of this txn sees it.
    fn current(&self) -> u64 {
        match self.rev {
            Some(rev) if self.wrote => rev,
            _ => self.begin,
        }
    }

    /// The revision for a write, which makes the txn a writing one.
    fn write_rev(&mut self) -> Result<u64, MeridianError> {
        let rev = self
            .rev
            .ok_or_else(|| MeridianError::internal("revision space exhausted"))?;
        self.wrote = true;
        Ok(rev)
    }
}

/// Whether `actual <op> wanted`.
fn holds(actual: Ordering, op: CompareOp) -> bool {
    match op {
        CompareOp::Equal => actual == Ordering::Equal,
        CompareOp::NotEqual => actual != Ordering::Equal,
        CompareOp::Greater => actual == Ordering::Greater,
        CompareOp::Less => actual == Ordering::Less,
    }
}

/// Compares one key's state; `None` is a missing key, which has version 0, create and mod
/// revision 0 and lease 0. A value compare on a missing key always fails, whatever the operator
/// (etcd's rule: gRPC cannot tell a missing value from an empty one).
fn compare_one(state: Option<(u64, &Live)>, op: CompareOp, target: &CompareTarget) -> bool {
    let ordering = match (target, state) {
        (CompareTarget::Value(v), Some((_, l))) => l.value.as_slice().cmp(v.as_slice()),
        (CompareTarget::Value(_), None) => return false,
        (CompareTarget::Version(v), s) => s.map_or(0, |(_, l)| l.version).cmp(v),
        (CompareTarget::CreateRevision(v), s) => s.map_or(0, |(_, l)| l.create_revision).cmp(v),
        (CompareTarget::ModRevision(v), s) => s.map_or(0, |(m, _)| m).cmp(v),
        (CompareTarget::Lease(v), s) => s.map_or(0, |(_, l)| l.lease).cmp(v),
    };
    holds(ordering, op)
}

impl KvState {
    /// Runs a txn: compares against the state before it, then the chosen branch in order.
    /// The first op that fails fails the txn, and its earlier writes are rolled back; so the
    /// error is the one a sequential run would meet first, whatever kind it is.
    pub(super) fn apply_txn(
        &mut self,
        req: &TxnRequest,
        hlc: u64,
    ) -> Result<TxnResponse, MeridianError> {
        let succeeded = req.compare.iter().all(|c| self.compare_holds(c));
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut ctx = TxnCtx {
            begin: self.revision,
            rev: self.revision.checked_add(1).map(|next| next.max(hlc)),
            wrote: false,
            touched: Vec::new(),
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            match self.exec_op(op, &mut ctx) {
                Ok(resp) => responses.push(resp),
                Err(e) => {
                    self.rollback(&ctx);
                    return Err(e);
                }
            }
        }
        self.revision = ctx.current();
        // Every response of the txn reports the revision the txn leaves the store at.
        for resp in &mut responses {
            match resp {
                ResponseOp::Range(r) => r.revision = self.revision,
                ResponseOp::Put(p) => p.revision = self.revision,
                ResponseOp::DeleteRange(d) => d.revision = self.revision,
            }
        }
        Ok(TxnResponse {
            succeeded,
            responses,
            revision: self.revision,
        })
    }

    /// etcd's compare: with a `range_end`, every live key of the range must satisfy it; a
    /// range with no live key is compared as one missing key.
    pub(crate) fn compare_holds(&self, c: &Compare) -> bool {
        let mut live = self
            .scan(&c.key, &c.range_end)
            .filter_map(|(_, h)| h.latest_live())
            .peekable();
        if live.peek().is_none() {
            return compare_one(None, c.op, &c.target);
        }
        live.all(|s| compare_one(Some(s), c.op, &c.target))
    }

    fn exec_op(&mut self, op: &RequestOp, ctx: &mut TxnCtx) -> Result<ResponseOp, MeridianError> {
        Ok(match op {
            RequestOp::Range(r) => ResponseOp::Range(self.read_range(r, ctx.current())?),
            RequestOp::Put(p) => ResponseOp::Put(self.exec_put(p, ctx)?),
            RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.exec_delete(d, ctx)?),
        })
    }

    fn exec_put(
        &mut self,
        req: &PutRequest,
        ctx: &mut TxnCtx,
    ) -> Result<PutResponse, MeridianError> {
        require_key(&req.key)?;
        let (lease, value) = if req.ignore_lease || req.ignore_value {
            let current = self
                .keys
                .get(req.key.as_slice())
                .and_then(|h| h.latest_live())
                .map(|(_, l)| (l.lease, l.value.clone()));
            // etcd: keeping the lease or the value of a key that does not exist is an error.
            let Some((cur_lease, cur_value)) = current else {
                return Err(MeridianError::new(
                    ErrorCode::KeyNotFound,
                    "etcdserver: key not found (put with ignore_lease or ignore_value)",
                ));
            };
            (
                if req.ignore_lease {
                    cur_lease
                } else {
                    req.lease
                },
                if req.ignore_value {
                    cur_value
                } else {
                    req.value.clone()
                },
            )
        } else {
            (req.lease, req.value.clone())
        };
        if lease != 0 && self.lease_revoked(lease) {
            return Err(super::leases::lease_not_found(lease));
        }
        let rev = ctx.write_rev()?;
        ctx.touched.push(req.key.clone());
        let mut prev_kv = None;
        match self.keys.get_mut(req.key.as_slice()) {
            Some(hist) => {
                if req.prev_kv {
                    prev_kv = hist.latest_live().map(|(m, l)| l.to_kv(&req.key, m, true));
                }
                hist.put(rev, value, lease);
            }
            None => {
                let mut hist = KeyHistory::default();
                hist.put(rev, value, lease);
                self.keys.insert(req.key.clone(), hist);
            }
        }
        Ok(PutResponse {
            prev_kv,
            revision: 0,
        })
    }

    /// Deletes the live keys of the range. Deleting nothing is not a write: it takes no
    /// revision (etcd's rule).
    fn exec_delete(
        &mut self,
        req: &DeleteRangeRequest,
        ctx: &mut TxnCtx,
    ) -> Result<DeleteRangeResponse, MeridianError> {
        require_key(&req.key)?;
        let mut resp = DeleteRangeResponse::default();
        let Some(bounds) = key_bounds(&req.key, &req.range_end) else {
            return Ok(resp);
        };
        let mut emptied = Vec::new();
        for (key, hist) in self.keys.range_mut::<[u8], _>(bounds) {
            let Some((mod_revision, live)) = hist.latest_live() else {
                continue;
            };
            if req.prev_kv {
                resp.prev_kvs.push(live.to_kv(key, mod_revision, true));
            }
            let rev = ctx.write_rev()?;
            hist.delete(rev);
            resp.deleted += 1;
            ctx.touched.push(key.clone());
            if hist.is_empty() {
                emptied.push(key.clone());
            }
        }
        // Only a key this txn created can end up with no versions; drop it like it never was.
        for key in emptied {
            self.keys.remove(&key);
        }
        Ok(resp)
    }

    /// Undoes the writes of a failed txn: every version it wrote is at `ctx.rev`, newer than
    /// anything that was there, so cutting them off restores each key exactly.
    fn rollback(&mut self, ctx: &TxnCtx) {
        let Some(rev) = ctx.rev else {
            return;
        };
        for key in &ctx.touched {
            if let Some(hist) = self.keys.get_mut(key) {
                hist.truncate_from(rev);
                if hist.is_empty() {
                    self.keys.remove(key);
                }
            }
        }
    }
}
