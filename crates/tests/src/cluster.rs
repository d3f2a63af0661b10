//! [`TestCluster`]: N in-process nodes on one [`SimNetwork`].

use meridian_node::layout::initial_map;
use meridian_node::messages::Hello;
use meridian_node::{ClientApi, Consistency, Node, NodeConfig, WriteOptions};
use meridian_state::{PutRequest, RangeRequest};
use meridian_transport::{LinkRule, SimNetwork};
use meridian_types::{ClusterId, GroupId, MeridianError, NodeId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Polls `cond` until it holds or `timeout` passes; never a bare sleep.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn init_test_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MERIDIAN_TEST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

pub struct TestCluster {
    pub net: Arc<SimNetwork>,
    pub dir: tempfile::TempDir,
    pub nodes: parking_lot::RwLock<BTreeMap<NodeId, Option<Node>>>,
    pub ids: Vec<NodeId>,
    pub tweak: fn(&mut NodeConfig),
}

fn fast_timing(cfg: &mut NodeConfig) {
    cfg.raft.heartbeat_interval_ms = 50;
    cfg.raft.election_timeout_min_ms = 300;
    cfg.raft.election_timeout_max_ms = 600;
    cfg.request_timeout = Duration::from_secs(5);
}

impl TestCluster {
    /// Starts `n` nodes and initialises a cluster with `ranges` ranges.
    pub async fn start(n: u64, ranges: u32) -> anyhow::Result<Self> {
        Self::start_with(n, ranges, |_| {}).await
    }

    pub async fn start_with(
        n: u64,
        ranges: u32,
        tweak: fn(&mut NodeConfig),
    ) -> anyhow::Result<Self> {
        init_test_tracing();
        let mut c = TestCluster {
            net: SimNetwork::new(),
            dir: tempfile::tempdir()?,
            nodes: parking_lot::RwLock::new(BTreeMap::new()),
            ids: Vec::new(),
            tweak,
        };
        for i in 1..=n {
            let id = NodeId(i);
            c.ids.push(id);
            c.boot(id).await?;
        }
        let hellos: Vec<Hello> = c.ids.iter().map(|id| c.node(*id).hello()).collect();
        let map = initial_map(ClusterId(0xC0FFEE), &hellos, ranges).map_err(anyhow::Error::msg)?;
        for id in c.ids.clone() {
            c.node(id)
                .init(map.clone())
                .await
                .map_err(anyhow::Error::msg)?;
        }
        c.wait_all_leaders(Duration::from_secs(20)).await?;
        Ok(c)
    }

    /// Where node `id` keeps its data.
    pub fn data_dir(&self, id: NodeId) -> std::path::PathBuf {
        self.dir.path().join(format!("node{}", id.0))
    }

    fn config(&self, id: NodeId) -> NodeConfig {
        let mut cfg = NodeConfig::new(id, format!("sim://{}", id.0), self.data_dir(id));
        cfg.region = ["us-east", "eu-west", "ap-south"][(id.0 as usize - 1) % 3].to_string();
        fast_timing(&mut cfg);
        (self.tweak)(&mut cfg);
        cfg
    }

    async fn boot(&self, id: NodeId) -> anyhow::Result<()> {
        // A crashed node's last in-flight requests may still hold its store open for a moment
        // (a real process crash releases it at once): wait for the lock rather than fail.
        let deadline = Instant::now() + Duration::from_secs(15);
        let node = loop {
            match Node::start(self.config(id), self.net.transport(id)).await {
                Ok(n) => break n,
                Err(e) if e.message.contains("Locked") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(anyhow::Error::msg(e)),
            }
        };
        self.net.register(id, node.handler());
        self.nodes.write().insert(id, Some(node));
        Ok(())
    }

    /// A running node (a cheap clone). Panics if it is down.
    pub fn node(&self, id: NodeId) -> Node {
        self.try_node(id)
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    pub fn try_node(&self, id: NodeId) -> Option<Node> {
        self.nodes.read().get(&id).and_then(|n| n.clone())
    }

    pub fn running(&self) -> Vec<NodeId> {
        self.nodes
            .read()
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Stops a node as a crash would: it vanishes from the network; its disk stays.
    pub async fn crash(&self, id: NodeId) {
        self.net.unregister(id);
        let old = self.nodes.write().insert(id, None);
        if let Some(Some(n)) = old {
            n.shutdown().await;
        }
    }

    /// Restarts a crashed node from its disk.
    pub async fn restart(&self, id: NodeId) -> anyhow::Result<()> {
        self.boot(id).await
    }

    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        self.net.partition(a, b);
    }

    pub fn isolate(&self, id: NodeId) {
        self.net.isolate(id, &self.ids);
    }

    pub fn heal(&self) {
        self.net.heal();
    }

    pub fn set_link(&self, from: NodeId, to: NodeId, rule: LinkRule) {
        self.net.set_rule(from, to, rule);
    }

    /// The leader of a group as its running replicas see it (agreed by all that know one).
    pub fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        let mut leader = None;
        for id in self.running() {
            if self.node(id).group(group).is_some_and(|g| g.is_leader()) {
                leader = Some(id);
            }
        }
        leader
    }

    pub fn groups(&self) -> Vec<GroupId> {
        let map = self.node(self.running()[0]).cluster_map().expect("map");
        let mut v = vec![GroupId::META];
        v.extend(map.ranges.keys().map(|r| r.group()));
        v
    }

    pub async fn wait_all_leaders(&self, timeout: Duration) -> anyhow::Result<()> {
        wait_until("every group to have a leader", timeout, || async {
            let running = self.running();
            if running.is_empty() {
                return false;
            }
            let Some(map) = self.node(running[0]).cluster_map() else {
                return false;
            };
            if !map.is_initialized() {
                return false;
            }
            let mut groups = vec![GroupId::META];
            groups.extend(map.ranges.keys().map(|r| r.group()));
            groups.iter().all(|g| self.leader_of(*g).is_some())
        })
        .await
    }

    pub async fn put(&self, via: NodeId, key: &str, value: &str) -> Result<u64, MeridianError> {
        let req = PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            prev_kv: false,
            lease: 0,
            ignore_lease: false,
            ignore_value: false,
        };
        self.node(via)
            .put(req, WriteOptions::default())
            .await
            .map(|r| r.revision)
    }

    pub async fn get(
        &self,
        via: NodeId,
        key: &str,
        c: Consistency,
    ) -> Result<Option<String>, MeridianError> {
        let req = RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let r = self.node(via).range(req, c).await?;
        Ok(r.kvs
            .into_iter()
            .next()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    /// Reads `key` through `via` and panics unless it holds `want` (`None`: absent).
    pub async fn assert_value(&self, via: NodeId, key: &str, c: Consistency, want: Option<&str>) {
        let got = self
            .get(via, key, c)
            .await
            .unwrap_or_else(|e| panic!("read {key} via {via}: {e}"));
        assert_eq!(got.as_deref(), want, "{key} read via node {via} with {c:?}");
    }

    /// Waits until every running replica of every group has applied the same index and holds
    /// identical state.
    pub async fn wait_converged(&self, timeout: Duration) -> anyhow::Result<()> {
        wait_until("replicas to converge", timeout, || async {
            self.diverging_groups().is_empty()
        })
        .await
    }

    /// Groups whose running replicas differ in applied state.
    pub fn diverging_groups(&self) -> Vec<GroupId> {
        let mut bad = Vec::new();
        let Some(map) = self.node(self.running()[0]).cluster_map() else {
            return self.groups();
        };
        for g in self.groups() {
            let replicas: Vec<NodeId> = if g.is_meta() {
                map.meta_replicas.clone()
            } else {
                map.ranges
                    .get(&meridian_types::RangeId(g.0))
                    .map(|r| r.replicas.clone())
                    .unwrap_or_default()
            };
            let mut states = Vec::new();
            let mut missing = false;
            for id in replicas.iter().filter(|id| self.running().contains(id)) {
                match self.node(*id).group(g) {
                    Some(rg) => states.push((rg.status().applied_index, rg.read(|s| s.clone()))),
                    None => missing = true,
                }
            }
            if missing || states.is_empty() || states.windows(2).any(|w| w[0] != w[1]) {
                bad.push(g);
            }
        }
        bad
    }

    pub async fn shutdown(self) {
        for id in self.running() {
            self.crash(id).await;
        }
    }
}

impl TestCluster {
    /// Starts a new node that joins the running cluster through `seed`.
    pub async fn add_node(&mut self, id: NodeId, seed: NodeId) -> anyhow::Result<()> {
        self.ids.push(id);
        self.boot(id).await?;
        self.node(id)
            .join(&[format!("sim://{}", seed.0)])
            .await
            .map_err(anyhow::Error::msg)
    }
}
