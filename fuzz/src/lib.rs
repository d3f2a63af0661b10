//! Shared pieces of the fuzz targets: an in-memory [`ClientApi`] over the real pure state
//! machine, a tokio runtime, and the checks every target applies to an answer.
//!
//! The client API a fuzz input reaches is `FuzzApi`: one range, its state a real
//! [`GroupState`] (MVCC `KvState` plus request-id dedup), with the node's validation against
//! [`Limits`] repeated in front of it (`meridian_node::Node` needs a cluster, disks and Raft,
//! far too slow per input). The limits are small so the fuzzer meets every one of them with
//! short inputs.

use meridian_node::{
    ClientApi, ClusterView, Consistency, NodeStatus, NodeView, PlacementView, RangeView,
    WriteOptions,
};
use meridian_state::{
    Command, CommandResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, GroupState,
    KvCommand, KvEntry, KvResult, PlacementRule, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use meridian_types::{ErrorCode, Limits, MeridianError, RequestId};
use parking_lot::Mutex;
use std::sync::{Arc, OnceLock};

pub const CLUSTER_ID: u64 = 7;
pub const NODE_ID: u64 = 1;

/// Small limits: the fuzzer reaches `key_too_large`, `value_too_large`, `too_many_txn_ops`,
/// `request_too_large` and page capping with inputs of a few hundred bytes.
pub const FUZZ_LIMITS: Limits = Limits {
    key_bytes_max: 64,
    value_bytes_max: 256,
    request_bytes_max: 2048,
    txn_ops_max: 8,
    scan_page_max: 16,
};

/// Every stable error code, as a client sees it.
pub const ERROR_CODES: &[ErrorCode] = &[
    ErrorCode::InvalidArgument,
    ErrorCode::KeyTooLarge,
    ErrorCode::ValueTooLarge,
    ErrorCode::RequestTooLarge,
    ErrorCode::TooManyTxnOps,
    ErrorCode::LimitTooLarge,
    ErrorCode::CrossRangeTxn,
    ErrorCode::KeyNotFound,
    ErrorCode::Compacted,
    ErrorCode::FutureRevision,
    ErrorCode::NotLeader,
    ErrorCode::RangeMoved,
    ErrorCode::Unavailable,
    ErrorCode::Timeout,
    ErrorCode::NotInitialized,
    ErrorCode::AlreadyInitialized,
    ErrorCode::WrongCluster,
    ErrorCode::UnknownNode,
    ErrorCode::Corruption,
    ErrorCode::Internal,
];

/// Whether `s` is one of the stable error code strings.
pub fn is_error_code(s: &str) -> bool {
    ERROR_CODES.iter().any(|c| c.as_str() == s)
}

/// One current-thread runtime per fuzzing process: building one per input would dominate.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the fuzzing runtime")
    })
}

/// A one-range node in memory. Clones share the state.
#[derive(Clone)]
pub struct FuzzApi {
    state: Arc<Mutex<GroupState>>,
    next_request_id: Arc<Mutex<u128>>,
    limits: Arc<Limits>,
}

impl FuzzApi {
    /// An empty store with [`FUZZ_LIMITS`].
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            next_request_id: Arc::new(Mutex::new(1 << 100)),
            limits: Arc::new(FUZZ_LIMITS),
        }
    }

    /// A store holding a few keys over a few revisions (one of them deleted, one compacted away),
    /// so reads, compares and revision filters have something to find.
    pub fn seeded() -> Self {
        let api = Self::new();
        let mut s = api.state.lock();
        let put = |k: &str, v: &str| {
            RequestOp::Put(PutRequest {
                key: k.into(),
                value: v.into(),
                prev_kv: false,
                lease: 0,
                ignore_lease: false,
                ignore_value: false,
            })
        };
        let writes = [
            vec![put("a", "1"), put("b", "2")],
            vec![put("a", "3")],
            vec![put("c/x", "4"), put("c/y", "5")],
            vec![RequestOp::DeleteRange(DeleteRangeRequest {
                key: "b".into(),
                range_end: Vec::new(),
                prev_kv: false,
            })],
            vec![put("d", "6")],
        ];
        for success in writes {
            let entry = KvEntry {
                request_id: None,
                hlc: 0,
                cmd: KvCommand::Txn(TxnRequest {
                    compare: Vec::new(),
                    success,
                    failure: Vec::new(),
                }),
            };
            let r = s.apply(&Command::Kv(entry));
            assert!(matches!(r, CommandResult::Kv(Ok(_))), "seed write: {r:?}");
        }
        let compact = KvEntry {
            request_id: None,
            hlc: 0,
            cmd: KvCommand::Compact { revision: 2 },
        };
        let r = s.apply(&Command::Kv(compact));
        assert!(matches!(r, CommandResult::Kv(Ok(_))), "seed compact: {r:?}");
        drop(s);
        api
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MeridianError> {
        if key.is_empty() {
            return Err(MeridianError::invalid("key is not provided"));
        }
        self.check_key_size(key)
    }

    fn check_key_size(&self, key: &[u8]) -> Result<(), MeridianError> {
        let max = self.limits.key_bytes_max;
        if key.len() > max {
            return Err(MeridianError::new(
                ErrorCode::KeyTooLarge,
                format!("key of {} bytes is over the limit of {max}", key.len()),
            ));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), MeridianError> {
        let max = self.limits.value_bytes_max;
        if value.len() > max {
            return Err(MeridianError::new(
                ErrorCode::ValueTooLarge,
                format!("value of {} bytes is over the limit of {max}", value.len()),
            ));
        }
        Ok(())
    }

    /// Applies one write through the real state machine, as a range leader would.
    fn write(&self, req: TxnRequest, opts: WriteOptions) -> Result<TxnResponse, MeridianError> {
        let request_id = opts.request_id.unwrap_or_else(|| {
            let mut n = self.next_request_id.lock();
            *n += 1;
            RequestId(*n)
        });
        let entry = KvEntry {
            request_id: Some(request_id),
            hlc: 0,
            cmd: KvCommand::Txn(req),
        };
        match self.state.lock().apply(&Command::Kv(entry)) {
            CommandResult::Kv(Ok(KvResult::Txn(t))) => Ok(t),
            CommandResult::Kv(Err(e)) => Err(e),
            other => Err(MeridianError::internal(format!(
                "unexpected result {other:?}"
            ))),
        }
    }
}

impl Default for FuzzApi {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientApi for FuzzApi {
    async fn range(
        &self,
        mut req: RangeRequest,
        _consistency: Consistency,
    ) -> Result<RangeResponse, MeridianError> {
        self.check_key(&req.key)?;
        self.check_key_size(&req.range_end)?;
        let page = self.limits.scan_page_max as u64;
        if req.limit == 0 || req.limit > page {
            req.limit = page;
        }
        self.state.lock().kv.range(&req)
    }

    async fn put(&self, req: PutRequest, opts: WriteOptions) -> Result<PutResponse, MeridianError> {
        self.check_key(&req.key)?;
        self.check_value(&req.value)?;
        let t = self.write(
            TxnRequest {
                compare: Vec::new(),
                success: vec![RequestOp::Put(req)],
                failure: Vec::new(),
            },
            opts,
        )?;
        match t.responses.into_iter().next() {
            Some(ResponseOp::Put(p)) => Ok(p),
            other => Err(MeridianError::internal(format!(
                "unexpected put response {other:?}"
            ))),
        }
    }

    async fn delete_range(
        &self,
        req: DeleteRangeRequest,
        opts: WriteOptions,
    ) -> Result<DeleteRangeResponse, MeridianError> {
        self.check_key(&req.key)?;
        self.check_key_size(&req.range_end)?;
        let t = self.write(
            TxnRequest {
                compare: Vec::new(),
                success: vec![RequestOp::DeleteRange(req)],
                failure: Vec::new(),
            },
            opts,
        )?;
        match t.responses.into_iter().next() {
            Some(ResponseOp::DeleteRange(d)) => Ok(d),
            other => Err(MeridianError::internal(format!(
                "unexpected delete response {other:?}"
            ))),
        }
    }

    async fn txn(&self, req: TxnRequest, opts: WriteOptions) -> Result<TxnResponse, MeridianError> {
        let n_ops = req.compare.len() + req.success.len() + req.failure.len();
        let max = self.limits.txn_ops_max;
        if n_ops > max {
            return Err(MeridianError::new(
                ErrorCode::TooManyTxnOps,
                format!("transaction of {n_ops} operations is over the limit of {max}"),
            ));
        }
        for c in &req.compare {
            self.check_key_size(&c.key)?;
            if let CompareTarget::Value(v) = &c.target {
                self.check_value(v)?;
            }
        }
        for op in req.success.iter().chain(req.failure.iter()) {
            match op {
                RequestOp::Range(r) => {
                    self.check_key(&r.key)?;
                    self.check_key_size(&r.range_end)?;
                }
                RequestOp::Put(p) => {
                    self.check_key(&p.key)?;
                    self.check_value(&p.value)?;
                }
                RequestOp::DeleteRange(d) => {
                    self.check_key(&d.key)?;
                    self.check_key_size(&d.range_end)?;
                }
            }
        }
        self.write(req, opts)
    }

    async fn compact(&self, revision: u64) -> Result<u64, MeridianError> {
        let entry = KvEntry {
            request_id: None,
            hlc: 0,
            cmd: KvCommand::Compact { revision },
        };
        match self.state.lock().apply(&Command::Kv(entry)) {
            CommandResult::Kv(Ok(_)) => Ok(revision),
            CommandResult::Kv(Err(e)) => Err(e),
            other => Err(MeridianError::internal(format!(
                "unexpected result {other:?}"
            ))),
        }
    }

    async fn cluster_view(&self) -> Result<ClusterView, MeridianError> {
        Ok(ClusterView {
            cluster_id: CLUSTER_ID,
            node_id: NODE_ID,
            nodes: vec![NodeView {
                id: NODE_ID,
                addr: "127.0.0.1:7001".into(),
                region: "local".into(),
                zone: "a".into(),
                state: "active".into(),
                healthy: true,
            }],
            ranges: vec![RangeView {
                id: 1,
                start: String::new(),
                end: String::new(),
                replicas: vec![NODE_ID],
                leader: Some(NODE_ID),
                term: 1,
                applied_index: Some(1),
                revision: Some(self.state.lock().kv.revision()),
                version: 1,
                rule: Some(String::new()),
                learners: vec![],
                leader_region: Some("local".into()),
                system: None,
            }],
            placements: vec![],
            latency: vec![],
            placement: vec![],
        })
    }

    async fn placements(&self) -> Result<Vec<PlacementView>, MeridianError> {
        Ok(Vec::new())
    }

    async fn placement(&self, _prefix: Vec<u8>) -> Result<PlacementView, MeridianError> {
        Err(MeridianError::new(
            ErrorCode::KeyNotFound,
            "the fuzz target holds no placement rules",
        ))
    }

    async fn set_placement(&self, rule: PlacementRule) -> Result<PlacementView, MeridianError> {
        // Only the HTTP parsing is under test: refuse like a one-node cluster would.
        Err(MeridianError::new(
            ErrorCode::PlacementUnsatisfiable,
            format!(
                "rule wants {} replicas but only 1 active node is in the cluster",
                rule.replicas
            ),
        ))
    }

    async fn delete_placement(&self, _prefix: Vec<u8>) -> Result<bool, MeridianError> {
        Ok(false)
    }

    async fn node_status(&self) -> Result<NodeStatus, MeridianError> {
        let revision = self.state.lock().kv.revision();
        Ok(NodeStatus {
            cluster_id: CLUSTER_ID,
            node_id: NODE_ID,
            version: "0.0.0".into(),
            db_size_bytes: 0,
            leader: Some(NODE_ID),
            raft_term: 1,
            raft_index: revision,
            raft_applied_index: revision,
            revision,
        })
    }

    async fn ready(&self) -> Result<(), MeridianError> {
        Ok(())
    }

    fn identity(&self) -> (u64, u64) {
        (CLUSTER_ID, NODE_ID)
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn observe_request(&self, _op: &'static str, _outcome: Result<(), ErrorCode>, _seconds: f64) {}

    fn metrics_text(&self) -> String {
        "# EOF\n".into()
    }
}

/// A gRPC length-prefixed message frame (uncompressed).
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The body and trailers of a response, read to the end.
pub async fn collect(
    resp: axum::response::Response,
) -> (http::response::Parts, Vec<u8>, Option<http::HeaderMap>) {
    use http_body_util::BodyExt;
    let (parts, body) = resp.into_parts();
    let collected = body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("response body fails to read: {e}"));
    let trailers = collected.trailers().cloned();
    (parts, collected.to_bytes().to_vec(), trailers)
}

/// The gRPC status of a response: from the headers (a trailers-only answer) or the trailers.
/// Panics if there is none: every gRPC answer must carry one.
pub fn grpc_status(
    parts: &http::response::Parts,
    trailers: Option<&http::HeaderMap>,
) -> (i32, String) {
    let find = |name: &str| {
        parts
            .headers
            .get(name)
            .or_else(|| trailers.and_then(|t| t.get(name)))
            .map(|v| v.to_str().expect("grpc header is ASCII").to_string())
    };
    let code = find("grpc-status")
        .unwrap_or_else(|| panic!("gRPC answer without grpc-status: {parts:?} {trailers:?}"));
    let code: i32 = code.parse().expect("grpc-status is a number");
    let message = find("grpc-message").unwrap_or_default();
    // grpc-message is percent-encoded on the wire.
    let message = percent_decode(&message);
    (code, message)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
