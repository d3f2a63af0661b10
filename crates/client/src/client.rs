//! [`Client`]: keys over etcd's v3 gRPC `KV` service, the cluster map over HTTP, with failover
//! across endpoints.

use crate::config::{ClientConfig, RESPONSE_BYTES_MAX};
use crate::consistency::{
    CONSISTENCY_METADATA, Consistency, MIN_REVISION_METADATA, STALENESS_METADATA,
};
use crate::endpoint::{lazy_channel, parse_endpoint, parse_endpoints};
use crate::error::{ClientError, Idempotence};
use crate::http_json::get_json;
use crate::key_value::KeyValue;
use crate::keys::{prefix_range_end, scan_bounds};
use crate::results::{CasResult, DeleteResult, GetResult, PutResult, ScanOptions, ScanPage};
use crate::routing::Routing;
use crate::topology::{Topology, order_targets};
use meridian_node::ClusterView;
use meridian_proto::etcd::etcdserverpb as pb;
use meridian_proto::etcd::etcdserverpb::kv_client::KvClient;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// gRPC metadata key with a write's client request id, the same for every retry of one call,
/// so a server that reads it can apply a retried write once (the HTTP API's `Idempotency-Key`).
pub const IDEMPOTENCY_METADATA: &str = "idempotency-key";

/// Counter making request ids unique within this process.
static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);

/// How long a round-trip probe of one node may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A client of a Meridian cluster. Cheap to clone; clones share connections.
///
/// It learns the topology from `GET /v1/cluster` in the background (every
/// [`crate::TOPOLOGY_REFRESH`] and after failures) and times its round trip to each node. Writes
/// and linearizable or lease reads go straight to the node leading the key's range; bounded and
/// local reads to the nearest node holding a replica, with the client's session token for that
/// range (`min_revision`), so the client always reads its own writes. Until the topology is
/// known, and when routed nodes fail, any node serves any request (it forwards): the client
/// sends each call to the endpoint that last answered and moves on to the next after a
/// connection error, `unavailable`-like answers or a timeout (the latter only for calls safe to
/// repeat), at most [`ClientConfig::attempts_max`] times.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoints: Vec<Arc<Endpoint>>,
    /// Nodes learned from the topology, by base URL, connected lazily.
    discovered: Mutex<HashMap<String, Arc<Endpoint>>>,
    routing: Mutex<Routing>,
    /// Whether a topology refresh is running (one at a time).
    refreshing: AtomicBool,
    /// Index of the endpoint that answered last; calls start there.
    preferred_idx: AtomicUsize,
    config: ClientConfig,
    http: reqwest::Client,
}

/// One node: its base URL and a lazily connected gRPC channel.
#[derive(Debug)]
struct Endpoint {
    url: String,
    kv: KvClient<Channel>,
}

impl Client {
    /// A client of the nodes at `endpoints` (`host:port` or `http://host:port`), with the
    /// default [`ClientConfig`]. Connects lazily: nothing is sent until the first call. Must be
    /// called inside a tokio runtime.
    pub fn connect(endpoints: Vec<String>) -> Result<Self, ClientError> {
        Self::connect_with(endpoints, ClientConfig::default())
    }

    /// [`Client::connect`] with explicit timeouts and retry bounds.
    pub fn connect_with(endpoints: Vec<String>, config: ClientConfig) -> Result<Self, ClientError> {
        if config.attempts_max == 0 {
            return Err(ClientError::InvalidArgument(
                "attempts_max must be at least 1".into(),
            ));
        }
        let endpoints = parse_endpoints(&endpoints)?
            .into_iter()
            .map(|url| new_endpoint(url, &config).map(Arc::new))
            .collect::<Result<Vec<_>, ClientError>>()?;
        // The per-call timeout is applied around each attempt, as for gRPC.
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| ClientError::InvalidArgument(format!("build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                endpoints,
                discovered: Mutex::default(),
                routing: Mutex::default(),
                refreshing: AtomicBool::new(false),
                preferred_idx: AtomicUsize::new(0),
                config,
                http,
            }),
        })
    }

    /// The endpoints' base URLs, e.g. `http://127.0.0.1:2379`.
    pub fn endpoints(&self) -> Vec<&str> {
        self.inner
            .endpoints
            .iter()
            .map(|e| e.url.as_str())
            .collect()
    }

    /// The value of `key`, `None` if it does not exist.
    pub async fn get(
        &self,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>, ClientError> {
        Ok(self.get_with_revision(key, consistency).await?.kv)
    }

    /// The value of `key` and the revision the read saw.
    pub async fn get_with_revision(
        &self,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<GetResult, ClientError> {
        let req = pb::RangeRequest {
            key: key.as_ref().to_vec(),
            serializable: consistency.serializable(),
            ..Default::default()
        };
        let (resp, staleness_ms) = self.range(req, consistency).await?;
        Ok(GetResult {
            revision: header_revision(resp.header.as_ref()),
            kv: resp.kvs.into_iter().next().map(KeyValue::from),
            staleness_ms,
        })
    }

    /// Writes `value` at `key`; returns the write's revision.
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<u64, ClientError> {
        // Lease 0 is etcd's "no lease".
        self.put_with_lease(key, value, 0).await
    }

    /// Writes `value` at `key` attached to `lease` (the key is deleted when the lease ends);
    /// returns the write's revision.
    pub async fn put_with_lease(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        lease: i64,
    ) -> Result<u64, ClientError> {
        let req = pb::PutRequest {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            lease,
            ..Default::default()
        };
        let resp = self.put_request(req, Idempotence::Idempotent).await?;
        Ok(header_revision(resp.header.as_ref()))
    }

    /// Writes `value` at `key` and returns the previous key-value too, if there was one.
    pub async fn put_prev(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<PutResult, ClientError> {
        let req = pb::PutRequest {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            prev_kv: true,
            ..Default::default()
        };
        // A repeated put would report its own first try as the previous value.
        let resp = self.put_request(req, Idempotence::NotIdempotent).await?;
        Ok(PutResult {
            revision: header_revision(resp.header.as_ref()),
            prev_kv: resp.prev_kv.map(KeyValue::from),
        })
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<DeleteResult, ClientError> {
        let req = pb::DeleteRangeRequest {
            key: key.as_ref().to_vec(),
            ..Default::default()
        };
        self.delete_range(req).await
    }

    /// Deletes every key starting with `prefix` (every key for an empty prefix). A prefix that
    /// spans several ranges is deleted range by range: each part atomic, the whole not.
    pub async fn delete_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> Result<DeleteResult, ClientError> {
        let (key, range_end) = scan_bounds(prefix.as_ref(), None);
        debug_assert_eq!(range_end, prefix_range_end(prefix.as_ref()));
        self.delete_range(pb::DeleteRangeRequest {
            key,
            range_end,
            ..Default::default()
        })
        .await
    }

    /// Up to `limit` keys (0: the server's page limit) starting with `prefix`, after `after`
    /// (exclusive), read linearizably.
    pub async fn scan(
        &self,
        prefix: impl AsRef<[u8]>,
        limit: u64,
        after: Option<&[u8]>,
    ) -> Result<ScanPage, ClientError> {
        self.scan_with(&ScanOptions {
            prefix: prefix.as_ref().to_vec(),
            limit,
            after: after.map(<[u8]>::to_vec),
            ..Default::default()
        })
        .await
    }

    /// One page of a scan, as `opts` says.
    pub async fn scan_with(&self, opts: &ScanOptions) -> Result<ScanPage, ClientError> {
        let (key, range_end) = scan_bounds(&opts.prefix, opts.after.as_deref());
        let req = pb::RangeRequest {
            key,
            range_end,
            limit: to_wire("limit", opts.limit)?,
            revision: to_wire("revision", opts.revision)?,
            serializable: opts.consistency.serializable(),
            ..Default::default()
        };
        let (resp, staleness_ms) = self.range(req, opts.consistency).await?;
        Ok(ScanPage {
            revision: header_revision(resp.header.as_ref()),
            more: resp.more,
            count: u64::try_from(resp.count).unwrap_or(0),
            kvs: resp.kvs.into_iter().map(KeyValue::from).collect(),
            staleness_ms,
        })
    }

    /// Sets `key` to `new_value` if its value is `expected`, or, for `None`, if it does not
    /// exist. Returns whether it did.
    pub async fn cas(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new_value: impl AsRef<[u8]>,
    ) -> Result<bool, ClientError> {
        Ok(self
            .compare_and_set(key, expected, new_value)
            .await?
            .succeeded)
    }

    /// [`Client::cas`], with the revision of the answer.
    pub async fn compare_and_set(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new_value: impl AsRef<[u8]>,
    ) -> Result<CasResult, ClientError> {
        let key = key.as_ref().to_vec();
        let compare = match expected {
            Some(value) => pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Value as i32,
                key: key.clone(),
                range_end: Vec::new(),
                target_union: Some(TargetUnion::Value(value.to_vec())),
            },
            None => pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Create as i32,
                key: key.clone(),
                range_end: Vec::new(),
                target_union: Some(TargetUnion::CreateRevision(0)),
            },
        };
        let put = pb::PutRequest {
            key,
            value: new_value.as_ref().to_vec(),
            ..Default::default()
        };
        let txn = pb::TxnRequest {
            compare: vec![compare],
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(put)),
            }],
            failure: Vec::new(),
        };
        let resp = self.txn(txn).await?;
        Ok(CasResult {
            succeeded: resp.succeeded,
            revision: header_revision(resp.header.as_ref()),
        })
    }

    /// An etcd transaction, passed through as is. Every key it touches must live in one range
    /// (`cross_range_txn`). Not retried after a timeout: it may have been applied.
    pub async fn txn(&self, txn: pb::TxnRequest) -> Result<pb::TxnResponse, ClientError> {
        let timeout = self.inner.config.call_timeout;
        let request_id = next_request_id();
        let key = txn_key(&txn).unwrap_or_default();
        let route = self.route(&key, b"", false);
        let resp = self
            .failover_to(Idempotence::NotIdempotent, route.targets, |ep| {
                let mut kv = ep.kv.clone();
                let req = write_request(txn.clone(), timeout, &request_id);
                let url = ep.url.clone();
                async move {
                    kv.txn(req)
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| status_error(&url, &s))
                }
            })
            .await?;
        self.observe(route.range, header_revision(resp.header.as_ref()));
        Ok(resp)
    }

    /// The cluster map (nodes, ranges, leaders) as the first endpoint that answers knows it,
    /// from `GET /v1/cluster`.
    pub async fn cluster_view(&self) -> Result<ClusterView, ClientError> {
        let http = self.inner.http.clone();
        self.failover(Idempotence::Idempotent, |ep| {
            let http = http.clone();
            let url = ep.url.clone();
            async move { get_json::<ClusterView>(&http, &url, "/v1/cluster").await }
        })
        .await
    }

    /// Which node leads the range of each key, from [`Client::cluster_view`].
    pub async fn topology(&self) -> Result<Topology, ClientError> {
        Ok(Topology::from_view(&self.cluster_view().await?))
    }

    /// Fetches the topology and times a round trip to each node now, rather than in the
    /// background; the calls that follow are routed by it.
    pub async fn refresh_topology(&self) -> Result<(), ClientError> {
        let t = self.topology().await?;
        let probes = t.node_addrs().into_iter().map(|addr| {
            let http = self.inner.http.clone();
            let addr = addr.to_owned();
            async move {
                let url = parse_endpoint(&addr).ok()?;
                let started = tokio::time::Instant::now();
                let probe = http.get(format!("{url}/healthz")).send();
                match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                    Ok(Ok(_)) => Some((addr, started.elapsed())),
                    _ => None,
                }
            }
        });
        let rtts = futures::future::join_all(probes).await;
        let mut r = self.routing();
        for (addr, rtt) in rtts.into_iter().flatten() {
            r.record_rtt(&addr, rtt);
        }
        r.set_topology(t, tokio::time::Instant::now());
        Ok(())
    }

    /// The topology the client routes by, if it has learned one.
    pub fn cached_topology(&self) -> Option<Arc<Topology>> {
        self.routing().topology.clone()
    }

    /// The session token the client sends with a bounded or local read of `key`: the highest
    /// revision it has seen from the key's range.
    pub fn session_token(&self, key: impl AsRef<[u8]>) -> u64 {
        let r = self.routing();
        let range = r.range(key.as_ref(), b"").map(|x| x.id);
        r.tokens.token(range)
    }

    fn routing(&self) -> MutexGuard<'_, Routing> {
        self.inner
            .routing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a background topology refresh if one is due and none is running.
    fn refresh_if_due(&self) {
        if !self.routing().needs_refresh(tokio::time::Instant::now()) {
            return;
        }
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.inner.refreshing.store(false, Ordering::Release);
            return;
        };
        let client = self.clone();
        rt.spawn(async move {
            if let Err(e) = client.refresh_topology().await {
                tracing::debug!(error = %e, "topology refresh failed");
                // Try again at the next call, not at once.
                client.routing().fetched_at = Some(tokio::time::Instant::now());
                client.routing().dirty = false;
            }
            client.inner.refreshing.store(false, Ordering::Release);
        });
    }

    /// Where to send a call on `[key, range_end)`: the targets best first (the leader, or for
    /// `follower_ok` the nearest replicas), the range and the session token for it.
    fn route(&self, key: &[u8], range_end: &[u8], follower_ok: bool) -> Route {
        self.refresh_if_due();
        let (addrs, range, token) = {
            let r = self.routing();
            let route = r.range(key, range_end);
            let addrs: Vec<String> = route
                .as_ref()
                .map(|route| {
                    order_targets(route, follower_ok, |a| r.rtt.get(a).copied())
                        .into_iter()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let range = route.map(|x| x.id);
            (addrs, range, r.tokens.token(range))
        };
        let targets = addrs.iter().filter_map(|a| self.endpoint_for(a)).collect();
        Route {
            targets,
            range,
            token,
        }
    }

    /// The endpoint of a node address from the topology, connecting lazily.
    fn endpoint_for(&self, addr: &str) -> Option<Arc<Endpoint>> {
        let url = parse_endpoint(addr).ok()?;
        if let Some(ep) = self.inner.endpoints.iter().find(|e| e.url == url) {
            return Some(ep.clone());
        }
        let mut found = self
            .inner
            .discovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ep) = found.get(&url) {
            return Some(ep.clone());
        }
        let ep = Arc::new(new_endpoint(url.clone(), &self.inner.config).ok()?);
        found.insert(url, ep.clone());
        Some(ep)
    }

    /// Records a revision seen from `range` in the session tokens.
    fn observe(&self, range: Option<u64>, revision: u64) {
        if revision > 0 {
            self.routing().tokens.observe(range, revision);
        }
    }

    async fn range(
        &self,
        req: pb::RangeRequest,
        consistency: Consistency,
    ) -> Result<(pb::RangeResponse, Option<u64>), ClientError> {
        let timeout = self.inner.config.call_timeout;
        let route = self.route(&req.key, &req.range_end, consistency.follower_may_serve());
        let token = consistency.follower_may_serve().then_some(route.token);
        let (resp, staleness_ms) = self
            .failover_to(Idempotence::Idempotent, route.targets, |ep| {
                let mut kv = ep.kv.clone();
                let req = read_request(req.clone(), timeout, consistency, token);
                let url = ep.url.clone();
                async move {
                    let resp = kv.range(req).await.map_err(|s| status_error(&url, &s))?;
                    let staleness_ms = resp
                        .metadata()
                        .get(STALENESS_METADATA)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    Ok((resp.into_inner(), staleness_ms))
                }
            })
            .await?;
        self.observe(route.range, header_revision(resp.header.as_ref()));
        Ok((resp, staleness_ms))
    }

    async fn put_request(
        &self,
        put: pb::PutRequest,
        idempotence: Idempotence,
    ) -> Result<pb::PutResponse, ClientError> {
        let timeout = self.inner.config.call_timeout;
        let request_id = next_request_id();
        let route = self.route(&put.key, b"", false);
        let resp = self
            .failover_to(idempotence, route.targets, |ep| {
                let mut kv = ep.kv.clone();
                let req = write_request(put.clone(), timeout, &request_id);
                let url = ep.url.clone();
                async move {
                    kv.put(req)
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| status_error(&url, &s))
                }
            })
            .await?;
        self.observe(route.range, header_revision(resp.header.as_ref()));
        Ok(resp)
    }

    async fn delete_range(&self, del: pb::DeleteRangeRequest) -> Result<DeleteResult, ClientError> {
        let timeout = self.inner.config.call_timeout;
        let request_id = next_request_id();
        let route = self.route(&del.key, &del.range_end, false);
        let resp = self
            .failover_to(Idempotence::Idempotent, route.targets, |ep| {
                let mut kv = ep.kv.clone();
                let req = write_request(del.clone(), timeout, &request_id);
                let url = ep.url.clone();
                async move {
                    kv.delete_range(req)
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| status_error(&url, &s))
                }
            })
            .await?;
        self.observe(route.range, header_revision(resp.header.as_ref()));
        Ok(DeleteResult {
            deleted: u64::try_from(resp.deleted).unwrap_or(0),
            revision: header_revision(resp.header.as_ref()),
        })
    }

    /// Runs `attempt` against one endpoint after another, starting at the preferred one, until
    /// it succeeds, fails with an error that must not fail over, or the attempts run out.
    async fn failover<T, F, Fut>(
        &self,
        idempotence: Idempotence,
        attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(&Endpoint) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        self.failover_to(idempotence, Vec::new(), attempt).await
    }

    /// [`Client::failover`], trying `first` (routed targets, best first) before the configured
    /// endpoints. A failed routed target marks the topology for a refresh.
    async fn failover_to<T, F, Fut>(
        &self,
        idempotence: Idempotence,
        first: Vec<Arc<Endpoint>>,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(&Endpoint) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let inner = &*self.inner;
        let start = inner.preferred_idx.load(Ordering::Relaxed);
        let n_routed = first.len();
        let mut order = first;
        let configured = inner.endpoints.len();
        for i in 0..configured {
            let ep = &inner.endpoints[(start + i) % configured];
            if !order.iter().any(|o| o.url == ep.url) {
                order.push(ep.clone());
            }
        }
        let n = order.len();
        let timeout = inner.config.call_timeout;
        let mut last = None;
        for i in 0..inner.config.attempts_max {
            let pause = inner.config.backoff_before(i, n);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let ep = &order[i as usize % n];
            let err = match tokio::time::timeout(timeout, attempt(ep)).await {
                Ok(Ok(value)) => {
                    if let Some(idx) = inner.endpoints.iter().position(|e| e.url == ep.url) {
                        inner.preferred_idx.store(idx, Ordering::Relaxed);
                    }
                    return Ok(value);
                }
                Ok(Err(e)) => e,
                Err(_) => ClientError::Timeout {
                    endpoint: ep.url.clone(),
                    timeout_ms: millis(timeout),
                },
            };
            if (i as usize % n) < n_routed {
                self.routing().dirty = true;
            }
            if !err.should_failover(idempotence) {
                return Err(err);
            }
            tracing::debug!(endpoint = %ep.url, attempt = i, code = err.code(), error = %err, "trying the next endpoint");
            last = Some(err);
        }
        let last =
            last.unwrap_or_else(|| ClientError::InvalidArgument("no attempt was made".into()));
        Err(ClientError::Exhausted {
            attempts: inner.config.attempts_max,
            last: Box::new(last),
        })
    }
}

/// Where one call goes.
struct Route {
    targets: Vec<Arc<Endpoint>>,
    range: Option<u64>,
    token: u64,
}

fn new_endpoint(url: String, config: &ClientConfig) -> Result<Endpoint, ClientError> {
    let channel = lazy_channel(&url, config.connect_timeout)?;
    let kv = KvClient::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX);
    Ok(Endpoint { url, kv })
}

/// The key a transaction is routed by: its first compare's or operation's.
fn txn_key(t: &pb::TxnRequest) -> Option<Vec<u8>> {
    if let Some(c) = t.compare.first() {
        return Some(c.key.clone());
    }
    use pb::request_op::Request as R;
    t.success
        .iter()
        .chain(&t.failure)
        .find_map(|op| match op.request.as_ref()? {
            R::RequestRange(r) => Some(r.key.clone()),
            R::RequestPut(p) => Some(p.key.clone()),
            R::RequestDeleteRange(d) => Some(d.key.clone()),
            R::RequestTxn(t) => txn_key(t),
        })
}

/// A read request with its deadline, the consistency etcd cannot say (`lease`, `bounded`) and,
/// for follower reads, the session token.
fn read_request<T>(
    msg: T,
    timeout: Duration,
    consistency: Consistency,
    min_revision: Option<u64>,
) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(timeout);
    if let Some(v) = consistency
        .metadata()
        .and_then(|c| MetadataValue::try_from(c.as_str()).ok())
    {
        req.metadata_mut().insert(CONSISTENCY_METADATA, v);
    }
    if let Some(t) = min_revision.filter(|t| *t > 0) {
        req.metadata_mut()
            .insert(MIN_REVISION_METADATA, MetadataValue::from(t));
    }
    req
}

/// A write request with its deadline and client request id.
fn write_request<T>(msg: T, timeout: Duration, request_id: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(timeout);
    if let Ok(v) = MetadataValue::try_from(request_id) {
        req.metadata_mut().insert(IDEMPOTENCY_METADATA, v);
    }
    req
}

/// A request id unique across processes and time: pid, clock and a counter.
fn next_request_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seq = REQUEST_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("mc-{:x}-{nanos:x}-{seq:x}", std::process::id())
}

fn status_error(endpoint: &str, status: &tonic::Status) -> ClientError {
    ClientError::from_status(endpoint, status)
}

/// The revision of a response header; 0 when absent.
fn header_revision(header: Option<&pb::ResponseHeader>) -> u64 {
    header.map_or(0, |h| u64::try_from(h.revision).unwrap_or(0))
}

/// A count or revision as etcd's signed wire integer.
fn to_wire(field: &str, value: u64) -> Result<i64, ClientError> {
    i64::try_from(value)
        .map_err(|_| ClientError::InvalidArgument(format!("{field} {value} is too large")))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
