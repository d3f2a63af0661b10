//! Group commit: one thread that fsyncs the journal once for every append that arrived while the
//! previous fsync ran, across all groups, then tells each append it is durable.

use crate::log_store::DurableCallback;
use fjall::{Database, PersistMode};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// Most appends waiting for the next fsync before `append` blocks (back-pressure).
pub const FLUSH_QUEUE_MAX: usize = 65_536;
/// Most appends one fsync covers; the rest wait for the next one.
pub const FLUSH_BATCH_MAX: usize = 16_384;

/// Told of every fsync: how long it took and how many appends it made durable.
pub type FsyncObserver = Arc<dyn Fn(Duration, usize) + Send + Sync>;

pub(crate) struct Flusher {
    tx: SyncSender<DurableCallback>,
}

impl Flusher {
    pub(crate) fn start(db: Database, fsync: bool, observer: Option<FsyncObserver>) -> Self {
        let (tx, rx) = sync_channel(FLUSH_QUEUE_MAX);
        std::thread::Builder::new()
            .name("meridian-flusher".into())
            .spawn(move || run(db, rx, fsync, observer))
            .expect("spawn the flusher thread");
        Self { tx }
    }

    /// Queues a callback for the next fsync. Must be called after the records are written to
    /// the engine, so the fsync that runs the callback covers them.
    pub(crate) fn enqueue(&self, cb: DurableCallback) -> Result<(), DurableCallback> {
        match self.tx.try_send(cb) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(cb)) => {
                // Back-pressure: wait for room rather than fail the append.
                self.tx.send(cb).map_err(|e| e.0)
            }
            Err(TrySendError::Disconnected(cb)) => Err(cb),
        }
    }
}

fn run(db: Database, rx: Receiver<DurableCallback>, fsync: bool, observer: Option<FsyncObserver>) {
    let mut batch: Vec<DurableCallback> = Vec::with_capacity(1024);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < FLUSH_BATCH_MAX {
            match rx.try_recv() {
                Ok(cb) => batch.push(cb),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let mode = if fsync {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        };
        // Written, not yet durable, nothing acknowledged.
        crate::crash_point!("storage::flusher::before_fsync");
        let result = db.persist(mode);
        // Durable, not yet acknowledged.
        crate::crash_point!("storage::flusher::after_fsync");
        if let Some(obs) = &observer {
            obs(started.elapsed(), batch.len());
        }
        match result {
            Ok(()) => {
                for cb in batch.drain(..) {
                    cb(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "fsync failed; the appends it covered are not durable");
                for cb in batch.drain(..) {
                    cb(Err(std::io::Error::other(format!("fsync failed: {e}"))));
                }
            }
        }
    }
}
