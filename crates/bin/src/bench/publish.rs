//! `meridian bench publish`: messages per second and publish-to-ack latency over the
//! `meridian.v1.Streams` gRPC service, and with `--e2e` publish-to-consume latency (one `Follow`
//! per partition, each message carrying its send time).
//!
//! The run creates a stream `bench-<random>` with `--partitions` partitions (or uses `--stream`),
//! sends `--total` messages of `--value-size` bytes from `--clients` tasks (partitions taken in
//! turn), and deletes the stream it created. Each task has one publish in flight at a time, sent
//! through its connection's `meridian_client::Publisher` (the tasks of a connection share one
//! `PublishStream` call), or with `--unary` as a unary `Publish` call; with `--in-flight W` a
//! task keeps up to W publishes pipelined over a `PublishStream` call of its own.

use super::summary::{LatencySummary, OpKind, Recorder, RunInfo, Summary, new_histogram};
use super::worker::REQUEST_TIMEOUT;
use crate::kv_cmd::Output;
use anyhow::{Context, bail};
use meridian_client::Publisher;
use meridian_proto::v1 as pb;
use meridian_proto::v1::streams_client::StreamsClient;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::transport::Channel;

/// Longest a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the consumers of `--e2e` wait for the last messages after the publishers finish.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// What `bench publish` needs from the command line.
pub struct PublishArgs<'a> {
    pub endpoints: &'a [String],
    pub clients: usize,
    /// Connections (with `target_leader`: connections per partition leader).
    pub conns: usize,
    /// One unary `Publish` call per publish instead of the connection's shared `Publisher`.
    pub unary: bool,
    pub total: u64,
    pub value_size: usize,
    pub partitions: u32,
    pub stream: Option<String>,
    pub e2e: bool,
    /// Publishes each publisher keeps in flight (over `PublishStream` when above 1).
    pub in_flight: usize,
    /// Unmeasured publishes before the measured ones.
    pub warmup: u64,
    /// Publisher `t` publishes to partition `t mod P` only, over a connection to that
    /// partition's leader (as JetStream clients connected to the stream leader would).
    pub target_leader: bool,
    pub output: Output,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn http_call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let mut req = http.request(method, &url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.with_context(|| format!("call {url}"))?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{url}: {status} {v}");
    }
    Ok(v)
}

/// How long `--target-leader` waits for every partition to have a leader.
const LEADERS_WAIT: Duration = Duration::from_secs(10);

/// The address of each partition's leader, from the stream's spec and `GET /v1/cluster`.
async fn partition_leaders(
    http: &reqwest::Client,
    base: &str,
    spec: &serde_json::Value,
    partitions: u32,
) -> anyhow::Result<Vec<String>> {
    let ranges: Vec<u64> = spec["spec"]["ranges"]
        .as_array()
        .map(|v| v.iter().filter_map(|r| r.as_u64()).collect())
        .unwrap_or_default();
    anyhow::ensure!(
        ranges.len() == partitions as usize,
        "the stream's spec names {} ranges for {partitions} partitions",
        ranges.len()
    );
    let deadline = Instant::now() + LEADERS_WAIT;
    loop {
        let view = http_call(
            http,
            reqwest::Method::GET,
            format!("{base}/v1/cluster"),
            None,
        )
        .await?;
        let leader_of = |range: u64| -> Option<String> {
            let r = view["ranges"]
                .as_array()?
                .iter()
                .find(|r| r["id"] == range)?;
            let leader = r["leader"].as_u64()?;
            let n = view["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["id"] == leader)?;
            n["addr"].as_str().map(str::to_string)
        };
        let found: Option<Vec<String>> = ranges.iter().map(|r| leader_of(*r)).collect();
        match found {
            Some(v) => return Ok(v),
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            None => anyhow::bail!("a partition has no leader after {LEADERS_WAIT:?}"),
        }
    }
}

pub async fn run(a: PublishArgs<'_>) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = meridian_client::parse_endpoint(&a.endpoints[0])?;
    let (stream, created) = match &a.stream {
        Some(s) => (s.clone(), false),
        None => {
            let name = format!("bench-{:08x}", rand::random::<u32>());
            let body = serde_json::json!({"name": name, "partitions": a.partitions});
            http_call(
                &http,
                reqwest::Method::POST,
                format!("{base}/v1/streams"),
                Some(body),
            )
            .await?;
            (name, true)
        }
    };
    let spec = http_call(
        &http,
        reqwest::Method::GET,
        format!("{base}/v1/streams/{stream}"),
        None,
    )
    .await?;
    let partitions = spec["spec"]["partitions"].as_u64().unwrap_or(1) as u32;

    let mut clients = Vec::new();
    let mut publishers = Vec::new();
    let mut connect = |ep: &str| -> anyhow::Result<()> {
        let url = meridian_client::parse_endpoint(ep)?;
        let ch = meridian_client::lazy_channel(&url, CONNECT_TIMEOUT)?;
        publishers.push(Publisher::new(&url, ch.clone(), REQUEST_TIMEOUT));
        clients.push(StreamsClient::new(ch));
        Ok(())
    };
    let per_partition = a.conns.max(1);
    if a.target_leader {
        // `conns` connections to each partition's leader: partition p's are
        // clients[p * conns ..][.. conns] (see `Load::connection`).
        for ep in partition_leaders(&http, &base, &spec, partitions).await? {
            for _ in 0..per_partition {
                connect(&ep)?;
            }
        }
    } else {
        for i in 0..a.conns.max(1) {
            connect(&a.endpoints[i % a.endpoints.len()])?;
        }
    }

    let load = Load {
        clients: &clients,
        shared: (!a.unary).then_some(publishers.as_slice()),
        per_partition,
        publishers: a.clients,
        stream: &stream,
        partitions,
        size: a.value_size,
        target_leader: a.target_leader,
        in_flight: a.in_flight,
    };
    // Unmeasured publishes first (a fresh stream's first burst meets cold connections and
    // caches), as scripts/bench-nats.sh warms JetStream up.
    if a.warmup > 0 {
        load.run(a.warmup).await?;
    }

    // End to end: one follower per partition from the tail, started before publishing.
    let e2e_hist = Arc::new(shared_hist::Hist::default());
    let mut followers = tokio::task::JoinSet::new();
    if a.e2e {
        for p in 0..partitions {
            let mut c = clients[load.connection(p as usize)].clone();
            let req = pb::ReadRequest {
                stream: stream.clone(),
                partition: p,
                from: Some(pb::read_request::From::Latest(true)),
                max: 1000,
                ..Default::default()
            };
            let mut s = c
                .follow(req)
                .await
                .context("start a follower")?
                .into_inner();
            let h = e2e_hist.clone();
            followers.spawn(async move {
                while let Ok(Some(m)) = s.message().await {
                    if m.value.len() >= 8 {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&m.value[..8]);
                        let sent = u64::from_le_bytes(b);
                        h.record(now_us().saturating_sub(sent));
                    }
                }
            });
        }
        // Let the followers reach the tail before the first publish.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let started = Instant::now();
    let all = load.run(a.total).await?;
    let elapsed = started.elapsed();
    if a.e2e {
        let deadline = Instant::now() + DRAIN_WAIT;
        while e2e_hist.len() < all.ok() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        followers.abort_all();
    }
    if created {
        let _ = http_call(
            &http,
            reqwest::Method::DELETE,
            format!("{base}/v1/streams/{stream}"),
            None,
        )
        .await;
    }

    let info = RunInfo {
        op: "publish",
        clients: a.clients,
        conns: clients.len(),
        consistency: format!("{partitions} partition(s)"),
        key_size: 0,
        value_size: a.value_size,
        keys: u64::from(partitions),
        target_leader: a.target_leader,
    };
    let summary = Summary::new(info, &all, elapsed)?;
    let e2e = a.e2e.then(|| (e2e_hist.len(), e2e_hist.summary()));
    match a.output {
        Output::Text => {
            println!(
                "publish benchmark: {} clients over {} connections, {}-byte messages, {} partition(s), acked after a quorum fsync",
                a.clients,
                clients.len(),
                a.value_size,
                partitions
            );
            let text = summary.render_text();
            for line in text.lines().skip(1) {
                println!("{}", line.replace("ops/s ", "msgs/s"));
            }
            if let Some((n, l)) = &e2e {
                println!(
                    "  end to end {n} consumed, p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
                    l.p50, l.p90, l.p99, l.p999, l.max
                );
            }
        }
        Output::Json => {
            let mut v = serde_json::to_value(&summary)?;
            if let Some((n, l)) = e2e {
                v["end_to_end"] = serde_json::json!({"consumed": n, "latency_ms": l});
            }
            println!("{v}");
        }
    }
    if summary.ok == 0 {
        bail!("every publish failed: {:?}", summary.errors_by_code);
    }
    Ok(())
}

/// Publishers sending `total` messages between them.
struct Load<'a> {
    clients: &'a [StreamsClient<Channel>],
    /// One `Publisher` per connection (same order as `clients`), unless `--unary`.
    shared: Option<&'a [Publisher]>,
    /// With `target_leader`: connections per partition.
    per_partition: usize,
    publishers: usize,
    stream: &'a str,
    partitions: u32,
    size: usize,
    target_leader: bool,
    in_flight: usize,
}

impl Load<'_> {
    /// The connection publisher `t` uses: with `target_leader` one of its partition's
    /// (`t mod P`), else the connections in turn.
    fn connection(&self, t: usize) -> usize {
        if self.target_leader {
            let p = self.partitions as usize;
            (t % p) * self.per_partition + (t / p) % self.per_partition
        } else {
            t % self.clients.len()
        }
    }

    async fn run(&self, total: u64) -> anyhow::Result<Recorder> {
        let partitions = self.partitions;
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..self.publishers {
            let conn = self.connection(t);
            let mut c: StreamsClient<Channel> = self.clients[conn].clone();
            let shared = self.shared.map(|p| p[conn].clone());
            let (next, stream, size) = (next.clone(), self.stream.to_string(), self.size);
            let (target_leader, in_flight) = (self.target_leader, self.in_flight);
            tasks.spawn(async move {
                let request = |i: u64| {
                    let mut value = vec![b'x'; size.max(8)];
                    value[..8].copy_from_slice(&now_us().to_le_bytes());
                    let partition = if target_leader {
                        (t % partitions as usize) as u32
                    } else {
                        (i % u64::from(partitions)) as u32
                    };
                    pb::PublishRequest {
                        stream: stream.clone(),
                        partition: Some(partition),
                        messages: vec![pb::Message {
                            value,
                            ..Default::default()
                        }],
                        request_id: String::new(),
                    }
                };
                if in_flight > 1 {
                    return pipelined(c, &next, total, in_flight, request).await;
                }
                let mut rec = Recorder::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return rec;
                    }
                    let req = request(i);
                    let t0 = Instant::now();
                    if let Some(p) = &shared {
                        // The publisher has its own per-publish timeout.
                        match p.publish(req).await {
                            Ok(_) => rec.record_ok(OpKind::Put, t0.elapsed()),
                            Err(e) => rec.record_error(e.code()),
                        }
                        continue;
                    }
                    match tokio::time::timeout(REQUEST_TIMEOUT, c.publish(req)).await {
                        Ok(Ok(_)) => rec.record_ok(OpKind::Put, t0.elapsed()),
                        Ok(Err(s)) => rec.record_error(&format!("{:?}", s.code())),
                        Err(_) => rec.record_error("timeout"),
                    }
                }
            });
        }
        let mut all = Recorder::new();
        while let Some(r) = tasks.join_next().await {
            all.merge(&r.context("join a publisher")?)?;
        }
        Ok(all)
    }
}

/// One publisher keeping up to `window` publishes in flight over one `PublishStream` call: the
/// sender waits for a free slot, the receiver matches answers to send times (answers come in
/// order) and frees the slot.
async fn pipelined(
    mut c: StreamsClient<Channel>,
    next: &AtomicU64,
    total: u64,
    window: usize,
    request: impl Fn(u64) -> pb::PublishRequest,
) -> Recorder {
    let mut rec = Recorder::new();
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::PublishRequest>(window);
    let slots = Arc::new(tokio::sync::Semaphore::new(window));
    let sent_at = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let call = c.publish_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let sender = {
        let (slots, sent_at) = (slots.clone(), sent_at.clone());
        async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                permit.forget();
                let req = request(i);
                if let Ok(mut q) = sent_at.lock() {
                    q.push_back(Instant::now());
                }
                if tx.send(req).await.is_err() {
                    return;
                }
            }
            // Dropping `tx` ends the request stream: the server answers the rest, then ends.
        }
    };
    let receiver = async {
        let mut answers = match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => {
                rec.record_error(&format!("{:?}", s.code()));
                slots.close();
                return;
            }
            Err(_) => {
                rec.record_error("timeout");
                slots.close();
                return;
            }
        };
        loop {
            match tokio::time::timeout(REQUEST_TIMEOUT, answers.message()).await {
                Ok(Ok(Some(a))) => {
                    let t0 = sent_at.lock().ok().and_then(|mut q| q.pop_front());
                    match (a.error, t0) {
                        (None, Some(t0)) => rec.record_ok(OpKind::Put, t0.elapsed()),
                        (Some(e), _) => rec.record_error(&e.code),
                        (None, None) => rec.record_error("unmatched_answer"),
                    }
                    slots.add_permits(1);
                }
                Ok(Ok(None)) => break,
                Ok(Err(s)) => {
                    rec.record_error(&format!("{:?}", s.code()));
                    break;
                }
                Err(_) => {
                    rec.record_error("timeout");
                    break;
                }
            }
        }
        // Whatever was sent and never answered is an error, not silently dropped.
        let lost = sent_at.lock().map(|q| q.len()).unwrap_or(0);
        for _ in 0..lost {
            rec.record_error("unanswered");
        }
        slots.close();
    };
    tokio::join!(sender, receiver);
    rec
}

/// A histogram shared by the followers (a mutex is fine at these rates).
mod shared_hist {
    use super::{LatencySummary, new_histogram};
    use std::sync::Mutex;

    pub struct Hist(Mutex<hdrhistogram::Histogram<u64>>);

    impl Default for Hist {
        fn default() -> Self {
            Self(Mutex::new(new_histogram()))
        }
    }

    impl Hist {
        pub fn record(&self, us: u64) {
            if let Ok(mut h) = self.0.lock() {
                h.saturating_record(us.max(1));
            }
        }

        pub fn len(&self) -> u64 {
            self.0.lock().map(|h| h.len()).unwrap_or(0)
        }

        pub fn summary(&self) -> LatencySummary {
            self.0
                .lock()
                .map(|h| LatencySummary::of(&h))
                .unwrap_or_default()
        }
    }
}
