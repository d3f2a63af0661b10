//! The opt-in messaging workload (`--messaging`): a stream and a work queue used through random
//! nodes' public HTTP API during the faults, then read back in full after the heal. What the
//! clients saw is recorded here, apart from the key-value history, and checked by
//! `invariants::stream_log` and `invariants::queue_delivery`.
//!
//! Every publish carries a request id and every queue send a deduplication id, and a retry
//! reuses them (as does a repeat of some acknowledged ones, as from a client that lost the
//! answer), so each message may land at most once however its attempts ended.

use crate::run::{Plan, WARMUP, host};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The stream the workload publishes to.
pub const STREAM: &str = "s";
/// Its partitions: more than one, so keys spread and offsets are per partition.
pub const STREAM_PARTITIONS: u32 = 2;
/// The queue the workload sends to.
pub const QUEUE: &str = "q";
/// The queue's visibility timeout: short, so unacknowledged deliveries come back within a run.
const VISIBILITY_TIMEOUT_MS: u64 = 2000;
/// The queue's delivery limit: high enough that no message dies in a run (there is no
/// dead-letter queue here, and a dead message would fail the "queue empty" check).
const MAX_DELIVERIES: u32 = 100;

/// Share of acknowledged publishes and sends the messenger sends once more with the same
/// request id or deduplication id, as a client that lost the answer would: exercises the
/// deduplication of retries even when no attempt's outcome was unknown.
const RESEND_SHARE: f64 = 0.1;
/// Distinct message keys (`k0`..): a few per partition.
const STREAM_KEYS: u64 = 8;
/// Attempts of one publish or send (one request id or deduplication id) before the messenger
/// gives up on it and goes on; its outcome then stays unknown. No retry starts after the fault
/// phase, so every answer is in before the drain reads (it waits out one request timeout).
const ATTEMPTS_MAX: u32 = 4;
/// Timeout of every request (the clients' too): longer than a node's request timeout (4 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages the consumer asks for at once, and how long a receive waits for the first.
const RECEIVE_PATH: &str = "/v1/queues/q/receive?max=10&wait_ms=500";
/// Messages the drain asks for at once.
const DRAIN_RECEIVE_PATH: &str = "/v1/queues/q/receive?max=100&wait_ms=500";
/// Share of deliveries the consumer acks; the rest it drops, as a crashed worker would, and they
/// come back after the visibility timeout.
const ACK_SHARE: f64 = 0.85;
/// Messages one stream read asks for (a page).
const READ_PAGE: u32 = 1000;
/// Pause between retries of a request that failed.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Random streams of the messenger's two halves and of the consumer, apart from the clients' so
/// their draws are unchanged.
const PUBLISHER_RNG: u64 = 0x4d5347;
const SENDER_RNG: u64 = 0x4d53_475e;
const CONSUMER_RNG: u64 = 0x4d53_47c0;

/// One message published to the stream: all its attempts carried one request id.
#[derive(Clone, Debug, Serialize)]
pub struct Publish {
    pub key: String,
    pub value: String,
    pub attempts: u32,
    /// `(partition, offset)` an attempt was acknowledged with; `None` if none was (the message
    /// may or may not be in the stream).
    pub acked: Option<(u32, u64)>,
    /// The answer to one more attempt after the acknowledgement, as a client that lost the
    /// first answer would send: the request id must lead it to the same place.
    pub resent: Option<(u32, u64)>,
}

/// One message sent to the queue: all its attempts carried one deduplication id.
#[derive(Clone, Debug, Serialize)]
pub struct Send {
    pub body: String,
    pub attempts: u32,
    /// The message id an attempt was acknowledged with.
    pub acked: Option<u64>,
    /// The message id one more attempt after the acknowledgement was answered with: the
    /// deduplication id must lead it to the same message.
    pub resent: Option<u64>,
}

/// One message handed out by a receive.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub id: u64,
    pub body: String,
    /// When the receive was sent (a position in the record's order, see [`MessageLog::tick`]).
    pub invoked: u64,
}

/// One receipt's result in an ack answered 200.
#[derive(Clone, Debug, Serialize)]
pub struct Ack {
    pub id: u64,
    /// `true`: this ack removed the message; `false`: it was gone already.
    pub acked: bool,
    /// When the answer came (a position in the record's order).
    pub answered: u64,
}

/// A whole partition as one node's read (forwarded to the partition's leader) returned it after
/// the heal: `(offset, key, value)` in the order read.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionRead {
    pub node: u64,
    pub partition: u32,
    pub messages: Vec<(u64, Option<String>, String)>,
    pub end_offset: u64,
}

/// The queue's depth as `GET /v1/queues/q/stats` answered it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Depth {
    pub ready: u64,
    pub in_flight: u64,
    pub dead: u64,
}

impl Depth {
    pub fn is_empty(&self) -> bool {
        self.ready == 0 && self.in_flight == 0 && self.dead == 0
    }
}

/// Everything the messaging workload saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Record {
    pub stream_created: bool,
    pub queue_created: bool,
    pub publishes: Vec<Publish>,
    pub sends: Vec<Send>,
    pub deliveries: Vec<Delivery>,
    pub acks: Vec<Ack>,
    pub reads: Vec<PartitionRead>,
    /// The queue's depth when the drain ended (`None` if it never read it).
    pub final_depth: Option<Depth>,
    /// The drain saw the queue empty before it had to give up.
    pub drained: bool,
    /// Answers that broke the API's own shape (a 200 without its fields).
    pub malformed: Vec<String>,
    /// The order of the records: bumped by every [`MessageLog::tick`].
    pub(crate) clock: u64,
}

/// The record, shared by the workload's tasks (one thread runs the whole simulation, so the
/// order of the updates is the real-time order).
#[derive(Clone, Default)]
pub struct MessageLog(Arc<Mutex<Record>>);

impl MessageLog {
    /// A position in the real-time order of the record: later calls answer larger numbers.
    pub fn tick(&self) -> u64 {
        let mut r = self.0.lock();
        r.clock += 1;
        r.clock
    }

    pub fn record(&self) -> Record {
        self.0.lock().clone()
    }

    fn update(&self, f: impl FnOnce(&mut Record)) {
        f(&mut self.0.lock());
    }

    fn malformed(&self, what: &str, body: &serde_json::Value) {
        self.update(|r| r.malformed.push(format!("{what} answered 200 with {body}")));
    }
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

fn random_node(rng: &mut SmallRng, plan: &Plan) -> String {
    host(rng.random_range(1..=plan.nodes))
}

/// 128 random bits as 32 hex digits (not a UUID, so the server hashes it to a request id).
fn random_id(rng: &mut SmallRng) -> String {
    format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

async fn post(
    node: &str,
    path: &str,
    body: serde_json::Value,
) -> Result<crate::http::Reply, String> {
    crate::http::request(
        node,
        "POST",
        path,
        body.to_string().into_bytes(),
        REQUEST_TIMEOUT,
    )
    .await
}

/// An error answer saying the object exists already: a retry of a create that took effect.
fn already_exists(r: &crate::http::Reply) -> bool {
    matches!(r.status, 400 | 409)
        && r.body
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .is_some_and(|m| m.contains("already exists"))
}

/// Retries a create through random nodes until it took effect (`done`) or the fault phase ends;
/// whether it did.
async fn create(
    plan: &Plan,
    rng: &mut SmallRng,
    until: Duration,
    method: &str,
    path: &str,
    body: serde_json::Value,
    done: fn(&crate::http::Reply) -> bool,
) -> bool {
    while now() < until {
        let node = random_node(rng, plan);
        let b = body.to_string().into_bytes();
        match crate::http::request(&node, method, path, b, REQUEST_TIMEOUT).await {
            Ok(r) if done(&r) => return true,
            _ => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
    false
}

/// Creates the stream, then publishes to it until the fault phase ends, one message at a time.
/// A create whose answer was lost may have taken effect: its retry then answers "already
/// exists".
async fn publisher(plan: &Plan, log: &MessageLog, until: Duration) {
    let mut rng = SmallRng::seed_from_u64(plan.seed ^ PUBLISHER_RNG);
    let body = serde_json::json!({"name": STREAM, "partitions": STREAM_PARTITIONS});
    let ok = |r: &crate::http::Reply| r.status == 200 || already_exists(r);
    if !create(plan, &mut rng, until, "POST", "/v1/streams", body, ok).await {
        return;
    }
    log.update(|r| r.stream_created = true);
    let mut seq = 0u64;
    while now() < until {
        seq += 1;
        publish(plan, &mut rng, log, seq, until).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..80))).await;
    }
}

/// Creates the queue, then sends to it until the fault phase ends, one message at a time. A
/// queue create is idempotent for one configuration, so its retry answers 200.
async fn sender(plan: &Plan, log: &MessageLog, until: Duration) {
    let mut rng = SmallRng::seed_from_u64(plan.seed ^ SENDER_RNG);
    let body = serde_json::json!({
        "visibility_timeout_ms": VISIBILITY_TIMEOUT_MS,
        "max_deliveries": MAX_DELIVERIES,
    });
    let path = format!("/v1/queues/{QUEUE}");
    let ok = |r: &crate::http::Reply| r.status == 200;
    if !create(plan, &mut rng, until, "PUT", &path, body, ok).await {
        return;
    }
    log.update(|r| r.queue_created = true);
    let mut seq = 0u64;
    while now() < until {
        seq += 1;
        send(plan, &mut rng, log, seq, until).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..80))).await;
    }
}

/// Publishes `m<seq>` under a random key, retrying with the same request id until `until`.
async fn publish(plan: &Plan, rng: &mut SmallRng, log: &MessageLog, seq: u64, until: Duration) {
    let key = format!("k{}", rng.random_range(0..STREAM_KEYS));
    let value = format!("m{seq}");
    let path = format!(
        "/v1/streams/{STREAM}/messages?request_id={}",
        random_id(rng)
    );
    let body = serde_json::json!({"key": key, "value": value});
    let mut p = Publish {
        key,
        value,
        attempts: 0,
        acked: None,
        resent: None,
    };
    while p.attempts < ATTEMPTS_MAX && (p.attempts == 0 || now() < until) {
        p.attempts += 1;
        if let Some(at) = published_at(plan, rng, log, &path, &body).await {
            p.acked = Some(at);
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
    }
    if p.acked.is_some() && now() < until && rng.random_bool(RESEND_SHARE) {
        p.resent = published_at(plan, rng, log, &path, &body).await;
    }
    log.update(|r| r.publishes.push(p));
}

/// One publish attempt through a random node: `(partition, offset)` if it was acknowledged.
async fn published_at(
    plan: &Plan,
    rng: &mut SmallRng,
    log: &MessageLog,
    path: &str,
    body: &serde_json::Value,
) -> Option<(u32, u64)> {
    let r = post(&random_node(rng, plan), path, body.clone())
        .await
        .ok()?;
    if r.status != 200 {
        return None;
    }
    let ack = r.body.pointer("/acks/0");
    let field = |f: &str| ack.and_then(|a| a.get(f)).and_then(|v| v.as_u64());
    match (field("partition"), field("offset")) {
        (Some(part), Some(offset)) => Some((part as u32, offset)),
        _ => {
            log.malformed("a publish", &r.body);
            None
        }
    }
}

/// Sends `j<seq>` to the queue, retrying with the same deduplication id until `until`.
async fn send(plan: &Plan, rng: &mut SmallRng, log: &MessageLog, seq: u64, until: Duration) {
    let body = format!("j{seq}");
    let msg = serde_json::json!({"body": body, "dedup_id": random_id(rng)});
    let mut s = Send {
        body,
        attempts: 0,
        acked: None,
        resent: None,
    };
    while s.attempts < ATTEMPTS_MAX && (s.attempts == 0 || now() < until) {
        s.attempts += 1;
        if let Some(id) = sent_as(plan, rng, log, &msg).await {
            s.acked = Some(id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
    }
    if s.acked.is_some() && now() < until && rng.random_bool(RESEND_SHARE) {
        s.resent = sent_as(plan, rng, log, &msg).await;
    }
    log.update(|r| r.sends.push(s));
}

/// One send attempt through a random node: the message id if it was acknowledged.
async fn sent_as(
    plan: &Plan,
    rng: &mut SmallRng,
    log: &MessageLog,
    msg: &serde_json::Value,
) -> Option<u64> {
    let path = format!("/v1/queues/{QUEUE}/messages");
    let r = post(&random_node(rng, plan), &path, msg.clone())
        .await
        .ok()?;
    if r.status != 200 {
        return None;
    }
    let id = r.body.pointer("/messages/0/id").and_then(|v| v.as_u64());
    if id.is_none() {
        log.malformed("a queue send", &r.body);
    }
    id
}

/// After the warm-up: the publisher and the sender, side by side (so a queue range that is down
/// does not stop the stream's traffic, nor the other way round).
pub async fn messenger(plan: Plan, log: MessageLog, until: Duration) -> turmoil::Result {
    tokio::time::sleep(WARMUP).await;
    tokio::join!(publisher(&plan, &log, until), sender(&plan, &log, until));
    Ok(())
}

/// Receives through `node` and records the deliveries; `None` when the receive failed.
async fn receive(node: &str, path: &str, log: &MessageLog) -> Option<Vec<(u64, String)>> {
    let invoked = log.tick();
    let r = post(node, path, serde_json::Value::Null).await.ok()?;
    if r.status != 200 {
        return None;
    }
    let Some(list) = r.body.get("messages").and_then(|m| m.as_array()) else {
        log.malformed("a receive", &r.body);
        return None;
    };
    let mut got = Vec::new();
    for m in list {
        let id = m.get("id").and_then(|v| v.as_u64());
        let body = m.get("body").and_then(|v| v.as_str());
        let receipt = m.get("receipt").and_then(|v| v.as_str());
        match (id, body, receipt) {
            (Some(id), Some(body), Some(receipt)) => {
                log.update(|r| {
                    r.deliveries.push(Delivery {
                        id,
                        body: body.to_string(),
                        invoked,
                    })
                });
                got.push((id, receipt.to_string()));
            }
            _ => log.malformed("a receive", &r.body),
        }
    }
    Some(got)
}

/// Acks `(id, receipt)` deliveries through `node` and records each receipt's result. An ack
/// whose answer is lost is not retried: its message comes back after the visibility timeout.
async fn ack(node: &str, got: &[(u64, String)], log: &MessageLog) {
    let receipts: Vec<&str> = got.iter().map(|(_, r)| r.as_str()).collect();
    let body = serde_json::json!({ "receipts": receipts });
    let Ok(r) = post(node, &format!("/v1/queues/{QUEUE}/ack"), body).await else {
        return;
    };
    if r.status != 200 {
        return;
    }
    let Some(results) = r.body.get("results").and_then(|m| m.as_array()) else {
        log.malformed("an ack", &r.body);
        return;
    };
    let answered = log.tick();
    for ((id, _), res) in got.iter().zip(results) {
        // A stale receipt (the message was delivered again since) answers an error instead.
        if let Some(acked) = res.get("acked").and_then(|a| a.as_bool()) {
            log.update(|r| {
                r.acks.push(Ack {
                    id: *id,
                    acked,
                    answered,
                })
            });
        }
    }
}

/// Receives from the queue through random nodes until the fault phase ends, and acks most of
/// what it gets (through another random node).
pub async fn consumer(plan: Plan, log: MessageLog, until: Duration) -> turmoil::Result {
    let mut rng = SmallRng::seed_from_u64(plan.seed ^ CONSUMER_RNG);
    tokio::time::sleep(WARMUP).await;
    while now() < until {
        let node = random_node(&mut rng, &plan);
        match receive(&node, RECEIVE_PATH, &log).await {
            Some(got) if !got.is_empty() => {
                if rng.random_bool(ACK_SHARE) {
                    ack(&random_node(&mut rng, &plan), &got, &log).await;
                }
            }
            Some(_) => {}
            None => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
    Ok(())
}

/// Reads partition `p` from offset 0 to its end through `node`, page by page.
async fn read_partition(node: u64, p: u32, give_up: Duration) -> Result<PartitionRead, String> {
    let mut read = PartitionRead {
        node,
        partition: p,
        messages: Vec::new(),
        end_offset: 0,
    };
    let mut offset = 0u64;
    loop {
        if now() > give_up {
            return Err(format!(
                "node {node} did not read partition {p} after the heal"
            ));
        }
        let path =
            format!("/v1/streams/{STREAM}/partitions/{p}/messages?offset={offset}&max={READ_PAGE}");
        let r = match crate::http::request(&host(node), "GET", &path, vec![], REQUEST_TIMEOUT).await
        {
            Ok(r) if r.status == 200 => r.body,
            _ => {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let page = r.get("messages").and_then(|m| m.as_array());
        let next = r.get("next_offset").and_then(|v| v.as_u64());
        let end = r.get("end_offset").and_then(|v| v.as_u64());
        let (Some(page), Some(next), Some(end)) = (page, next, end) else {
            return Err(format!("a read of partition {p} answered {r}"));
        };
        for m in page {
            let off = m.get("offset").and_then(|v| v.as_u64());
            let value = m.get("value").and_then(|v| v.as_str());
            let key = m.get("key").and_then(|v| v.as_str()).map(str::to_string);
            match (off, value) {
                (Some(off), Some(value)) => read.messages.push((off, key, value.to_string())),
                _ => return Err(format!("a read of partition {p} answered {r}")),
            }
        }
        read.end_offset = end;
        if page.is_empty() || next >= end {
            return Ok(read);
        }
        offset = next;
    }
}

/// The queue's depth, or `None` when the stats could not be read.
async fn depth(node: &str) -> Option<Depth> {
    let path = format!("/v1/queues/{QUEUE}/stats");
    let r = crate::http::request(node, "GET", &path, vec![], REQUEST_TIMEOUT)
        .await
        .ok()
        .filter(|r| r.status == 200)?;
    let n = |f: &str| r.body.get(f).and_then(|v| v.as_u64());
    Some(Depth {
        ready: n("ready")?,
        in_flight: n("in_flight")?,
        dead: n("dead")?,
    })
}

/// Receives and acks until the queue is empty: deliveries not acked in the fault phase come
/// back once their visibility timeout passes on the queue leader's clock (which a clock jump may
/// have put ahead, so this can take a while). Gives up at `give_up`, leaving `drained` false.
async fn drain_queue(plan: &Plan, log: &MessageLog, give_up: Duration) {
    let mut i = 0u64;
    while now() < give_up {
        i += 1;
        let node = host(i % plan.nodes + 1);
        match receive(&node, DRAIN_RECEIVE_PATH, log).await {
            Some(got) if !got.is_empty() => ack(&node, &got, log).await,
            Some(_) => {
                let d = depth(&node).await;
                let empty = d.as_ref().is_some_and(Depth::is_empty);
                if d.is_some() {
                    log.update(|r| r.final_depth = d);
                }
                if empty {
                    log.update(|r| r.drained = true);
                    return;
                }
            }
            None => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
}

/// After the heal: reads every partition through every node, then drains the queue.
pub async fn drainer(plan: Plan, log: MessageLog, give_up: Duration) -> turmoil::Result {
    // Let the messenger's and the consumer's last requests finish (they give up after 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let rec = log.record();
    if rec.stream_created {
        for node in 1..=plan.nodes {
            for p in 0..STREAM_PARTITIONS {
                let read = read_partition(node, p, give_up).await?;
                log.update(|r| r.reads.push(read));
            }
        }
    }
    if rec.queue_created {
        drain_queue(&plan, &log, give_up).await;
    }
    Ok(())
}
