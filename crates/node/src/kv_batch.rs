//! Group commit for key-value writes on a range's leader (`group_commit.rs`): concurrent writes
//! go out together as one `Command::KvBatch` entry. Each entry in a batch keeps its own request
//! id, revision and result, as if proposed alone.

use crate::group_commit::{GroupCommit, Turn};
use crate::node::Node;
use meridian_consensus::RaftGroup;
use meridian_state::{Command, CommandResult, KvEntry, KvResult};
use meridian_types::MeridianError;
use tokio::sync::oneshot;

/// Most entries one batch carries.
pub const KV_BATCH_ENTRIES_MAX: usize = 1024;

/// The proposal's outcome (outer) and the entry's own result (inner).
type Outcome = Result<Result<KvResult, MeridianError>, MeridianError>;
type Reply = oneshot::Sender<Outcome>;

/// The write-batching state of every group this node leads.
pub(crate) struct KvBatcher(GroupCommit<(KvEntry, Reply)>);

impl Default for KvBatcher {
    fn default() -> Self {
        KvBatcher(GroupCommit::new(KV_BATCH_ENTRIES_MAX))
    }
}

fn unexpected<T: std::fmt::Debug>(r: T) -> MeridianError {
    MeridianError::internal(format!("unexpected result {r:?}"))
}

impl Node {
    /// Proposes `entry` on `g` (this node leads it), batched with concurrent writes.
    pub(crate) async fn propose_kv_batched(&self, g: &RaftGroup, entry: KvEntry) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let (node, group) = (self.clone(), g.clone());
        self.inner.kv_batcher.0.submit(
            g.group(),
            (entry, tx),
            &self.inner.metrics,
            || self.pipeline_after(g),
            move |batch, turn| propose_kv_batch(node.clone(), group.clone(), batch, turn),
        );
        rx.await
            .unwrap_or_else(|_| Err(MeridianError::unavailable("the batch was dropped; retry")))
    }
}

/// Proposes one batch of writes and answers each writer.
async fn propose_kv_batch(node: Node, g: RaftGroup, batch: Vec<(KvEntry, Reply)>, turn: Turn) {
    let (mut entries, replies): (Vec<KvEntry>, Vec<Reply>) = batch.into_iter().unzip();
    let n = entries.len();
    let timeout = node.inner.cfg.request_timeout;
    // One write alone is a plain entry.
    let cmd = if n == 1 {
        Command::Kv(entries.remove(0))
    } else {
        Command::KvBatch(entries)
    };
    let results: Vec<Outcome> = match turn.propose(&g, cmd, timeout).await {
        Ok(CommandResult::KvBatch(v)) if v.len() == n => v.into_iter().map(Ok).collect(),
        Ok(CommandResult::Kv(r)) if n == 1 => vec![Ok(r)],
        Ok(other) => vec![Err(unexpected(other)); n],
        Err(e) => vec![Err(e); n],
    };
    for (reply, r) in replies.into_iter().zip(results) {
        let _ = reply.send(r);
    }
}
