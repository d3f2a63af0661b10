//! Group commit for queue commands on a range leader (`group_commit.rs`): concurrent sends,
//! receives and acks go out together as one `QueueCommand::Batch` entry, so a burst of receives
//! costs one log entry, not one each.

use crate::group_commit::{GroupCommit, Turn};
use crate::node::Node;
use meridian_consensus::RaftGroup;
use meridian_state::queue::BATCH_COMMANDS_MAX;
use meridian_state::{Command, CommandResult, QueueCommand, QueueEntry, QueueResult};
use meridian_types::MeridianError;
use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<QueueResult, MeridianError>>;

/// The batching state of every group this node leads.
pub(crate) struct QueueBatcher(GroupCommit<(QueueCommand, Reply)>);

impl Default for QueueBatcher {
    fn default() -> Self {
        QueueBatcher(GroupCommit::new(BATCH_COMMANDS_MAX))
    }
}

fn unexpected<T: std::fmt::Debug>(r: T) -> MeridianError {
    MeridianError::internal(format!("unexpected queue result {r:?}"))
}

impl Node {
    /// Proposes `cmd` on `g` (this node leads it), batched with concurrent commands.
    pub(crate) async fn propose_queue_batched(
        &self,
        g: &RaftGroup,
        cmd: QueueCommand,
    ) -> Result<QueueResult, MeridianError> {
        let (tx, rx) = oneshot::channel();
        let (node, group) = (self.clone(), g.clone());
        self.inner.queues.batcher.0.submit(
            g.group(),
            (cmd, tx),
            &self.inner.metrics,
            || self.pipeline_after(g),
            move |batch, turn| node.clone().propose_queue_batch(group.clone(), batch, turn),
        );
        rx.await
            .unwrap_or_else(|_| Err(MeridianError::unavailable("the batch was dropped; retry")))
    }

    /// Proposes one batch of commands and answers each client.
    async fn propose_queue_batch(
        self,
        g: RaftGroup,
        batch: Vec<(QueueCommand, Reply)>,
        turn: Turn,
    ) {
        let (mut cmds, replies): (Vec<QueueCommand>, Vec<Reply>) = batch.into_iter().unzip();
        let single = if cmds.len() == 1 { cmds.pop() } else { None };
        let results = if let Some(cmd) = single {
            vec![self.propose_entry(&g, cmd, turn).await]
        } else {
            let n = cmds.len();
            match self
                .propose_entry(&g, QueueCommand::Batch(cmds), turn)
                .await
            {
                Ok(QueueResult::Batch(v)) if v.len() == n => v,
                Ok(other) => vec![Err(unexpected(other)); n],
                Err(e) => vec![Err(e); n],
            }
        };
        for (reply, r) in replies.into_iter().zip(results) {
            let _ = reply.send(r);
        }
    }

    /// Proposes one entry stamped with this leader's clock, bounded by the request timeout.
    async fn propose_entry(
        &self,
        g: &RaftGroup,
        cmd: QueueCommand,
        turn: Turn,
    ) -> Result<QueueResult, MeridianError> {
        let entry = QueueEntry {
            now_ms: self.inner.cfg.clock.now_ms(),
            cmd,
        };
        let timeout = self.inner.cfg.request_timeout;
        match turn.propose(g, Command::Queue(entry), timeout).await? {
            CommandResult::Queue(r) => r,
            other => Err(unexpected(other)),
        }
    }
}
