//! The lease table (etcd's lessor), held by the meta group: which leases exist, their TTLs, and
//! which are being revoked.
//!
//! Only the table is replicated. When a lease expires is decided by the meta leader alone, from
//! deadlines it keeps in memory (a keep-alive refreshes one there; no log write per keep-alive,
//! as in etcd; a new leader restarts every lease at its full TTL). An expiry is replicated as a
//! [`LeaseCommand::Revoke`] stamped with the leader's clock, so no replica ever expires a lease
//! on its own clock. A revoked lease stays in the table, `revoking`, until its keys are deleted
//! in every range ([`crate::KvCommand::RevokeLease`]); then [`LeaseCommand::Forget`] drops it.

use meridian_types::{ErrorCode, MeridianError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most leases a cluster holds at once: a bound on the table (and the meta snapshot).
pub const LEASES_MAX: usize = 100_000;
/// The longest TTL a lease may ask for (a year), in seconds: a bound on input.
pub const LEASE_TTL_MAX_S: i64 = 365 * 86_400;

/// One lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The TTL granted, in seconds.
    pub ttl_s: i64,
    /// The granting leader's clock when it was granted (milliseconds since the epoch).
    pub granted_ms: u64,
    /// Revoked (or expired) at this time by the leader's clock; its keys may still be being
    /// deleted range by range.
    pub revoked_ms: Option<u64>,
}

/// A command on the lease table, in the meta group's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseCommand {
    Grant {
        id: i64,
        ttl_s: i64,
        now_ms: u64,
    },
    /// Revokes a lease (a client's revoke or the leader's expiry), stamped with the leader's
    /// clock. Idempotent.
    Revoke {
        id: i64,
        now_ms: u64,
    },
    /// Drops a revoked lease once every range has deleted its keys. Idempotent.
    Forget {
        id: i64,
    },
}

/// The lease table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTable {
    leases: BTreeMap<i64, LeaseRecord>,
}

impl LeaseTable {
    /// Applies one command.
    pub fn apply(&mut self, cmd: &LeaseCommand) -> Result<(), MeridianError> {
        match *cmd {
            LeaseCommand::Grant { id, ttl_s, now_ms } => {
                if id <= 0 {
                    return Err(MeridianError::invalid(format!(
                        "lease id must be positive, not {id}"
                    )));
                }
                if !(1..=LEASE_TTL_MAX_S).contains(&ttl_s) {
                    return Err(MeridianError::invalid(format!(
                        "lease TTL {ttl_s} s is outside 1..={LEASE_TTL_MAX_S} s"
                    )));
                }
                if self.leases.contains_key(&id) {
                    return Err(MeridianError::invalid(format!(
                        "etcdserver: lease already exists ({id:x})"
                    )));
                }
                if self.leases.len() >= LEASES_MAX {
                    return Err(MeridianError::new(
                        ErrorCode::LimitTooLarge,
                        format!("the cluster holds {LEASES_MAX} leases, the most it may"),
                    ));
                }
                self.leases.insert(
                    id,
                    LeaseRecord {
                        ttl_s,
                        granted_ms: now_ms,
                        revoked_ms: None,
                    },
                );
                Ok(())
            }
            LeaseCommand::Revoke { id, now_ms } => match self.leases.get_mut(&id) {
                Some(l) => {
                    l.revoked_ms.get_or_insert(now_ms);
                    Ok(())
                }
                None => Err(lease_not_found(id)),
            },
            LeaseCommand::Forget { id } => {
                if self.leases.get(&id).is_some_and(|l| l.revoked_ms.is_some()) {
                    self.leases.remove(&id);
                }
                Ok(())
            }
        }
    }

    /// A lease that is alive (granted, not revoked).
    pub fn live(&self, id: i64) -> Option<&LeaseRecord> {
        self.leases.get(&id).filter(|l| l.revoked_ms.is_none())
    }

    /// Every live lease, by id.
    pub fn live_leases(&self) -> impl Iterator<Item = (i64, &LeaseRecord)> {
        self.leases
            .iter()
            .filter(|(_, l)| l.revoked_ms.is_none())
            .map(|(id, l)| (*id, l))
    }

    /// Leases revoked whose keys may not yet be deleted everywhere.
    pub fn revoking(&self) -> impl Iterator<Item = i64> + '_ {
        self.leases
            .iter()
            .filter(|(_, l)| l.revoked_ms.is_some())
            .map(|(id, _)| *id)
    }
}

/// The error for a lease that does not exist (etcd's `ErrLeaseNotFound`).
pub fn lease_not_found(id: i64) -> MeridianError {
    MeridianError::new(
        ErrorCode::LeaseNotFound,
        format!("lease {id:x} not found (never granted, expired or revoked)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_revoke_forget() {
        let mut t = LeaseTable::default();
        t.apply(&LeaseCommand::Grant {
            id: 7,
            ttl_s: 10,
            now_ms: 1,
        })
        .unwrap();
        assert!(t.live(7).is_some());
        // A second grant of the same id is refused; bad ids and TTLs too.
        for (id, ttl_s) in [(7, 10), (0, 10), (-1, 10), (8, 0), (8, LEASE_TTL_MAX_S + 1)] {
            assert!(
                t.apply(&LeaseCommand::Grant {
                    id,
                    ttl_s,
                    now_ms: 2
                })
                .is_err()
            );
        }
        // Forgetting a live lease does nothing: only a revoked one goes.
        t.apply(&LeaseCommand::Forget { id: 7 }).unwrap();
        assert!(t.live(7).is_some());
        t.apply(&LeaseCommand::Revoke { id: 7, now_ms: 5 }).unwrap();
        t.apply(&LeaseCommand::Revoke { id: 7, now_ms: 9 }).unwrap();
        assert!(t.live(7).is_none());
        assert_eq!(t.revoking().collect::<Vec<_>>(), vec![7]);
        assert_eq!(
            t.leases[&7].revoked_ms,
            Some(5),
            "the first revoke's time stays"
        );
        t.apply(&LeaseCommand::Forget { id: 7 }).unwrap();
        assert_eq!(t.revoking().count(), 0);
        assert_eq!(
            t.apply(&LeaseCommand::Revoke { id: 7, now_ms: 9 })
                .unwrap_err()
                .code,
            ErrorCode::LeaseNotFound
        );
    }
}
