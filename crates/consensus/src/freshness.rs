//! Follower freshness: how a replica that is not the leader proves how far behind it may be,
//! with no assumption on clock offsets between nodes.
//!
//! The proof rides on AppendEntries (heartbeats included) in both directions:
//!
//! 1. A follower answers every AppendEntries with an [`Echo`]: the time it handled the request on
//!    its own monotonic clock (`received_us`), tagged with a random incarnation of its replica.
//! 2. The leader keeps the last few echoes per follower with the time each reply *arrived*
//!    (`arrived`, leader's monotonic clock). On each later AppendEntries to that follower it looks
//!    at one consistent metrics snapshot of its group: it must lead, have committed an entry it
//!    proposed in its term (so its commit index covers every earlier leader's acknowledged
//!    writes), and
//!    have a quorum acknowledgement of a request sent at `quorum_acked`. It picks the newest echo
//!    with `arrived <= quorum_acked` and sends a [`Proof`] `(received_us, commit_index)`.
//! 3. The follower keeps the last few proofs. Once its applied index reaches a proof's
//!    `commit_index`, its state holds every write acknowledged before `received_us` on its own
//!    clock, so its staleness is at most `now - received_us`.
//!
//! Why it holds: the follower stamped `received_us` before it replied, so in real time
//! `received <= arrived <= quorum_acked`. A leader of a newer term needs votes from a quorum,
//! which intersects the quorum that accepted this leader's request after `quorum_acked`, so it is
//! elected — and acknowledges writes — only after `quorum_acked`. Writes of this leader and of
//! older terms acknowledged before then are committed, hence at or below the commit index read
//! in the same snapshot (taken after `quorum_acked`). Each clock is only compared with itself;
//! the one assumption is that a monotonic clock does not run fast by more than a tiny rate drift.

use openraft::ServerState;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// Proofs (and echoes) kept per follower: enough to find one whose commit index the follower
/// has applied while writes stream in, small enough to scan on every message.
const KEPT_MAX: usize = 8;

/// A follower's answer stamp on one AppendEntries.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Echo {
    /// Random per opening of the replica, so a proof meant for an earlier incarnation (whose
    /// clock epoch differs) is never taken for a fresh one.
    pub incarnation: u64,
    /// When the follower handled the request, in microseconds since its replica opened.
    pub received_us: u64,
}

/// A leader's statement to one follower: every write acknowledged before `received_us` (the
/// follower's clock) is at or below `commit_index`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Proof {
    pub incarnation: u64,
    pub received_us: u64,
    pub commit_index: u64,
}

/// A random incarnation for a replica being opened. From the OS-seeded hasher keys rather than
/// `meridian_types::rng`, so opening a group draws nothing from a simulation's seeded stream
/// (which would shift every later draw); its value changes no decision, only whether two
/// incarnations are equal. The top bit is set so it always encodes to the same length.
pub(crate) fn new_incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish() | (1 << 63)
}

/// The follower side: this replica's clock epoch, incarnation and the proofs received.
pub(crate) struct FollowerFreshness {
    incarnation: u64,
    epoch: Instant,
    proofs: parking_lot::Mutex<VecDeque<Proof>>,
}

impl FollowerFreshness {
    pub(crate) fn new(incarnation: u64) -> Self {
        Self {
            incarnation,
            epoch: Instant::now(),
            proofs: parking_lot::Mutex::new(VecDeque::new()),
        }
    }

    fn now_us(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_micros()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// The stamp to put on a reply.
    pub(crate) fn echo(&self) -> Echo {
        Echo {
            incarnation: self.incarnation,
            received_us: self.now_us(),
        }
    }

    /// Keeps a proof from the leader; proofs of another incarnation are dropped.
    pub(crate) fn record(&self, p: Proof) {
        if p.incarnation != self.incarnation || p.received_us > self.now_us() {
            return;
        }
        let mut proofs = self.proofs.lock();
        if proofs.iter().any(|q| q == &p) {
            return;
        }
        proofs.push_back(p);
        while proofs.len() > KEPT_MAX {
            proofs.pop_front();
        }
    }

    /// The most this replica's state may be behind, given its applied index; `None` when no
    /// proof is covered by what it has applied.
    pub(crate) fn staleness(&self, applied_index: u64) -> Option<Duration> {
        let now = self.now_us();
        let proofs = self.proofs.lock();
        staleness_from(&proofs, applied_index, now)
    }
}

/// The tightest bound among `proofs` whose commit index is applied.
fn staleness_from(proofs: &VecDeque<Proof>, applied_index: u64, now_us: u64) -> Option<Duration> {
    proofs
        .iter()
        .filter(|p| p.commit_index <= applied_index)
        .map(|p| p.received_us)
        .max()
        .map(|since| Duration::from_micros(now_us.saturating_sub(since)))
}

/// What a leader's metrics say, read from one consistent snapshot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeaderSnapshot {
    /// This node.
    pub me: u64,
    pub state: ServerState,
    pub current_term: u64,
    /// `(term, proposing node, index)` of the last committed entry (openraft's default leader
    /// ids are `(term, node)`: several nodes may lead one term, one after the other).
    pub committed: Option<(u64, u64, u64)>,
    pub quorum_acked: Option<Instant>,
}

/// A follower's last echoes, each with when its reply arrived (leader's clock), oldest first.
type EchoLog = VecDeque<(Instant, Echo)>;

/// The leader side: the last echoes of each (group, follower).
#[derive(Default)]
pub(crate) struct LeaderEchoes<G> {
    echoes: parking_lot::Mutex<HashMap<(G, u64), EchoLog>>,
}

impl<G: std::hash::Hash + Eq + Copy> LeaderEchoes<G> {
    pub(crate) fn record(&self, group: G, target: u64, arrived: Instant, echo: Echo) {
        let mut all = self.echoes.lock();
        let q = all.entry((group, target)).or_default();
        if q.back()
            .is_some_and(|(_, e)| e.incarnation != echo.incarnation)
        {
            q.clear();
        }
        q.push_back((arrived, echo));
        while q.len() > KEPT_MAX {
            q.pop_front();
        }
    }

    /// The proof to attach to the next AppendEntries to `target`, if the snapshot allows one.
    pub(crate) fn proof(&self, group: G, target: u64, s: &LeaderSnapshot) -> Option<Proof> {
        let all = self.echoes.lock();
        proof_from(all.get(&(group, target))?, s)
    }

    pub(crate) fn forget_group(&self, group: G) {
        self.echoes.lock().retain(|(g, _), _| *g != group);
    }
}

fn proof_from(echoes: &EchoLog, s: &LeaderSnapshot) -> Option<Proof> {
    if s.state != ServerState::Leader {
        return None;
    }
    let (term, proposer, commit_index) = s.committed?;
    if term != s.current_term || proposer != s.me {
        // Until an entry of its own leadership is committed, a new leader's commit index may
        // not cover the writes earlier leaders acknowledged.
        return None;
    }
    let acked = s.quorum_acked?;
    let (_, echo) = echoes.iter().rev().find(|(arrived, _)| *arrived <= acked)?;
    Some(Proof {
        incarnation: echo.incarnation,
        received_us: echo.received_us,
        commit_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(
        state: ServerState,
        term: u64,
        committed: Option<(u64, u64, u64)>,
        acked: Option<Instant>,
    ) -> LeaderSnapshot {
        LeaderSnapshot {
            me: 1,
            state,
            current_term: term,
            committed,
            quorum_acked: acked,
        }
    }

    #[test]
    fn leader_proves_only_echoes_older_than_its_quorum_ack() {
        let t0 = Instant::now();
        let mut q = VecDeque::new();
        q.push_back((
            t0,
            Echo {
                incarnation: 7,
                received_us: 10,
            },
        ));
        q.push_back((
            t0 + Duration::from_millis(100),
            Echo {
                incarnation: 7,
                received_us: 20,
            },
        ));
        let ok = snap(
            ServerState::Leader,
            3,
            Some((3, 1, 50)),
            Some(t0 + Duration::from_millis(50)),
        );
        assert_eq!(
            proof_from(&q, &ok),
            Some(Proof {
                incarnation: 7,
                received_us: 10,
                commit_index: 50
            })
        );
        let later = LeaderSnapshot {
            quorum_acked: Some(t0 + Duration::from_millis(100)),
            ..ok
        };
        assert_eq!(proof_from(&q, &later).map(|p| p.received_us), Some(20));
        let before_all = LeaderSnapshot {
            quorum_acked: Some(t0 - Duration::from_millis(1)),
            ..ok
        };
        assert_eq!(proof_from(&q, &before_all), None);
        // Not leader, no entry of its own term committed yet, no quorum ack: no proof.
        assert_eq!(
            proof_from(
                &q,
                &LeaderSnapshot {
                    state: ServerState::Follower,
                    ..ok
                }
            ),
            None
        );
        assert_eq!(
            proof_from(
                &q,
                &LeaderSnapshot {
                    committed: Some((2, 1, 50)),
                    ..ok
                }
            ),
            None
        );
        // An entry of this term, but proposed by the node that led it before this one.
        assert_eq!(
            proof_from(
                &q,
                &LeaderSnapshot {
                    committed: Some((3, 2, 50)),
                    ..ok
                }
            ),
            None
        );
        assert_eq!(
            proof_from(
                &q,
                &LeaderSnapshot {
                    quorum_acked: None,
                    ..ok
                }
            ),
            None
        );
    }

    #[test]
    fn incarnations_differ() {
        assert_ne!(new_incarnation(), new_incarnation());
        assert!(new_incarnation() >= 1 << 63);
    }

    #[test]
    fn follower_uses_the_newest_proof_it_has_applied() {
        let mut proofs = VecDeque::new();
        proofs.push_back(Proof {
            incarnation: 1,
            received_us: 1_000,
            commit_index: 5,
        });
        proofs.push_back(Proof {
            incarnation: 1,
            received_us: 2_000,
            commit_index: 9,
        });
        assert_eq!(staleness_from(&proofs, 4, 3_000), None);
        assert_eq!(
            staleness_from(&proofs, 5, 3_000),
            Some(Duration::from_micros(2_000))
        );
        assert_eq!(
            staleness_from(&proofs, 9, 3_000),
            Some(Duration::from_micros(1_000))
        );
    }

    #[test]
    fn follower_drops_proofs_of_another_incarnation() {
        let f = FollowerFreshness::new(1);
        f.record(Proof {
            incarnation: 2,
            received_us: 0,
            commit_index: 1,
        });
        assert_eq!(f.staleness(10), None);
        f.record(Proof {
            incarnation: 1,
            received_us: 0,
            commit_index: 1,
        });
        let bound = f.staleness(10).expect("a proof of this incarnation");
        // A stamp from the future of this replica's clock is never trusted.
        f.record(Proof {
            incarnation: 1,
            received_us: 3_600_000_000,
            commit_index: 1,
        });
        assert!(f.staleness(10).expect("still proven") >= bound);
    }
}
