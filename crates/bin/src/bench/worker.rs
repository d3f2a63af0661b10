//! The load: a [`Pool`] of gRPC connections (etcd's generated `KV` client, the path etcd's own
//! benchmark takes) and the client tasks that share out the requests of a run.

use super::keys::key_of;
use super::summary::{OpKind, Recorder};
use indicatif::ProgressBar;
use meridian_client::{
    CONSISTENCY_METADATA, ClientError, Consistency, RESPONSE_BYTES_MAX, Topology,
};
use meridian_proto::etcd::etcdserverpb as pb;
use meridian_proto::etcd::etcdserverpb::kv_client::KvClient;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// Longest one benchmark request may take before it counts as a `timeout` error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One gRPC connection.
#[derive(Clone, Debug)]
struct Conn {
    url: String,
    kv: KvClient<Channel>,
}

/// The connections of a run; optionally knows which connections reach each range's leader.
#[derive(Clone, Debug)]
pub struct Pool {
    conns: Vec<Conn>,
    /// Leader routing: key → leader address → indexes into `conns`.
    leaders: Option<(Topology, HashMap<String, Vec<usize>>)>,
}

impl Pool {
    /// `n_conns` lazily connected channels, spread round-robin over `endpoints` (parsed URLs).
    pub fn new(endpoints: &[String], n_conns: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints");
        let conns = (0..n_conns.max(1))
            .map(|i| {
                let url = endpoints[i % endpoints.len()].clone();
                let channel = meridian_client::lazy_channel(&url, CONNECT_TIMEOUT)?;
                let kv = KvClient::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX);
                Ok(Conn { url, kv })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Self {
            conns,
            leaders: None,
        })
    }

    /// Sends each request to the connections of its range's leader (addresses as the cluster
    /// map has them; the pool's endpoints must be those addresses).
    pub fn route_to_leaders(&mut self, topology: Topology) -> anyhow::Result<()> {
        let mut by_addr: HashMap<String, Vec<usize>> = HashMap::new();
        for addr in topology.leader_addrs() {
            let url = meridian_client::parse_endpoint(addr)?;
            let idxs: Vec<usize> = (0..self.conns.len())
                .filter(|&i| self.conns[i].url == url)
                .collect();
            if !idxs.is_empty() {
                by_addr.insert(addr.to_owned(), idxs);
            }
        }
        self.leaders = Some((topology, by_addr));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// The connection task `task` uses for `key`.
    fn conn_for(&self, task: usize, key: &[u8]) -> &Conn {
        if let Some((topology, by_addr)) = &self.leaders
            && let Some(idxs) = topology.leader_addr(key).and_then(|a| by_addr.get(a))
        {
            return &self.conns[idxs[task % idxs.len()]];
        }
        &self.conns[task % self.conns.len()]
    }
}

/// What one request of a run is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Workload {
    /// Writes keys 0, 1, 2, ... (wrapping at `keys`), like etcd's `--sequential-keys`.
    SequentialPuts,
    /// Reads uniformly random keys.
    RandomGets,
    /// Reads a random key with probability `read_ratio`, else writes one.
    Mixed { read_ratio: f64 },
}

/// What one run sends.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub workload: Workload,
    /// Requests in all.
    pub total: u64,
    /// Distinct keys: indexes `0..keys`.
    pub keys: u64,
    pub key_size: usize,
    pub value: Vec<u8>,
    pub consistency: Consistency,
}

/// Everything the tasks of a run share.
#[derive(Debug)]
pub struct Run {
    spec: RunSpec,
    pool: Pool,
    progress: ProgressBar,
    /// Requests handed out so far.
    next: AtomicU64,
}

impl Run {
    pub fn new(spec: RunSpec, pool: Pool, progress: ProgressBar) -> Self {
        Self {
            spec,
            pool,
            progress,
            next: AtomicU64::new(0),
        }
    }
}

/// Runs `clients` tasks until `run.spec.total` requests are done; returns their merged recorder.
pub async fn drive(run: Arc<Run>, clients: usize) -> anyhow::Result<Recorder> {
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..clients {
        let run = Arc::clone(&run);
        tasks.spawn(async move { client_task(&run, task).await });
    }
    let mut all = Recorder::new();
    while let Some(done) = tasks.join_next().await {
        let rec = done.map_err(|e| anyhow::anyhow!("a benchmark task failed: {e}"))?;
        all.merge(&rec)?;
    }
    Ok(all)
}

/// One client: takes the next request number until none are left; one request at a time.
async fn client_task(run: &Run, task: usize) -> Recorder {
    let mut rec = Recorder::new();
    let mut rng = rand::rngs::StdRng::from_os_rng();
    loop {
        let n = run.next.fetch_add(1, Ordering::Relaxed);
        if n >= run.spec.total {
            break;
        }
        let (op, key_idx) = match run.spec.workload {
            Workload::SequentialPuts => (OpKind::Put, n % run.spec.keys),
            Workload::RandomGets => (OpKind::Get, rng.random_range(0..run.spec.keys)),
            Workload::Mixed { read_ratio } => {
                let op = if rng.random_bool(read_ratio) {
                    OpKind::Get
                } else {
                    OpKind::Put
                };
                (op, rng.random_range(0..run.spec.keys))
            }
        };
        let key = key_of(key_idx, run.spec.key_size);
        let conn = run.pool.conn_for(task, &key);
        let started = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, send(run, conn, op, key)).await;
        let latency = started.elapsed();
        match result {
            Ok(Ok(())) => rec.record_ok(op, latency),
            Ok(Err(status)) => {
                rec.record_error(ClientError::from_status(&conn.url, &status).code())
            }
            Err(_) => rec.record_error("timeout"),
        }
        run.progress.inc(1);
    }
    rec
}

async fn send(run: &Run, conn: &Conn, op: OpKind, key: Vec<u8>) -> Result<(), tonic::Status> {
    let mut kv = conn.kv.clone();
    match op {
        OpKind::Put => {
            let mut req = tonic::Request::new(pb::PutRequest {
                key,
                value: run.spec.value.clone(),
                ..Default::default()
            });
            req.set_timeout(REQUEST_TIMEOUT);
            kv.put(req).await?;
        }
        OpKind::Get => {
            let msg = pb::RangeRequest {
                key,
                serializable: run.spec.consistency.serializable(),
                ..Default::default()
            };
            let mut req = tonic::Request::new(msg);
            req.set_timeout(REQUEST_TIMEOUT);
            if let Some(v) = run
                .spec
                .consistency
                .metadata()
                .and_then(|c| MetadataValue::try_from(c.as_str()).ok())
            {
                req.metadata_mut().insert(CONSISTENCY_METADATA, v);
            }
            kv.range(req).await?;
        }
    }
    Ok(())
}
