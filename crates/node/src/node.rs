//! [`Node`]: one Meridian process. Hosts its groups, serves node RPC, keeps its groups in line
//! with the cluster map, and executes client operations (see `router.rs`, `kv.rs`).

use crate::config::NodeConfig;
use crate::hlc::Hlc;
use crate::latency::LatencyTable;
use crate::messages::*;
use crate::metrics::Metrics;
use futures::FutureExt;
use futures::future::BoxFuture;
use meridian_consensus::{RaftGroup, RaftRouter, Role};
use meridian_state::{ClusterMap, MetaCommand, NodeInfo, NodeState};
use meridian_storage::{DiskStore, DiskStoreConfig, FsyncObserver, LogStore};
use meridian_transport::{Envelope, Handler, Transport};
use meridian_types::{ClusterId, ErrorCode, GroupId, MeridianError, NodeId};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Where a node keeps its own identity in the store (a group id no Raft group uses).
const NODE_GROUP: GroupId = GroupId(u64::MAX);
const K_NODE_ID: &str = "node.id";
const K_CLUSTER_ID: &str = "cluster.id";
const K_BOOTSTRAP_MAP: &str = "cluster.bootstrap_map";
const K_DATA_FORMAT: &str = "data.format";

/// The format of what a node stores (log entries, snapshots, state, as postcard encodes them).
/// Bump it in the commit that changes any stored encoding: a node refuses a data dir of another
/// format (`unsupported_format`) rather than misread it. Data dirs from before the format was
/// recorded (1) are refused too.
pub const DATA_FORMAT: u64 = 2;

/// How often a node reconciles its groups with the cluster map.
pub const RECONCILE_INTERVAL: Duration = Duration::from_millis(300);
/// How long a node waits before trying again to open a group whose stored data is corrupt.
pub const CORRUPT_GROUP_RETRY: Duration = Duration::from_secs(60);
/// Timeout of small admin calls between nodes.
pub const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a node waits for its map to learn of a stream or queue (created through another
/// node, or this node just restarted) before answering `stream_not_found` / `queue_not_found`.
pub const CATALOGUE_CATCH_UP: Duration = Duration::from_millis(1000);

/// Looks a stream or queue up in this node's map, waiting up to [`CATALOGUE_CATCH_UP`] while the
/// answer is `not_found` or retryable (the map has not caught up yet).
pub(crate) async fn catalogue_lookup<T>(
    not_found: ErrorCode,
    lookup: impl Fn() -> Result<T, MeridianError>,
) -> Result<T, MeridianError> {
    let deadline = tokio::time::Instant::now() + CATALOGUE_CATCH_UP;
    loop {
        match lookup() {
            Err(e)
                if (e.code == not_found || e.code.is_retryable())
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            r => return r,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) cfg: NodeConfig,
    pub(crate) store: Arc<dyn LogStore>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) router: RaftRouter,
    pub(crate) cluster_id: Arc<AtomicU64>,
    pub(crate) groups: RwLock<BTreeMap<GroupId, RaftGroup>>,
    /// The map handed over at `init` or `join`, used until the meta group holds one.
    pub(crate) bootstrap: RwLock<Option<ClusterMap>>,
    /// Last leader this node heard of, per group (routing cache).
    pub(crate) leader_cache: RwLock<BTreeMap<GroupId, NodeId>>,
    pub(crate) hlc: Hlc,
    /// The map last handed out, keyed by (from the meta group?, version), so the hot path does
    /// not clone the map per request.
    map_cache: RwLock<Option<(bool, u64, Arc<ClusterMap>)>>,
    pub(crate) metrics: Arc<Metrics>,
    /// Round trips to peers (filled by the prober).
    pub(crate) latency: Arc<LatencyTable>,
    /// Serializes group creation, init and join.
    pub(crate) admin_lock: tokio::sync::Mutex<()>,
    last_leaders: Mutex<BTreeMap<GroupId, Option<NodeId>>>,
    /// Groups whose store refused to open as corrupt: not tried again before the instant given
    /// (each try reads and reports the bad record again).
    open_backoff: Mutex<BTreeMap<GroupId, std::time::Instant>>,
    pub(crate) shutdown_tx: watch::Sender<bool>,
    /// The placement driver's display and pacing state (see `placement_driver.rs`).
    pub(crate) driver: crate::placement_driver::DriverState,
    /// Lease deadlines while this node leads the meta group (see `lease.rs`).
    pub(crate) leases: crate::lease::LeaseKeeper,
    /// Concurrent stream publishes waiting to share a log entry (see `stream_batch.rs`).
    pub(crate) stream_batcher: crate::stream_batch::StreamBatcher,
    pub(crate) kv_batcher: crate::kv_batch::KvBatcher,
    /// Receive waiters and dead-letter pacing (see `queue.rs`).
    pub(crate) queues: crate::queue::QueueRuntime,
}

/// One Meridian node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl Node {
    /// Opens the node's store, checks its identity, reopens the groups it hosted and starts its
    /// background work. Serving node RPC is the caller's job (see [`Node::handler`]).
    pub async fn start(
        cfg: NodeConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Node, MeridianError> {
        let metrics = Arc::new(Metrics::new());
        let m2 = metrics.clone();
        let observer: FsyncObserver = Arc::new(move |d: Duration, n: usize| {
            m2.fsync_seconds.observe(d.as_secs_f64());
            m2.fsync_batch_appends.observe(n as f64);
        });
        let mut scfg = DiskStoreConfig::new(cfg.data_dir.join("store"));
        scfg.fsync = cfg.fsync;
        scfg.fsync_observer = Some(observer);
        let store: Arc<dyn LogStore> = Arc::new(DiskStore::open(scfg).map_err(|e| {
            MeridianError::new(
                ErrorCode::Corruption,
                format!("open data dir {}: {e}", cfg.data_dir.display()),
            )
        })?);
        Self::start_with_store(cfg, store, transport, metrics).await
    }

    /// Starts a node on a store the caller opened (a simulation's in-memory store).
    pub async fn start_with_store(
        cfg: NodeConfig,
        store: Arc<dyn LogStore>,
        transport: Arc<dyn Transport>,
        metrics: Arc<Metrics>,
    ) -> Result<Node, MeridianError> {
        // Identity: a data dir belongs to one node of one cluster.
        let stored_id = get_u64(&*store, K_NODE_ID)?;
        match stored_id {
            Some(id) if id != cfg.id.0 => {
                return Err(MeridianError::new(
                    ErrorCode::WrongCluster,
                    format!(
                        "data dir {} belongs to node {id}, not node {}; use that id or another data dir",
                        cfg.data_dir.display(),
                        cfg.id
                    ),
                ));
            }
            Some(_) => match get_u64(&*store, K_DATA_FORMAT)? {
                Some(DATA_FORMAT) => {}
                other => {
                    return Err(MeridianError::new(
                        ErrorCode::UnsupportedFormat,
                        format!(
                            "data dir {} is in format {}; this build reads format {DATA_FORMAT} \
                             (use the Meridian version that wrote it, or a fresh data dir)",
                            cfg.data_dir.display(),
                            other.unwrap_or(1)
                        ),
                    ));
                }
            },
            None => {
                put_u64(&*store, K_DATA_FORMAT, DATA_FORMAT)?;
                put_u64(&*store, K_NODE_ID, cfg.id.0)?;
            }
        }
        let cluster_id = Arc::new(AtomicU64::new(get_u64(&*store, K_CLUSTER_ID)?.unwrap_or(0)));
        let bootstrap: Option<ClusterMap> = match store
            .get_meta(NODE_GROUP, K_BOOTSTRAP_MAP)
            .map_err(storage_err)?
        {
            None => None,
            Some(b) => Some(postcard::from_bytes(&b).map_err(|e| {
                MeridianError::new(ErrorCode::Corruption, format!("decode bootstrap map: {e}"))
            })?),
        };
        let router = RaftRouter::new(cfg.id, cluster_id.clone(), transport.clone());
        let (shutdown_tx, _) = watch::channel(false);
        let hlc = Hlc::with_clock(cfg.clock.clone());
        let node = Node {
            inner: Arc::new(Inner {
                cfg,
                store,
                transport,
                router,
                cluster_id,
                groups: RwLock::new(BTreeMap::new()),
                bootstrap: RwLock::new(bootstrap),
                leader_cache: RwLock::new(BTreeMap::new()),
                hlc,
                map_cache: RwLock::new(None),
                metrics,
                latency: Arc::new(LatencyTable::new()),
                admin_lock: tokio::sync::Mutex::new(()),
                last_leaders: Mutex::new(BTreeMap::new()),
                open_backoff: Mutex::new(BTreeMap::new()),
                shutdown_tx,
                driver: Default::default(),
                leases: Default::default(),
                stream_batcher: Default::default(),
                kv_batcher: Default::default(),
                queues: Default::default(),
            }),
        };
        if node.cluster_id() != 0 {
            node.reconcile().await;
        }
        node.spawn_background();
        node.spawn_placement_driver();
        node.spawn_stream_maintenance();
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.inner.cfg.id
    }

    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id.load(Ordering::Acquire)
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.cfg
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Round trips from this node to its peers.
    pub fn latency(&self) -> &Arc<LatencyTable> {
        &self.inner.latency
    }

    /// The handler to serve this node's RPC with.
    pub fn handler(&self) -> Arc<dyn Handler> {
        Arc::new(self.clone())
    }

    pub fn group(&self, g: GroupId) -> Option<RaftGroup> {
        self.inner.groups.read().get(&g).cloned()
    }

    pub fn hosted_groups(&self) -> Vec<RaftGroup> {
        let mut v: Vec<RaftGroup> = self.inner.groups.read().values().cloned().collect();
        v.sort_by_key(|g| g.group());
        v
    }

    /// The cluster map: the meta group's if it holds one, else the bootstrap map.
    pub fn cluster_map(&self) -> Option<ClusterMap> {
        if let Some(meta) = self.group(GroupId::META) {
            let m = meta.read(|s| {
                if s.meta.is_initialized() {
                    Some(s.meta.clone())
                } else {
                    None
                }
            });
            if m.is_some() {
                return m;
            }
        }
        self.inner.bootstrap.read().clone()
    }

    /// The error for a request that needs the cluster map when this node has none: a node of a
    /// cluster that has not loaded its map yet (it just restarted) is starting, which passes
    /// (`unavailable`, retryable); one that belongs to no cluster is `not_initialized`.
    pub(crate) fn no_map_error(&self) -> MeridianError {
        if self.cluster_id() != 0 {
            MeridianError::unavailable(
                "this node is starting and has not loaded the cluster map yet; retry",
            )
        } else {
            MeridianError::new(
                ErrorCode::NotInitialized,
                "this node is not part of an initialised cluster; run `meridian cluster init`",
            )
        }
    }

    /// The cluster map as a shared snapshot; cheap when nothing changed since the last call.
    pub fn map_arc(&self) -> Option<Arc<ClusterMap>> {
        let meta_version = self
            .group(GroupId::META)
            .and_then(|g| g.read(|s| s.meta.is_initialized().then_some(s.meta.version)));
        let key = match meta_version {
            Some(v) => (true, v),
            None => (false, self.inner.bootstrap.read().as_ref()?.version),
        };
        if let Some((_, _, map)) = self
            .inner
            .map_cache
            .read()
            .as_ref()
            .filter(|(m, v, _)| (*m, *v) == key)
        {
            return Some(map.clone());
        }
        let map = Arc::new(self.cluster_map()?);
        *self.inner.map_cache.write() = Some((key.0, key.1, map.clone()));
        Some(map)
    }

    /// Stops background work and every group. Data stays on disk.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown_tx.send(true);
        let groups: Vec<RaftGroup> = std::mem::take(&mut *self.inner.groups.write())
            .into_values()
            .collect();
        for g in groups {
            g.shutdown().await;
        }
    }

    fn spawn_background(&self) {
        crate::probe::spawn(self.clone(), self.inner.shutdown_tx.subscribe());
        crate::lease::spawn_expirer(self.clone(), self.inner.shutdown_tx.subscribe());
        let node = self.clone();
        let mut stop = self.inner.shutdown_tx.subscribe();
        tokio::spawn(async move {
            let span = tracing::info_span!("reconciler", node_id = node.id().0);
            let _e = span.enter();
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
                }
                if node.cluster_id() != 0 {
                    node.reconcile().await;
                }
                node.observe_groups();
                node.ensure_queue_driver();
            }
        });
    }

    /// Opens the groups this node should host, tells the transport where peers are, and lets the
    /// meta leader store the bootstrap map.
    pub(crate) async fn reconcile(&self) {
        let Some(map) = self.cluster_map() else {
            return;
        };
        for n in map.nodes.values() {
            if n.id != self.id() {
                self.inner.transport.set_peer_addr(n.id, n.addr.clone());
                self.inner.transport.set_peer_region(n.id, n.region.clone());
            }
        }
        let me = self.id();
        // Every member hosts the meta group: its voters, and learners for the rest (joiners).
        if self.group(GroupId::META).is_none() {
            let voters: BTreeMap<NodeId, String> = addrs(&map, &map.meta_replicas);
            let init_first = map.meta_replicas.iter().min() == Some(&me)
                && self.inner.bootstrap.read().is_some();
            if self.open_due(GroupId::META)
                && let Err(e) = self
                    .open_group(GroupId::META, if init_first { Some(voters) } else { None })
                    .await
            {
                self.open_failed(GroupId::META, &e);
            }
        }
        for r in map.ranges.values() {
            // A learner being added opens the group uninitialised; the leader fills it.
            let hosts = r.replicas.contains(&me) || r.learners.contains(&me);
            if hosts && self.group(r.id.group()).is_none() {
                let voters = addrs(&map, &r.replicas);
                // A system range born after `init` is initialised by every first replica (same
                // voters everywhere, so safe), so it forms even if one of them is down.
                let first = r.replicas.iter().min() == Some(&me) || r.system.is_some();
                let init_first = first && r.learners.is_empty() && r.version <= 1;
                if self.open_due(r.id.group())
                    && let Err(e) = self
                        .open_group(r.id.group(), if init_first { Some(voters) } else { None })
                        .await
                {
                    self.open_failed(r.id.group(), &e);
                }
            }
        }
        self.close_departed_groups().await;
        // The first meta leader writes the bootstrap map into the meta group.
        if let Some(meta) = self.group(GroupId::META) {
            let stored = meta.read(|s| s.meta.is_initialized());
            let boot = self.inner.bootstrap.read().clone();
            if let (false, true, Some(b)) = (stored, meta.is_leader(), boot) {
                match meta
                    .propose(meridian_state::Command::Meta(MetaCommand::Init(b)))
                    .await
                {
                    Ok(_) => tracing::info!("stored the cluster map in the meta group"),
                    Err(e) => tracing::warn!(error = %e, "store the cluster map"),
                }
            }
        }
    }

    /// Opens (or reopens) this node's replica of `group`; with `initialize`, makes it the
    /// group's first member with those voters.
    /// Whether the reconciler may try to open `group` now (not backing off after corruption).
    fn open_due(&self, group: GroupId) -> bool {
        let mut b = self.inner.open_backoff.lock();
        match b.get(&group) {
            Some(at) if std::time::Instant::now() < *at => false,
            Some(_) => {
                b.remove(&group);
                true
            }
            None => true,
        }
    }

    /// Reports a failed open; a corrupt group is not tried again for [`CORRUPT_GROUP_RETRY`]
    /// (the reconciler runs every 300 ms, and each try reports the bad record again).
    fn open_failed(&self, group: GroupId, e: &MeridianError) {
        let what = if group == GroupId::META {
            "open meta group"
        } else {
            "open range group"
        };
        if e.code == ErrorCode::Corruption {
            tracing::warn!(group_id = group.0, error = %e, "{what}: trying again in {CORRUPT_GROUP_RETRY:?}");
            self.inner
                .open_backoff
                .lock()
                .insert(group, std::time::Instant::now() + CORRUPT_GROUP_RETRY);
        } else {
            tracing::warn!(group_id = group.0, error = %e, "{what}");
        }
    }

    async fn open_group(
        &self,
        group: GroupId,
        initialize: Option<BTreeMap<NodeId, String>>,
    ) -> Result<(), MeridianError> {
        let _g = self.inner.admin_lock.lock().await;
        if self.group(group).is_some() {
            return Ok(());
        }
        let g = RaftGroup::open(
            &self.inner.cfg.raft,
            self.id(),
            group,
            self.inner.store.clone(),
            self.inner.router.clone(),
        )
        .await?;
        if let Some(voters) = initialize {
            g.initialize(&voters).await?;
        }
        self.inner.groups.write().insert(group, g);
        tracing::info!(node_id = self.id().0, group_id = group.0, "hosting group");
        Ok(())
    }

    /// Updates Raft gauges and counts leader changes.
    fn observe_groups(&self) {
        let groups = self.hosted_groups();
        let m = &self.inner.metrics;
        let mut led = 0;
        let mut term_max = 0;
        let mut last = self.inner.last_leaders.lock();
        for g in &groups {
            let s = g.status();
            if s.role == Role::Leader {
                led += 1;
            }
            term_max = term_max.max(s.term);
            let prev = last.insert(g.group(), s.leader);
            if prev.is_some_and(|p| p != s.leader) {
                m.raft_leader_changes.inc();
            }
            if let Some(l) = s.leader {
                self.inner.leader_cache.write().insert(g.group(), l);
            }
        }
        m.raft_groups_led.set(led);
        m.raft_groups_hosted.set(groups.len() as i64);
        m.raft_term_max.set(term_max as i64);
    }

    // ---- admin: hello, init, join, status ----

    pub fn hello(&self) -> Hello {
        let c = &self.inner.cfg;
        Hello {
            node_id: c.id,
            addr: c.advertise_addr.clone(),
            region: c.region.clone(),
            zone: c.zone.clone(),
            cluster_id: self.cluster_id(),
        }
    }

    /// Makes this node a member of a new cluster with the given map (from `cluster init`).
    pub async fn init(&self, map: ClusterMap) -> Result<(), MeridianError> {
        map.validate()?;
        if !map.nodes.contains_key(&self.id()) {
            return Err(MeridianError::new(
                ErrorCode::UnknownNode,
                format!("the map does not list node {}", self.id()),
            ));
        }
        {
            let _g = self.inner.admin_lock.lock().await;
            let current = self.cluster_id();
            if current == map.cluster_id.0 {
                return Ok(());
            }
            if current != 0 {
                return Err(MeridianError::new(
                    ErrorCode::AlreadyInitialized,
                    format!(
                        "node {} already belongs to cluster {current:016x}",
                        self.id()
                    ),
                ));
            }
            self.adopt_cluster(&map)?;
        }
        self.reconcile().await;
        Ok(())
    }

    fn adopt_cluster(&self, map: &ClusterMap) -> Result<(), MeridianError> {
        let bytes = postcard::to_allocvec(map)
            .map_err(|e| MeridianError::internal(format!("encode map: {e}")))?;
        self.inner
            .store
            .put_meta(NODE_GROUP, K_BOOTSTRAP_MAP, &bytes, false)
            .map_err(storage_err)?;
        put_u64(&*self.inner.store, K_CLUSTER_ID, map.cluster_id.0)?;
        *self.inner.bootstrap.write() = Some(map.clone());
        *self.inner.map_cache.write() = None;
        self.inner
            .cluster_id
            .store(map.cluster_id.0, Ordering::Release);
        tracing::info!(
            node_id = self.id().0,
            cluster_id = map.cluster_id.0,
            "joined cluster"
        );
        Ok(())
    }

    /// Joins an existing cluster through one of `seeds`; retries until one accepts.
    pub async fn join(&self, seeds: &[String]) -> Result<(), MeridianError> {
        if self.cluster_id() != 0 {
            return Ok(());
        }
        let c = &self.inner.cfg;
        let req = JoinRequest {
            info: NodeInfo {
                id: c.id,
                addr: c.advertise_addr.clone(),
                region: c.region.clone(),
                zone: c.zone.clone(),
                state: NodeState::Active,
            },
            cluster_id: self.cluster_id(),
        };
        let payload =
            postcard::to_allocvec(&req).map_err(|e| MeridianError::internal(e.to_string()))?;
        let mut last_err = MeridianError::unavailable("no seed address given");
        for seed in seeds {
            let env = self.envelope(
                NodeId(0),
                GroupId::META,
                M_JOIN,
                payload.clone(),
                self.inner.cfg.request_timeout,
            );
            match self.inner.transport.call_addr(seed, env).await {
                Ok(bytes) => {
                    let r: Result<ClusterMap, MeridianError> = decode(&bytes)?;
                    match r {
                        Ok(map) => {
                            {
                                let _g = self.inner.admin_lock.lock().await;
                                self.adopt_cluster(&map)?;
                            }
                            self.reconcile().await;
                            return Ok(());
                        }
                        Err(e) if e.code.is_retryable() => last_err = e,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => {
                    last_err = MeridianError::unavailable(format!("join through {seed}: {e}"))
                }
            }
        }
        Err(last_err)
    }

    async fn serve_join(&self, req: JoinRequest) -> Result<ClusterMap, MeridianError> {
        let map = self
            .cluster_map()
            .filter(|m| m.is_initialized())
            .ok_or_else(|| {
                MeridianError::new(
                    ErrorCode::NotInitialized,
                    "this node's cluster is not initialised yet",
                )
            })?;
        if req.cluster_id != 0 && req.cluster_id != map.cluster_id.0 {
            return Err(MeridianError::new(
                ErrorCode::WrongCluster,
                format!(
                    "node {} belongs to cluster {:016x}, not {:016x}",
                    req.info.id, req.cluster_id, map.cluster_id.0
                ),
            ));
        }
        let node = req.info.id;
        let addr = req.info.addr.clone();
        // Right after `init` the meta group may not hold the map yet: store it first
        // (idempotent for the same cluster).
        self.execute(GroupId::META, GroupOp::Meta(MetaCommand::Init(map)))
            .await?;
        self.execute(
            GroupId::META,
            GroupOp::Meta(MetaCommand::UpsertNode(req.info)),
        )
        .await?;
        self.execute(GroupId::META, GroupOp::AddLearner { node, addr })
            .await?;
        self.cluster_map()
            .ok_or_else(|| MeridianError::unavailable("cluster map not available"))
    }

    pub fn report(&self) -> NodeReport {
        let groups = self
            .hosted_groups()
            .iter()
            .map(|g| {
                let s = g.status();
                GroupReport {
                    group: s.group,
                    role: format!("{:?}", s.role).to_lowercase(),
                    leader: s.leader,
                    term: s.term,
                    applied_index: s.applied_index,
                    last_log_index: s.last_log_index,
                    revision: g.read(|st| st.kv.revision()),
                }
            })
            .collect();
        NodeReport {
            node_id: self.id(),
            cluster_id: self.cluster_id(),
            groups,
            map: self.cluster_map(),
            disk_bytes: self.inner.store.disk_bytes(),
            placement: self.placement_steps(),
        }
    }

    pub(crate) fn envelope(
        &self,
        to: NodeId,
        group: GroupId,
        method: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Envelope {
        Envelope {
            cluster_id: ClusterId(self.cluster_id()),
            from: self.id(),
            to,
            group,
            method: method.to_string(),
            payload,
            timeout,
        }
    }

    async fn dispatch(self, env: Envelope) -> Result<Vec<u8>, String> {
        let mine = self.cluster_id();
        let is_admin = env.method == M_HELLO || env.method == M_INIT;
        if !is_admin && env.cluster_id.0 != 0 && mine != 0 && env.cluster_id.0 != mine {
            return Err(format!(
                "wrong_cluster: message from cluster {:016x} reached node {} of cluster {mine:016x}",
                env.cluster_id.0,
                self.id()
            ));
        }
        if env.method.starts_with("raft.") {
            let Some(g) = self.group(env.group) else {
                return Err(format!(
                    "group {} is not hosted on node {}",
                    env.group,
                    self.id()
                ));
            };
            return g.handle_rpc(&env.method, &env.payload).await;
        }
        match env.method.as_str() {
            M_HELLO => encode(&self.hello()),
            M_INIT => {
                let map: ClusterMap = decode(&env.payload).map_err(|e| e.to_string())?;
                encode(&self.init(map).await)
            }
            M_JOIN => {
                let req: JoinRequest = decode(&env.payload).map_err(|e| e.to_string())?;
                encode(&self.serve_join(req).await)
            }
            M_STATUS => encode(&self.report()),
            M_PING => crate::probe::serve_ping(&self, &env),
            M_FORWARD => {
                let req: ForwardRequest = decode(&env.payload).map_err(|e| e.to_string())?;
                let r =
                    match tokio::time::timeout(env.timeout, self.execute_local(req.group, req.op))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(MeridianError::new(
                            ErrorCode::Timeout,
                            format!("group {} did not answer in time", req.group),
                        )),
                    };
                encode(&r)
            }
            other => Err(format!("unknown method {other:?}")),
        }
    }
}

impl Handler for Node {
    fn handle(&self, env: Envelope) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        self.clone().dispatch(env).boxed()
    }
}

fn addrs(map: &ClusterMap, ids: &[NodeId]) -> BTreeMap<NodeId, String> {
    ids.iter()
        .filter_map(|id| map.nodes.get(id).map(|n| (*id, n.addr.clone())))
        .collect()
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(v).map_err(|e| format!("encode reply: {e}"))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, MeridianError> {
    postcard::from_bytes(b).map_err(|e| MeridianError::invalid(format!("decode message: {e}")))
}

fn storage_err(e: meridian_storage::StorageError) -> MeridianError {
    match e {
        meridian_storage::StorageError::Corruption { .. } => {
            MeridianError::new(ErrorCode::Corruption, e.to_string())
        }
        _ => MeridianError::unavailable(format!("storage: {e}")),
    }
}

fn get_u64(store: &dyn LogStore, name: &str) -> Result<Option<u64>, MeridianError> {
    match store.get_meta(NODE_GROUP, name).map_err(storage_err)? {
        None => Ok(None),
        Some(b) if b.len() == 8 => Ok(Some(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))),
        Some(b) => Err(MeridianError::new(
            ErrorCode::Corruption,
            format!("{name} has {} bytes, want 8", b.len()),
        )),
    }
}

fn put_u64(store: &dyn LogStore, name: &str, v: u64) -> Result<(), MeridianError> {
    store
        .put_meta(NODE_GROUP, name, &v.to_le_bytes(), true)
        .map_err(storage_err)
}
