//! [`Children`]: every node process of a playground, stopped in order on request and, on any
//! other way out (an error, a panic), by `Drop`, so no node is ever left behind.

use super::node_process::{NodeProcess, send_sigterm};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// How long `Drop` waits for nodes to stop after SIGTERM before it kills them. Short: `Drop`
/// runs on error paths, blocking its thread.
const DROP_GRACE: Duration = Duration::from_secs(3);

/// How often `Drop` checks whether the nodes have stopped.
const DROP_POLL: Duration = Duration::from_millis(50);

/// How a node ended.
#[derive(Debug)]
pub struct Stopped {
    pub id: u32,
    /// How it went, for people: `exit status: 0`, `killed after 10s`, ...
    pub outcome: String,
}

/// Every node process of the playground.
#[derive(Debug, Default)]
pub struct Children {
    nodes: Vec<NodeProcess>,
}

impl Children {
    pub fn push(&mut self, node: NodeProcess) {
        self.nodes.push(node);
    }

    pub fn nodes(&self) -> &[NodeProcess] {
        &self.nodes
    }

    /// Waits until some node exits; returns its index and exit status. Never returns while
    /// there are no nodes.
    pub async fn wait_any_exit(&mut self) -> (usize, std::io::Result<ExitStatus>) {
        if self.nodes.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.nodes.iter_mut().map(|n| Box::pin(n.wait()));
        let (status, idx, _) = futures::future::select_all(waits).await;
        (idx, status)
    }

    /// Sends SIGTERM to every running node, waits up to `grace` for all of them, then kills
    /// the rest. Returns how each node ended, in node order.
    pub async fn stop_all(&mut self, grace: Duration) -> Vec<Stopped> {
        let mut nodes = std::mem::take(&mut self.nodes);
        for n in nodes.iter_mut() {
            if n.is_running()
                && let Some(pid) = n.pid()
                && let Err(e) = send_sigterm(pid)
            {
                tracing::warn!(node_id = n.spec.id, error = %e, "could not send SIGTERM");
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut stopped = Vec::with_capacity(nodes.len());
        for n in nodes.iter_mut() {
            let outcome = match tokio::time::timeout_at(deadline, n.wait()).await {
                Ok(Ok(status)) => status.to_string(),
                Ok(Err(e)) => format!("could not wait for it: {e}"),
                Err(_) => {
                    let _ = n.child.start_kill();
                    match n.wait().await {
                        Ok(_) => format!("killed after {grace:?}"),
                        Err(e) => format!("killed after {grace:?}; could not wait for it: {e}"),
                    }
                }
            };
            stopped.push(Stopped {
                id: n.spec.id,
                outcome,
            });
        }
        stopped
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        if self.nodes.is_empty() {
            return;
        }
        for n in self.nodes.iter_mut() {
            if n.is_running()
                && let Some(pid) = n.pid()
            {
                let _ = send_sigterm(pid);
            }
        }
        let deadline = Instant::now() + DROP_GRACE;
        while Instant::now() < deadline && self.nodes.iter_mut().any(NodeProcess::is_running) {
            std::thread::sleep(DROP_POLL);
        }
        for n in self.nodes.iter_mut() {
            if n.is_running() {
                // SIGKILL; `kill_on_drop` would do the same when the child is dropped.
                let _ = n.child.start_kill();
            }
        }
    }
}
