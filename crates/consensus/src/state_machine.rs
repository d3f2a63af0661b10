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
    ) -> io::Result<Self> {
        let data = match store.get_blob(group, META_SNAPSHOT)? {
            None => SmData::default(),
            Some(bytes) => {
                let snap: StoredSnapshot =
                    postcard::from_bytes(&bytes).map_err(|e| invalid("decode snapshot", e))?;
                postcard::from_bytes(&snap.data).map_err(|e| invalid("decode snapshot data", e))?
            }
        };
        Ok(Self {
            group,
            store,
            data: Arc::new(RwLock::new(data)),
            applied: Arc::new(tokio::sync::watch::Sender::new(0)),
            growth,
        })
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
        let (bytes, last_applied, membership) = {
            let d = self.data.read();
            (
                postcard::to_allocvec(&*d).map_err(io::Error::other)?,
                d.last_applied,
                d.last_membership.clone(),
            )
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        };
        self.save_snapshot(&stored)?;
        self.growth.snapshotted(stored.data.len() as u64);
        // The snapshot is durable; openraft has not yet purged the log it covers.
        meridian_storage::crash_point!("consensus::snapshot::build::after_save");
        tracing::info!(
            group_id = self.group.0,
            bytes = stored.data.len(),
            index = ?last_applied.map(|l| l.index),
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
        let new: SmData =
            postcard::from_bytes(&snapshot).map_err(|e| invalid("decode received snapshot", e))?;
        let len = snapshot.len() as u64;
        // Received and decoded, nothing written.
        meridian_storage::crash_point!("consensus::snapshot::install::before_save");
        self.save_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data: snapshot,
        })?;
        // Durable, but neither the state in memory nor openraft's log knows it yet.
        meridian_storage::crash_point!("consensus::snapshot::install::after_save");
        *self.data.write() = new;
        self.growth.snapshotted(len);
        self.applied.send_modify(|n| *n = n.wrapping_add(1));
        tracing::info!(group_id = self.group.0, last_log_id = ?meta.last_log_id.map(|l| l.index), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        match self.store.get_blob(self.group, META_SNAPSHOT)? {
            None => Ok(None),
            Some(bytes) => {
                let snap: StoredSnapshot =
                    postcard::from_bytes(&bytes).map_err(|e| invalid("decode snapshot", e))?;
                Ok(Some(Snapshot {
                    meta: snap.meta,
                    snapshot: snap.data,
                }))
            }
        }
    }
}
