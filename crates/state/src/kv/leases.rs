//! A range's part of leases: which keys a lease holds here, and revoking it here.
//!
//! The lease table itself lives in the meta group (`crate::lease`); a range only records each
//! key's lease id (etcd's `KeyValue.lease`) and the leases it has revoked, so that a put racing a
//! revoke is refused at apply time instead of leaving an orphan key.

use super::KvState;
use crate::kv_types::*;
use meridian_types::{ErrorCode, MeridianError};

/// The error of a put with a lease this range has revoked (or that never existed).
pub(crate) fn lease_not_found(lease: i64) -> MeridianError {
    MeridianError::new(
        ErrorCode::LeaseNotFound,
        format!("lease {lease:x} not found (expired or revoked)"),
    )
}

impl KvState {
    /// The live keys attached to `lease`, in key order.
    pub fn keys_with_lease(&self, lease: i64) -> Vec<Vec<u8>> {
        self.keys
            .iter()
            .filter(|(_, h)| h.latest_live().is_some_and(|(_, l)| l.lease == lease))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether this range has revoked `lease`.
    pub fn lease_revoked(&self, lease: i64) -> bool {
        self.revoked_leases.contains(&lease)
    }

    /// Deletes every key attached to `lease` in one revision and remembers the lease as revoked.
    /// Idempotent: a second revoke finds no key and writes nothing.
    pub(super) fn revoke_lease(&mut self, lease: i64, hlc: u64) -> Result<u64, MeridianError> {
        if lease == 0 {
            return Err(MeridianError::invalid("lease 0 is no lease"));
        }
        let keys = self.keys_with_lease(lease);
        self.revoked_leases.insert(lease);
        if keys.is_empty() {
            return Ok(0);
        }
        let req = TxnRequest {
            compare: vec![],
            success: keys
                .into_iter()
                .map(|key| {
                    RequestOp::DeleteRange(DeleteRangeRequest {
                        key,
                        range_end: vec![],
                        prev_kv: false,
                    })
                })
                .collect(),
            failure: vec![],
        };
        let resp = self.apply_txn(&req, hlc)?;
        Ok(resp
            .responses
            .iter()
            .map(|r| match r {
                ResponseOp::DeleteRange(d) => d.deleted,
                _ => 0,
            })
            .sum())
    }
}
