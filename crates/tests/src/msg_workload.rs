//! Messaging clients of the real-network test: a publisher to a stream, a sender to a work
//! queue and a consumer that receives and acks, all through random nodes' HTTP API while the
//! nemesis works; then, after the heal, [`verify`] reads every partition through every node and
//! drains the queue.
//!
//! Each publish carries a request id and each send a deduplication id, and every retry (on
//! another node) reuses it, so a message lands at most once however its attempts ended. What
//! must hold after the heal: every acknowledged publish is at its acknowledged partition and
//! offset; offsets are consecutive and never hold a message twice; every node reads the same
//! log; every acknowledged send was delivered; the drained queue is empty.

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The stream, its partitions, and the queue.
pub const STREAM: &str = "rn";
const PARTITIONS: u32 = 2;
pub const QUEUE: &str = "rq";
/// Short, so deliveries the consumer never acked come back within the run.
const VISIBILITY_TIMEOUT_MS: u64 = 2000;
/// One HTTP attempt, and all attempts of one message.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2500);
const MESSAGE_DEADLINE: Duration = Duration::from_secs(6);
/// Time allowed for creating the stream and the queue, and for the checks after the heal.
const SETUP_DEADLINE: Duration = Duration::from_secs(30);
const VERIFY_DEADLINE: Duration = Duration::from_secs(60);
/// Share of deliveries the consumer acks (the rest come back after the visibility timeout).
const ACK_SHARE: f64 = 0.9;

/// What the messaging clients saw.
#[derive(Debug, Default)]
pub struct MsgRecord {
    /// Value → `(partition, offset)` it was acknowledged at, or `None` (outcome unknown).
    pub publishes: BTreeMap<String, Option<(u32, u64)>>,
    /// Body → whether the send was acknowledged.
    pub sends: BTreeMap<String, bool>,
    /// Bodies some receive handed out.
    pub delivered: BTreeSet<String>,
    pub deliveries: u64,
    pub acks: u64,
}

fn random_id(rng: &mut StdRng) -> String {
    format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

fn pick<'a>(rng: &mut StdRng, eps: &'a [String]) -> &'a str {
    &eps[rng.random_range(0..eps.len())]
}

/// One request; the status and JSON body, or `None` when no answer came.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut req = http.request(method, url).timeout(ATTEMPT_TIMEOUT);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(1000))
        .build()
        .expect("build an http client")
}

/// Creates the stream and the queue (before the faults); an error names what failed.
pub async fn setup(eps: &[String]) -> Result<(), String> {
    let http = client();
    let start = Instant::now();
    let mut stream = false;
    let mut queue = false;
    let mut i = 0;
    while !(stream && queue) {
        if start.elapsed() > SETUP_DEADLINE {
            return Err(format!("created stream {stream}, queue {queue} in time"));
        }
        let ep = &eps[i % eps.len()];
        i += 1;
        if !stream {
            let body = json!({"name": STREAM, "partitions": PARTITIONS});
            let r = call(
                &http,
                reqwest::Method::POST,
                format!("http://{ep}/v1/streams"),
                Some(body),
            )
            .await;
            stream = matches!(&r, Some((200, _)))
                || r.as_ref().is_some_and(|(_, v)| {
                    v["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("already exists"))
                });
        }
        if !queue {
            let body =
                json!({"visibility_timeout_ms": VISIBILITY_TIMEOUT_MS, "max_deliveries": 100});
            let url = format!("http://{ep}/v1/queues/{QUEUE}");
            queue = matches!(
                call(&http, reqwest::Method::PUT, url, Some(body)).await,
                Some((200, _))
            );
        }
        if !(stream && queue) {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(())
}

/// Retries `attempt` through random nodes until it answers `Some` or the deadline passes.
async fn with_retries<T, F, Fut>(rng: &mut StdRng, eps: &[String], mut attempt: F) -> Option<T>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < MESSAGE_DEADLINE {
        if let Some(t) = attempt(pick(rng, eps).to_string()).await {
            return Some(t);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..300))).await;
    }
    None
}

async fn publisher(
    eps: Arc<Vec<String>>,
    seed: u64,
    rec: Arc<Mutex<MsgRecord>>,
    stop: Arc<AtomicBool>,
) {
    let http = client();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7075_6273);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let value = format!("m{n}");
        let url_tail = format!(
            "/v1/streams/{STREAM}/messages?request_id={}",
            random_id(&mut rng)
        );
        let body = json!({"key": format!("k{}", n % 4), "value": value});
        let at = with_retries(&mut rng, &eps, |ep| {
            let (http, body, url) = (http.clone(), body.clone(), format!("http://{ep}{url_tail}"));
            async move {
                match call(&http, reqwest::Method::POST, url, Some(body)).await? {
                    (200, v) => Some((
                        v["acks"][0]["partition"].as_u64()? as u32,
                        v["acks"][0]["offset"].as_u64()?,
                    )),
                    _ => None,
                }
            }
        })
        .await;
        rec.lock().publishes.insert(value, at);
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..40))).await;
    }
}

async fn sender(
    eps: Arc<Vec<String>>,
    seed: u64,
    rec: Arc<Mutex<MsgRecord>>,
    stop: Arc<AtomicBool>,
) {
    let http = client();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7365_6e64);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let body = format!("j{n}");
        let msg = json!({"body": body, "dedup_id": random_id(&mut rng)});
        let acked = with_retries(&mut rng, &eps, |ep| {
            let (http, msg) = (http.clone(), msg.clone());
            let url = format!("http://{ep}/v1/queues/{QUEUE}/messages");
            async move {
                match call(&http, reqwest::Method::POST, url, Some(msg)).await? {
                    (200, v) => v["messages"][0]["id"].as_u64().map(|_| ()),
                    _ => None,
                }
            }
        })
        .await
        .is_some();
        rec.lock().sends.insert(body, acked);
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..40))).await;
    }
}

/// One receive through `ep`, recorded; acks a share of it (all when `ack_all`). Answers how
/// many messages came, or `None` when the receive failed.
async fn receive_once(
    http: &reqwest::Client,
    ep: &str,
    rng: &mut StdRng,
    rec: &Mutex<MsgRecord>,
    ack_all: bool,
) -> Option<usize> {
    let url = format!("http://{ep}/v1/queues/{QUEUE}/receive?max=10&wait_ms=500");
    let (status, v) = call(http, reqwest::Method::POST, url, None).await?;
    if status != 200 {
        return None;
    }
    let msgs = v["messages"].as_array().cloned().unwrap_or_default();
    let mut receipts = Vec::new();
    {
        let mut r = rec.lock();
        for m in &msgs {
            if let Some(b) = m["body"].as_str() {
                r.delivered.insert(b.to_string());
                r.deliveries += 1;
            }
            if let Some(rc) = m["receipt"].as_str()
                && (ack_all || rng.random_bool(ACK_SHARE))
            {
                receipts.push(rc.to_string());
            }
        }
    }
    if !receipts.is_empty() {
        let url = format!("http://{ep}/v1/queues/{QUEUE}/ack");
        if let Some((200, _)) = call(
            http,
            reqwest::Method::POST,
            url,
            Some(json!({"receipts": receipts})),
        )
        .await
        {
            rec.lock().acks += receipts.len() as u64;
        }
    }
    Some(msgs.len())
}

async fn consumer(
    eps: Arc<Vec<String>>,
    seed: u64,
    rec: Arc<Mutex<MsgRecord>>,
    stop: Arc<AtomicBool>,
) {
    let http = client();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x636f_6e73);
    while !stop.load(Ordering::Relaxed) {
        let ep = pick(&mut rng, &eps).to_string();
        if receive_once(&http, &ep, &mut rng, &rec, false)
            .await
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Runs the publisher, the sender and the consumer until `stop`.
pub async fn run(eps: Vec<String>, seed: u64, rec: Arc<Mutex<MsgRecord>>, stop: Arc<AtomicBool>) {
    let eps = Arc::new(eps);
    tokio::join!(
        publisher(eps.clone(), seed, rec.clone(), stop.clone()),
        sender(eps.clone(), seed, rec.clone(), stop.clone()),
        consumer(eps, seed, rec, stop),
    );
}

/// A whole partition through `ep`: `(offset, value)` in order.
async fn read_partition(
    http: &reqwest::Client,
    ep: &str,
    p: u32,
) -> Result<Vec<(u64, String)>, String> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut offset = 0u64;
    loop {
        if start.elapsed() > VERIFY_DEADLINE {
            return Err(format!("{ep} did not read partition {p} after the heal"));
        }
        let url = format!(
            "http://{ep}/v1/streams/{STREAM}/partitions/{p}/messages?offset={offset}&max=1000"
        );
        let Some((200, v)) = call(http, reqwest::Method::GET, url, None).await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let page = v["messages"].as_array().cloned().unwrap_or_default();
        for m in &page {
            match (m["offset"].as_u64(), m["value"].as_str()) {
                (Some(o), Some(val)) => out.push((o, val.to_string())),
                _ => return Err(format!("a read of partition {p} answered {v}")),
            }
        }
        let (Some(next), Some(end)) = (v["next_offset"].as_u64(), v["end_offset"].as_u64()) else {
            return Err(format!("a read of partition {p} answered {v}"));
        };
        if page.is_empty() || next >= end {
            return Ok(out);
        }
        offset = next;
    }
}

/// After the heal: the stream read through every node and the queue drained. Answers what is
/// wrong (empty when everything holds) and a one-line summary.
pub async fn verify(eps: &[String], seed: u64, rec: &Mutex<MsgRecord>) -> (Vec<String>, String) {
    let http = client();
    let mut bad = Vec::new();
    let mut logs: Vec<Vec<(u64, String)>> = Vec::new();
    for p in 0..PARTITIONS {
        let mut first: Option<Vec<(u64, String)>> = None;
        for ep in eps {
            match read_partition(&http, ep, p).await {
                Ok(log) => match &first {
                    None => first = Some(log),
                    Some(f) if *f != log => bad.push(format!(
                        "partition {p}: {ep} reads {} messages, another node {}",
                        log.len(),
                        f.len()
                    )),
                    Some(_) => {}
                },
                Err(e) => bad.push(e),
            }
        }
        logs.push(first.unwrap_or_default());
    }
    let mut seen: BTreeMap<&str, (u32, u64)> = BTreeMap::new();
    let publishes = rec.lock().publishes.clone();
    for (p, log) in logs.iter().enumerate() {
        let p = p as u32;
        if let Some(w) = log.windows(2).find(|w| w[1].0 != w[0].0 + 1) {
            bad.push(format!(
                "partition {p}: offset {} follows {}",
                w[1].0, w[0].0
            ));
        }
        for (o, v) in log {
            if !publishes.contains_key(v) {
                bad.push(format!(
                    "partition {p} offset {o} holds {v:?}, never published"
                ));
            }
            if let Some(prev) = seen.insert(v, (p, *o)) {
                bad.push(format!(
                    "{v:?} is in the stream twice: at {prev:?} and ({p}, {o})"
                ));
            }
        }
    }
    for (v, at) in &publishes {
        if let Some(at) = at
            && seen.get(v.as_str()) != Some(at)
        {
            bad.push(format!(
                "the publish of {v:?} was acknowledged at {at:?}, the stream has it at {:?}",
                seen.get(v.as_str())
            ));
        }
    }

    // Drain: receive and ack everything until the stats show the queue empty.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6472_6169);
    let start = Instant::now();
    let mut drained = false;
    let mut i = 0usize;
    while start.elapsed() < VERIFY_DEADLINE {
        let ep = &eps[i % eps.len()];
        i += 1;
        match receive_once(&http, ep, &mut rng, rec, true).await {
            Some(0) => {
                let url = format!("http://{ep}/v1/queues/{QUEUE}/stats");
                if let Some((200, v)) = call(&http, reqwest::Method::GET, url, None).await
                    && v["ready"] == 0
                    && v["in_flight"] == 0
                    && v["dead"] == 0
                {
                    drained = true;
                    break;
                }
            }
            Some(_) => {}
            None => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    let r = rec.lock();
    if !drained {
        bad.push(format!(
            "the queue was not empty {VERIFY_DEADLINE:?} after the heal"
        ));
    }
    for (b, acked) in &r.sends {
        if *acked && !r.delivered.contains(b) {
            bad.push(format!(
                "the acknowledged send of {b:?} was never delivered"
            ));
        }
    }
    if let Some(b) = r.delivered.iter().find(|b| !r.sends.contains_key(*b)) {
        bad.push(format!("{b:?} was delivered but never sent"));
    }
    let summary = format!(
        "{} published ({} acknowledged, {} in the stream), {} sent ({} acknowledged), {} deliveries, {} acked",
        r.publishes.len(),
        r.publishes.values().filter(|a| a.is_some()).count(),
        seen.len(),
        r.sends.len(),
        r.sends.values().filter(|a| **a).count(),
        r.deliveries,
        r.acks
    );
    (bad, summary)
}
