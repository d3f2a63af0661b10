//! ReadIndex batching, as etcd does it: reads that arrive while a round is in flight wait for
//! the next round, which starts after they arrived, and share it. One leadership confirmation
//! (a heartbeat to a quorum, or on a follower one call to the leader) then serves every read of
//! a round instead of one each.

use futures::future::BoxFuture;
use meridian_types::MeridianError;
use std::sync::Arc;

/// Most time one shared round may take before its readers are told to retry (openraft bounds
/// its own wait by the leader lease; this only keeps a stuck round from holding the group's
/// reads forever).
pub(crate) const READ_ROUND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One round: confirms that a leader still leads and returns its read index (the log index a
/// replica must have applied before it serves a read that began before the round).
pub type ReadRound = Arc<dyn Fn() -> BoxFuture<'static, Result<u64, MeridianError>> + Send + Sync>;

type Waiter = tokio::sync::oneshot::Sender<Result<u64, MeridianError>>;

#[derive(Default)]
struct Batch {
    running: bool,
    waiting: Vec<Waiter>,
    /// How the next round is run (the latest reader's way; on a follower it names the leader
    /// that reader's node believed in).
    round: Option<ReadRound>,
}

/// Reads waiting for the next shared round of one group.
#[derive(Clone, Default)]
pub(crate) struct ReadRounds {
    batch: Arc<parking_lot::Mutex<Batch>>,
}

impl ReadRounds {
    /// Waits for a round that starts after this call, and returns its read index.
    pub(crate) async fn join(&self, round: ReadRound) -> Result<u64, MeridianError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = {
            let mut b = self.batch.lock();
            b.waiting.push(tx);
            b.round = Some(round);
            !std::mem::replace(&mut b.running, true)
        };
        if start {
            // In its own task: a reader that gives up (its timeout drops it) must not take the
            // round, and the readers waiting on it, with it.
            let me = self.clone();
            tokio::spawn(async move { me.run().await });
        }
        rx.await.unwrap_or_else(|_| {
            Err(MeridianError::unavailable(
                "the read round was dropped; retry",
            ))
        })
    }

    /// Runs rounds while readers wait: each round serves the readers that were waiting when it
    /// started, never one that arrived later.
    async fn run(self) {
        loop {
            let (readers, round) = {
                let mut b = self.batch.lock();
                match b.round.take() {
                    Some(round) if !b.waiting.is_empty() => (std::mem::take(&mut b.waiting), round),
                    _ => {
                        b.running = false;
                        b.waiting.clear();
                        return;
                    }
                }
            };
            let r = match tokio::time::timeout(READ_ROUND_TIMEOUT, round()).await {
                Ok(r) => r,
                Err(_) => Err(MeridianError::unavailable(
                    "could not confirm the group's leadership in time",
                )),
            };
            for tx in readers {
                let _ = tx.send(r.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn a_round_serves_only_the_readers_waiting_when_it_began() {
        let rounds = ReadRounds::default();
        let started = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let round: ReadRound = {
            let (started, gate) = (started.clone(), gate.clone());
            Arc::new(move || {
                let (started, gate) = (started.clone(), gate.clone());
                Box::pin(async move {
                    let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                    gate.notified().await;
                    Ok(n)
                })
            })
        };
        let first = tokio::spawn({
            let (r, f) = (rounds.clone(), round.clone());
            async move { r.join(f).await }
        });
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // These arrive while round 1 is in flight: they must get round 2.
        let later: Vec<_> = (0..3)
            .map(|_| {
                let (r, f) = (rounds.clone(), round.clone());
                tokio::spawn(async move { r.join(f).await })
            })
            .collect();
        while rounds.batch.lock().waiting.len() < 3 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        while started.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for l in later {
            assert_eq!(l.await.unwrap().unwrap(), 2);
        }
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "one round for the three later readers"
        );
    }
}
