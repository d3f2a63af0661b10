//! A simulated network for in-process clusters: per-link partitions (one-way), delay and loss,
//! and crashed nodes. Used by the test harness; every rule is set and cleared by the test.

use crate::envelope::{Envelope, Handler, Transport};
use crate::error::TransportError;
use futures::FutureExt;
use futures::future::BoxFuture;
use meridian_types::NodeId;
use parking_lot::RwLock;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What happens to messages sent from one node to another.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkRule {
    /// Every message is lost.
    pub blocked: bool,
    /// Added one-way latency.
    pub delay: Duration,
    /// Probability in `[0, 1]` that a message is lost.
    pub drop_prob: f64,
}

/// The shared network every [`SimTransport`] of one test cluster sends through.
#[derive(Default)]
pub struct SimNetwork {
    handlers: RwLock<HashMap<NodeId, Arc<dyn Handler>>>,
    rules: RwLock<HashMap<(NodeId, NodeId), LinkRule>>,
}

impl SimNetwork {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Attaches a node; its address is `sim://<id>`.
    pub fn register(&self, node: NodeId, handler: Arc<dyn Handler>) {
        self.handlers.write().insert(node, handler);
    }

    /// Detaches a node (crash): messages to it fail as unreachable.
    pub fn unregister(&self, node: NodeId) {
        self.handlers.write().remove(&node);
    }

    pub fn transport(self: &Arc<Self>, me: NodeId) -> Arc<SimTransport> {
        Arc::new(SimTransport {
            net: self.clone(),
            me,
        })
    }

    /// Sets the rule for messages from `from` to `to` (one way).
    pub fn set_rule(&self, from: NodeId, to: NodeId, rule: LinkRule) {
        if rule == LinkRule::default() {
            self.rules.write().remove(&(from, to));
        } else {
            self.rules.write().insert((from, to), rule);
        }
    }

    /// Cuts every link between the two sides, both ways.
    pub fn partition(&self, side_a: &[NodeId], side_b: &[NodeId]) {
        for &a in side_a {
            for &b in side_b {
                let blocked = LinkRule {
                    blocked: true,
                    ..Default::default()
                };
                self.set_rule(a, b, blocked.clone());
                self.set_rule(b, a, blocked);
            }
        }
    }

    /// Cuts a node off from every other node, both ways.
    pub fn isolate(&self, node: NodeId, all: &[NodeId]) {
        let others: Vec<NodeId> = all.iter().copied().filter(|n| *n != node).collect();
        self.partition(&[node], &others);
    }

    /// Removes every rule: a healed, perfect network.
    pub fn heal(&self) {
        self.rules.write().clear();
    }

    fn rule(&self, from: NodeId, to: NodeId) -> LinkRule {
        self.rules
            .read()
            .get(&(from, to))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether a message on this link is lost, and its delay.
    fn pass(&self, from: NodeId, to: NodeId) -> Result<Duration, TransportError> {
        let rule = self.rule(from, to);
        if rule.blocked
            || (rule.drop_prob > 0.0 && rand::rng().random_bool(rule.drop_prob.min(1.0)))
        {
            return Err(TransportError::Unreachable {
                node: to.0,
                detail: "simulated link loss".into(),
            });
        }
        Ok(rule.delay)
    }

    async fn deliver(self: Arc<Self>, env: Envelope) -> Result<Vec<u8>, TransportError> {
        let (from, to, timeout) = (env.from, env.to, env.timeout);
        let fut = async move {
            let delay = self.pass(from, to)?;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let handler = self.handlers.read().get(&to).cloned();
            let handler = handler.ok_or(TransportError::Unreachable {
                node: to.0,
                detail: "node is down".into(),
            })?;
            let reply = handler.handle(env).await;
            let back = self.pass(to, from)?;
            if !back.is_zero() {
                tokio::time::sleep(back).await;
            }
            reply.map_err(|detail| TransportError::Remote { node: to.0, detail })
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout { node: to.0 }),
        }
    }
}

/// One node's view of a [`SimNetwork`].
pub struct SimTransport {
    net: Arc<SimNetwork>,
    me: NodeId,
}

impl Transport for SimTransport {
    fn call(&self, mut env: Envelope) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        env.from = self.me;
        self.net.clone().deliver(env).boxed()
    }

    fn set_peer_addr(&self, _node: NodeId, _addr: String) {}

    fn call_addr(
        &self,
        addr: &str,
        mut env: Envelope,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        match addr
            .strip_prefix("sim://")
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(n) => {
                env.to = NodeId(n);
                self.call(env)
            }
            None => {
                let detail = format!("not a simulated address: {addr}");
                async move { Err(TransportError::Unreachable { node: 0, detail }) }.boxed()
            }
        }
    }
}
