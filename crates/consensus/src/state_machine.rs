//! openraft's state machine for one group: applies commands to a pure
//! [`GroupState`](meridian_state::GroupState) and keeps its snapshot durable and checksummed in
//! the node's store.

use crate::log_growth::LogGrowth;
use crate::typ::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use futures::{Stream, TryStreamExt};
use meridian_state::{CommandResult, GroupState};
use meridian_storage::LogStore;
use meridian_types::GroupId;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::Arc;

const META_SNAPSHOT: &str = "raft.snapshot";

/// The applied state of a group and where the log stands for it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SmData {
    pub(crate) last_applied: Option<LogId>,
    pub(crate) last_membership: StoredMembership,
    pub(crate) state: GroupState,
}

/// A durable snapshot: its metadata and the encoded [`SmData`].
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

#[derive(Clone)]
pub(crate) struct GroupStateMachine {
    group: GroupId,
    store: Arc<dyn LogStore>,
    pub(crate) data: Arc<RwLock<SmData>>,
    /// Bumped after every applied batch and installed snapshot: what watchers wait on, so
    /// their events come from this node's own apply path.
    pub(crate) applied: Arc<tokio::sync::watch::Sender<u64>>,
    /// Told each snapshot's size, so the log's byte trigger starts again from it.
    growth: Arc<LogGrowth>,
    /// Snapshot IO (encoding, decoding, writing and fsyncing the file, reading it back) runs on
    /// tokio's blocking pool, so a large state does not stall the node's runtime: on one
    /// runtime thread a 256 MB snapshot held it for 2 s and cost its groups their leaders.
    /// False runs it inline (the deterministic simulation has no blocking pool).
    offload: bool,
    /// Held while a snapshot is saved: the newest saved, so one that finishes later but covers
    /// less never replaces it.
    saved: Arc<tokio::sync::Mutex<Option<LogId>>>,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

impl GroupStateMachine {
    /// Opens the state machine from its last durable snapshot; openraft re-applies the
    /// committed log after it.
    pub(crate) fn open(
        group: GroupId,
        store: Arc<dyn LogStore>,
        growth: Arc<LogGrowth>,
        offload: bool,
    ) -> io::Result<Self> {
        let mut saved = None;
        let data: SmData = match store.get_blob(group, META_SNAPSHOT)? {
            None => SmData::default(),
            Some(bytes) => {
                let snap: StoredSnapshot =
                    postcard::from_bytes(&bytes).map_err(|e| invalid("decode snapshot", e))?;
                saved = snap.meta.last_log_id;
                postcard::from_bytes(&snap.data).map_err(|e| invalid("decode snapshot data", e))?
            }
        };
        Ok(Self {
            group,
            store,
            data: Arc::new(RwLock::new(data)),
            applied: Arc::new(tokio::sync::watch::Sender::new(0)),
            growth,
            offload,
            saved: Arc::new(tokio::sync::Mutex::new(saved)),
        })
    }

    /// Runs `f` on the blocking pool (inline when not offloading).
    async fn run_io<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        if self.offload {
            tokio::task::spawn_blocking(f)
                .await
                .map_err(|e| io::Error::other(format!("snapshot IO task: {e}")))?
        } else {
            f()
        }
    }

    fn save_snapshot(&self, snap: &StoredSnapshot) -> io::Result<()> {
        let bytes = postcard::to_allocvec(snap).map_err(io::Error::other)?;
        // Durable before openraft purges the log it replaces.
        self.store.put_blob(self.group, META_SNAPSHOT, &bytes)?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for GroupStateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let started = std::time::Instant::now();
        // A copy under the read lock is all the runtime thread does; encoding and writing it
        // run on the blocking pool while applies go on.
        let data: SmData = self.data.read().clone();
        let meta = SnapshotMeta {
            last_log_id: data.last_applied,
            last_membership: data.last_membership.clone(),
        };
        let mut saved = self.saved.lock().await;
        let newer_saved = *saved > meta.last_log_id;
        let this = self.clone();
        let snap_meta = meta.clone();
        let stored = self
            .run_io(move || {
                let bytes = postcard::to_allocvec(&data).map_err(io::Error::other)?;
                let stored = StoredSnapshot {
                    meta: snap_meta,
                    data: bytes,
                };
                // An installed snapshot that covers more stays the one on disk.
                if !newer_saved {
                    this.save_snapshot(&stored)?;
                }
                Ok(stored)
            })
            .await?;
        if !newer_saved {
            *saved = meta.last_log_id;
        }
        drop(saved);
        self.growth.snapshotted(stored.data.len() as u64);
        // The snapshot is durable; openraft has not yet purged the log it covers.
        meridian_storage::crash_point!("consensus::snapshot::build::after_save");
        tracing::info!(
            group_id = self.group.0,
            bytes = stored.data.len(),
            index = ?meta.last_log_id.map(|l| l.index),
            millis = started.elapsed().as_millis() as u64,
            "built snapshot"
        );
        Ok(Snapshot {
            meta,
            snapshot: stored.data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for GroupStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let d = self.data.read();
        Ok((d.last_applied, d.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            // Committed (durable on a quorum), not applied here.
            meridian_storage::crash_point!("consensus::apply::before");
            let result = {
                let mut d = self.data.write();
                d.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => CommandResult::None,
                    // On a follower nobody waits for the answer: skip building it.
                    EntryPayload::Normal(ref cmd) if responder.is_none() => {
                        d.state.apply_unanswered(&cmd.0);
                        CommandResult::None
                    }
                    EntryPayload::Normal(ref cmd) => d.state.apply(&cmd.0),
                    EntryPayload::Membership(ref m) => {
                        d.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        CommandResult::None
                    }
                }
            };
            // Applied in memory, the client not yet answered.
            meridian_storage::crash_point!("consensus::apply::after");
            if let Some(r) = responder {
                r.send(result);
            }
        }
        self.applied.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let len = snapshot.len() as u64;
        let mut saved = self.saved.lock().await;
        let this = self.clone();
        let snap_meta = meta.clone();
        let new = self
            .run_io(move || {
                let new: SmData = postcard::from_bytes(&snapshot)
                    .map_err(|e| invalid("decode received snapshot", e))?;
                // Received and decoded, nothing written.
                meridian_storage::crash_point!("consensus::snapshot::install::before_save");
                this.save_snapshot(&StoredSnapshot {
                    meta: snap_meta,
                    data: snapshot,
                })?;
                Ok(new)
            })
            .await?;
        *saved = meta.last_log_id;
        drop(saved);
        // Durable, but neither the state in memory nor openraft's log knows it yet.
        meridian_storage::crash_point!("consensus::snapshot::install::after_save");
        *self.data.write() = new;
        self.growth.snapshotted(len);
        self.applied.send_modify(|n| *n = n.wrapping_add(1));
        tracing::info!(group_id = self.group.0, last_log_id = ?meta.last_log_id.map(|l| l.index), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let (store, group) = (self.store.clone(), self.group);
        self.run_io(move || match store.get_blob(group, META_SNAPSHOT)? {
            None => Ok(None),
            Some(bytes) => {
                let snap: StoredSnapshot =
                    postcard::from_bytes(&bytes).map_err(|e| invalid("decode snapshot", e))?;
                Ok(Some(Snapshot {
                    meta: snap.meta,
                    snapshot: snap.data,
                }))
            }
        })
        .await
    }
}
