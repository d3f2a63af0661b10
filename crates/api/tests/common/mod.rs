//! A fake [`ClientApi`]: one in-memory `BTreeMap` with a revision counter, etcd's range rules,
//! request-id dedup, and hooks to inject errors and inspect what the API layer did.

#![allow(dead_code)]

pub mod http;

use meridian_node::{
    ClientApi, ClusterView, Consistency, NodeStatus, NodeView, PlacementView, RangeView,
    WriteOptions, placement_views,
};
use meridian_state::{ClusterMap, NodeInfo, NodeState, PlacementRule, RangeInfo, validate_rule};
use meridian_state::{
    Compare, CompareOp, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyValue,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, TxnRequest,
    TxnResponse,
};
use meridian_types::{ClusterId, ErrorCode, Limits, MeridianError, NodeId, RangeId, RequestId};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub const CLUSTER_ID: u64 = 7;
pub const NODE_ID: u64 = 1;

#[derive(Default)]
struct Store {
    kvs: BTreeMap<Vec<u8>, KeyValue>,
    revision: u64,
    compacted: u64,
    seen_puts: HashMap<RequestId, PutResponse>,
}

/// What the fake saw, for assertions.
#[derive(Default)]
pub struct Seen {
    /// Every `observe_request` call: `(op, outcome)`.
    pub observed: Vec<(&'static str, Result<(), ErrorCode>)>,
    /// The consistency of every read.
    pub consistencies: Vec<Consistency>,
    /// The last range request.
    pub last_range: Option<RangeRequest>,
    /// The options of every write.
    pub write_opts: Vec<WriteOptions>,
    /// Every watch opened.
    pub watches: Vec<meridian_node::WatchSpec>,
}

#[derive(Clone)]
pub struct FakeApi {
    store: Arc<Mutex<Store>>,
    pub seen: Arc<Mutex<Seen>>,
    /// Returned (once) by the next call that reaches the store.
    pub fail_next: Arc<Mutex<Option<MeridianError>>>,
    pub not_ready: Arc<Mutex<Option<MeridianError>>>,
    limits: Arc<Limits>,
    /// The cluster map placement rules are checked against and stored in: see [`topology`].
    pub map: Arc<Mutex<ClusterMap>>,
    /// What every watch sends, in order, before it ends.
    pub watch_script: Arc<Mutex<Vec<meridian_node::WatchMessage>>>,
    /// Leases: id → TTL.
    pub leases: Arc<Mutex<BTreeMap<i64, i64>>>,
    /// The open ends of the watches, so they stay open after their script.
    watch_senders: Arc<Mutex<Vec<tokio::sync::mpsc::Sender<meridian_node::WatchMessage>>>>,
}

/// Five active nodes (us-east zones a, b; eu-west zones a, b; ap-south zone a) and three ranges:
/// `["", "eu/")`, `["eu/", "eu0")`, `["eu0", "")`.
pub fn topology() -> ClusterMap {
    let mut m = ClusterMap {
        cluster_id: ClusterId(CLUSTER_ID),
        version: 1,
        ..Default::default()
    };
    for (id, region, zone) in [
        (1, "us-east", "a"),
        (2, "us-east", "b"),
        (3, "eu-west", "a"),
        (4, "eu-west", "b"),
        (5, "ap-south", "a"),
    ] {
        m.nodes.insert(
            NodeId(id),
            NodeInfo {
                id: NodeId(id),
                addr: format!("127.0.0.1:{}", 7000 + id),
                region: region.into(),
                zone: zone.into(),
                state: NodeState::Active,
            },
        );
    }
    let bounds: [(&[u8], &[u8]); 3] = [(b"", b"eu/"), (b"eu/", b"eu0"), (b"eu0", b"")];
    for (i, (start, end)) in bounds.into_iter().enumerate() {
        let id = RangeId(i as u64 + 1);
        m.ranges.insert(
            id,
            RangeInfo {
                id,
                start: start.to_vec(),
                end: end.to_vec(),
                replicas: vec![NodeId(1), NodeId(3), NodeId(5)],
                learners: vec![],
                version: 1,
                system: None,
            },
        );
    }
    m
}

impl Default for FakeApi {
    fn default() -> Self {
        Self::with_limits(Limits::default())
    }
}

impl FakeApi {
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            store: Arc::default(),
            seen: Arc::default(),
            fail_next: Arc::default(),
            not_ready: Arc::default(),
            limits: Arc::new(limits),
            map: Arc::new(Mutex::new(topology())),
            watch_script: Arc::default(),
            leases: Arc::default(),
            watch_senders: Arc::default(),
        }
    }

    pub fn fail_next(&self, err: MeridianError) {
        *self.fail_next.lock() = Some(err);
    }

    pub fn revision(&self) -> u64 {
        self.store.lock().revision
    }

    pub fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.store.lock().kvs.get(key).map(|kv| kv.value.clone())
    }

    pub fn observed(&self) -> Vec<(&'static str, Result<(), ErrorCode>)> {
        self.seen.lock().observed.clone()
    }

    fn injected(&self) -> Result<(), MeridianError> {
        match self.fail_next.lock().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MeridianError> {
        if key.is_empty() {
            return Err(MeridianError::invalid("key is empty"));
        }
        if key.len() > self.limits.key_bytes_max {
            return Err(MeridianError::new(ErrorCode::KeyTooLarge, "key too large"));
        }
        Ok(())
    }
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

impl Store {
    fn matching(&self, start: &[u8], end: &[u8]) -> Vec<KeyValue> {
        self.kvs
            .values()
            .filter(|kv| in_range(&kv.key, start, end))
            .cloned()
            .collect()
    }

    fn range(&self, req: &RangeRequest, page_max: u64) -> Result<RangeResponse, MeridianError> {
        if req.revision > self.revision {
            return Err(MeridianError::new(ErrorCode::FutureRevision, "future"));
        }
        if req.revision != 0 && req.revision < self.compacted {
            return Err(MeridianError::new(ErrorCode::Compacted, "compacted"));
        }
        let all = self.matching(&req.key, &req.range_end);
        let limit = if req.limit == 0 {
            page_max
        } else {
            req.limit.min(page_max)
        } as usize;
        let count = all.len() as u64;
        let more = all.len() > limit;
        let mut kvs: Vec<_> = if req.count_only {
            Vec::new()
        } else {
            all.into_iter().take(limit).collect()
        };
        if req.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        Ok(RangeResponse {
            kvs,
            more,
            count,
            revision: self.revision,
        })
    }

    fn put(&mut self, req: PutRequest, revision: u64) -> PutResponse {
        let prev = self.kvs.get(&req.key).cloned();
        let kv = KeyValue {
            key: req.key.clone(),
            value: req.value,
            create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease: req.lease,
        };
        self.kvs.insert(req.key, kv);
        PutResponse {
            prev_kv: if req.prev_kv { prev } else { None },
            revision,
        }
    }

    fn delete(&mut self, req: &DeleteRangeRequest, revision: u64) -> DeleteRangeResponse {
        let gone = self.matching(&req.key, &req.range_end);
        for kv in &gone {
            self.kvs.remove(&kv.key);
        }
        DeleteRangeResponse {
            deleted: gone.len() as u64,
            prev_kvs: if req.prev_kv { gone } else { Vec::new() },
            revision,
        }
    }

    fn holds(&self, c: &Compare) -> bool {
        let kvs = if c.range_end.is_empty() {
            vec![self.kvs.get(&c.key).cloned().unwrap_or_default()]
        } else {
            self.matching(&c.key, &c.range_end)
        };
        kvs.iter().all(|kv| {
            let ord = match &c.target {
                CompareTarget::Value(v) => kv.value.cmp(v),
                CompareTarget::Version(v) => kv.version.cmp(v),
                CompareTarget::CreateRevision(v) => kv.create_revision.cmp(v),
                CompareTarget::ModRevision(v) => kv.mod_revision.cmp(v),
                CompareTarget::Lease(v) => kv.lease.cmp(v),
            };
            match c.op {
                CompareOp::Equal => ord.is_eq(),
                CompareOp::NotEqual => ord.is_ne(),
                CompareOp::Greater => ord.is_gt(),
                CompareOp::Less => ord.is_lt(),
            }
        })
    }
}

impl ClientApi for FakeApi {
    async fn range(
        &self,
        req: RangeRequest,
        consistency: Consistency,
    ) -> Result<RangeResponse, MeridianError> {
        {
            let mut seen = self.seen.lock();
            seen.consistencies.push(consistency);
            seen.last_range = Some(req.clone());
        }
        self.injected()?;
        self.store
            .lock()
            .range(&req, self.limits.scan_page_max as u64)
    }

    async fn put(&self, req: PutRequest, opts: WriteOptions) -> Result<PutResponse, MeridianError> {
        self.seen.lock().write_opts.push(opts);
        self.injected()?;
        self.check_key(&req.key)?;
        if req.value.len() > self.limits.value_bytes_max {
            return Err(MeridianError::new(
                ErrorCode::ValueTooLarge,
                "value too large",
            ));
        }
        let mut s = self.store.lock();
        if let Some(id) = opts.request_id
            && let Some(done) = s.seen_puts.get(&id)
        {
            return Ok(done.clone());
        }
        s.revision += 1;
        let rev = s.revision;
        let resp = s.put(req, rev);
        if let Some(id) = opts.request_id {
            s.seen_puts.insert(id, resp.clone());
        }
        Ok(resp)
    }

    async fn delete_range(
        &self,
        req: DeleteRangeRequest,
        opts: WriteOptions,
    ) -> Result<DeleteRangeResponse, MeridianError> {
        self.seen.lock().write_opts.push(opts);
        self.injected()?;
        let mut s = self.store.lock();
        let rev = s.revision + 1;
        let resp = s.delete(&req, rev);
        if resp.deleted > 0 {
            s.revision = rev;
        }
        Ok(DeleteRangeResponse {
            revision: s.revision,
            ..resp
        })
    }

    async fn txn(&self, req: TxnRequest, opts: WriteOptions) -> Result<TxnResponse, MeridianError> {
        self.seen.lock().write_opts.push(opts);
        self.injected()?;
        if req.compare.len() + req.success.len() + req.failure.len() > self.limits.txn_ops_max {
            return Err(MeridianError::new(ErrorCode::TooManyTxnOps, "too many ops"));
        }
        let mut s = self.store.lock();
        let succeeded = req.compare.iter().all(|c| s.holds(c));
        let ops = if succeeded { req.success } else { req.failure };
        let writes = ops.iter().any(|op| !matches!(op, RequestOp::Range(_)));
        let rev = if writes { s.revision + 1 } else { s.revision };
        let mut responses = Vec::new();
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => {
                    ResponseOp::Range(s.range(&r, self.limits.scan_page_max as u64)?)
                }
                RequestOp::Put(p) => ResponseOp::Put(s.put(p, rev)),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(s.delete(&d, rev)),
            });
        }
        s.revision = rev;
        Ok(TxnResponse {
            succeeded,
            responses,
            revision: rev,
        })
    }

    async fn compact(&self, revision: u64) -> Result<u64, MeridianError> {
        self.injected()?;
        let mut s = self.store.lock();
        if revision > s.revision {
            return Err(MeridianError::new(ErrorCode::FutureRevision, "future"));
        }
        if revision < s.compacted {
            return Err(MeridianError::new(ErrorCode::Compacted, "compacted"));
        }
        s.compacted = revision;
        Ok(revision)
    }

    async fn cluster_view(&self) -> Result<ClusterView, MeridianError> {
        self.injected()?;
        let node = |id: u64, state: &str| NodeView {
            id,
            addr: format!("127.0.0.1:{}", 7000 + id),
            region: "eu-west".into(),
            zone: "a".into(),
            state: state.into(),
            healthy: true,
        };
        Ok(ClusterView {
            cluster_id: CLUSTER_ID,
            node_id: NODE_ID,
            nodes: vec![node(1, "active"), node(2, "active"), node(3, "removed")],
            ranges: vec![RangeView {
                id: 0,
                start: String::new(),
                end: String::new(),
                replicas: vec![1, 2],
                leader: Some(2),
                term: 4,
                applied_index: Some(10),
                revision: None,
                version: 1,
                rule: None,
                learners: vec![],
                leader_region: Some("eu-west".into()),
                system: None,
            }],
            latency: Vec::new(),
            placements: placement_views(&self.map.lock()),
            placement: vec![],
        })
    }

    async fn placements(&self) -> Result<Vec<PlacementView>, MeridianError> {
        self.injected()?;
        Ok(placement_views(&self.map.lock()))
    }

    async fn placement(&self, prefix: Vec<u8>) -> Result<PlacementView, MeridianError> {
        self.injected()?;
        placement_views(&self.map.lock())
            .into_iter()
            .find(|v| v.prefix.as_bytes() == prefix.as_slice())
            .ok_or_else(|| MeridianError::new(ErrorCode::KeyNotFound, "no placement rule"))
    }

    async fn set_placement(&self, rule: PlacementRule) -> Result<PlacementView, MeridianError> {
        self.injected()?;
        let mut m = self.map.lock();
        validate_rule(&rule, &m)?;
        m.apply(&meridian_state::MetaCommand::SetPlacement(rule.clone()))?;
        Ok(PlacementView::of(&rule, &m, false))
    }

    async fn delete_placement(&self, prefix: Vec<u8>) -> Result<bool, MeridianError> {
        self.injected()?;
        Ok(self.map.lock().placements.remove(&prefix).is_some())
    }

    async fn node_status(&self) -> Result<NodeStatus, MeridianError> {
        self.injected()?;
        Ok(NodeStatus {
            cluster_id: CLUSTER_ID,
            node_id: NODE_ID,
            version: "0.1.0".into(),
            db_size_bytes: 4096,
            leader: Some(2),
            raft_term: 4,
            raft_index: 11,
            raft_applied_index: 10,
            revision: self.revision(),
        })
    }

    async fn ready(&self) -> Result<(), MeridianError> {
        match self.not_ready.lock().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn identity(&self) -> (u64, u64) {
        (CLUSTER_ID, NODE_ID)
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn observe_request(&self, op: &'static str, outcome: Result<(), ErrorCode>, _seconds: f64) {
        self.seen.lock().observed.push((op, outcome));
    }

    fn metrics_text(&self) -> String {
        "# TYPE meridian_api_requests_total counter\nmeridian_api_requests_total 3\n# EOF\n".into()
    }

    async fn drain_node(&self, node: u64) -> Result<meridian_node::DrainStatus, MeridianError> {
        self.injected()?;
        Ok(meridian_node::DrainStatus {
            node,
            state: "draining".into(),
            replicas: 2,
            leaders: 1,
            meta_voter: false,
            done: false,
        })
    }

    async fn remove_node(&self, _node: u64) -> Result<(), MeridianError> {
        self.injected()
    }

    async fn watch(
        &self,
        spec: meridian_node::WatchSpec,
    ) -> Result<meridian_node::WatchStream, MeridianError> {
        self.injected()?;
        self.seen.lock().watches.push(spec);
        let script = self.watch_script.lock().clone();
        let (tx, rx) = tokio::sync::mpsc::channel(script.len().max(1));
        for m in script {
            let _ = tx.try_send(m);
        }
        self.watch_senders.lock().push(tx);
        Ok(meridian_node::WatchStream::from_channel(rx))
    }

    async fn lease_grant(&self, id: i64, ttl_s: i64) -> Result<(i64, i64), MeridianError> {
        self.injected()?;
        let mut l = self.leases.lock();
        let id = if id == 0 { l.len() as i64 + 100 } else { id };
        l.insert(id, ttl_s);
        Ok((id, ttl_s))
    }

    async fn lease_revoke(&self, id: i64) -> Result<(), MeridianError> {
        self.leases
            .lock()
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| meridian_state::lease::lease_not_found(id))
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<i64, MeridianError> {
        self.injected()?;
        self.leases
            .lock()
            .get(&id)
            .copied()
            .ok_or_else(|| meridian_state::lease::lease_not_found(id))
    }

    async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<meridian_node::LeaseInfo, MeridianError> {
        let ttl_s = self
            .leases
            .lock()
            .get(&id)
            .copied()
            .ok_or_else(|| meridian_state::lease::lease_not_found(id))?;
        Ok(meridian_node::LeaseInfo {
            id,
            ttl_s: ttl_s - 1,
            granted_ttl_s: ttl_s,
            keys: if keys { vec![b"k1".to_vec()] } else { vec![] },
        })
    }

    async fn lease_list(&self) -> Result<Vec<i64>, MeridianError> {
        Ok(self.leases.lock().keys().copied().collect())
    }
}
