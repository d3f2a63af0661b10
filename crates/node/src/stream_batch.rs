//! Group commit for stream publishes on a partition's leader (`group_commit.rs`): concurrent
//! publishes go out together as one `Command::StreamBatch` entry. Each command in a batch keeps
//! its own request id and result, exactly as if proposed alone.

use crate::group_commit::{GroupCommit, Turn};
use crate::node::Node;
use meridian_consensus::RaftGroup;
use meridian_state::stream::{StreamCommand, StreamEntry, StreamResult};
use meridian_state::{Command, CommandResult};
use meridian_types::{MeridianError, RequestId};
use tokio::sync::oneshot;

/// Most commands one batch entry carries.
pub const STREAM_BATCH_COMMANDS_MAX: usize = 1024;

type Reply = oneshot::Sender<Result<StreamResult, MeridianError>>;

/// The publish-batching state of every group this node leads.
pub(crate) struct StreamBatcher(GroupCommit<(StreamCommand, Option<RequestId>, Reply)>);

impl Default for StreamBatcher {
    fn default() -> Self {
        StreamBatcher(GroupCommit::new(STREAM_BATCH_COMMANDS_MAX))
    }
}

fn unexpected<T: std::fmt::Debug>(r: T) -> MeridianError {
    MeridianError::internal(format!("unexpected stream result {r:?}"))
}

impl Node {
    /// Proposes `cmd` on `g` (this node leads it), batched with concurrent publishes.
    pub(crate) async fn propose_stream_batched(
        &self,
        g: &RaftGroup,
        cmd: StreamCommand,
        request_id: Option<RequestId>,
    ) -> Result<StreamResult, MeridianError> {
        let (tx, rx) = oneshot::channel();
        let (node, group) = (self.clone(), g.clone());
        self.inner.stream_batcher.0.submit(
            g.group(),
            (cmd, request_id, tx),
            &self.inner.metrics,
            || self.pipeline_after(g),
            move |batch, turn| propose_stream_batch(node.clone(), group.clone(), batch, turn),
        );
        rx.await
            .unwrap_or_else(|_| Err(MeridianError::unavailable("the batch was dropped; retry")))
    }
}

/// Proposes one batch of publishes and answers each publisher.
async fn propose_stream_batch(
    node: Node,
    g: RaftGroup,
    batch: Vec<(StreamCommand, Option<RequestId>, Reply)>,
    turn: Turn,
) {
    let now_ms = node.inner.cfg.clock.now_ms();
    let mut entries = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for (cmd, request_id, reply) in batch {
        entries.push(StreamEntry {
            now_ms,
            request_id,
            cmd,
        });
        replies.push(reply);
    }
    let n = entries.len();
    let timeout = node.inner.cfg.request_timeout;
    let results = match turn
        .propose(&g, Command::StreamBatch(entries), timeout)
        .await
    {
        Ok(CommandResult::StreamBatch(v)) if v.len() == n => v,
        Ok(other) => vec![Err(unexpected(other)); n],
        Err(e) => vec![Err(e); n],
    };
    for (reply, r) in replies.into_iter().zip(results) {
        let _ = reply.send(r);
    }
}
