//! Clients of the real-network test: concurrent processes doing read, write, cas and delete
//! through Meridian's HTTP API on a few keys, recording every operation to a
//! [`HistoryWriter`] (invoke, then ok, fail or info).
//!
//! As in Jepsen's `independent` workloads the keys rotate: each of [`KEY_SLOTS`] slots serves a
//! key for [`OPS_PER_KEY`] operations, then a fresh one, which keeps each key's history short
//! enough for an exact linearizability search even with many unknown outcomes. Values are
//! unique (`p<process>-<n>`). A write carries an `Idempotency-Key` and is retried with it on
//! another node until answered or [`OP_DEADLINE`] passes, so a retry never applies twice and
//! most ambiguous errors become definite answers; what stays ambiguous is recorded as `info`.

use crate::jepsen::{CAS_MISMATCH, HistoryWriter, Kind};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Keys in use at once.
pub const KEY_SLOTS: usize = 4;
/// Operations on one key before its slot moves to a fresh key.
pub const OPS_PER_KEY: u64 = 150;
/// First letters of the slots' keys, spread over the pre-split key space.
const SLOT_PREFIX: [&str; KEY_SLOTS] = ["c", "j", "q", "x"];
/// One HTTP attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2500);
/// All attempts of one operation.
pub const OP_DEADLINE: Duration = Duration::from_secs(6);
/// Pause between a client's operations.
const THINK_MS: std::ops::Range<u64> = 0..30;

/// Keys in rotation and the values last seen per key (cas picks its expectation from them).
#[derive(Default)]
pub struct Keys {
    generation: [AtomicU64; KEY_SLOTS],
    ops: [AtomicU64; KEY_SLOTS],
    seen: Mutex<std::collections::HashMap<String, Vec<Option<String>>>>,
    /// Every key used, for the final reads.
    pub used: Mutex<std::collections::BTreeSet<String>>,
}

impl Keys {
    fn pick(&self, rng: &mut StdRng) -> String {
        let slot = rng.random_range(0..KEY_SLOTS);
        let n = self.ops[slot].fetch_add(1, Ordering::Relaxed);
        let mut generation = self.generation[slot].load(Ordering::Relaxed);
        if n > 0 && n.is_multiple_of(OPS_PER_KEY) {
            generation = self.generation[slot].fetch_add(1, Ordering::Relaxed) + 1;
        }
        let key = format!("{}{generation:03}", SLOT_PREFIX[slot]);
        self.used.lock().insert(key.clone());
        key
    }

    fn saw(&self, key: &str, v: Option<String>) {
        let mut s = self.seen.lock();
        let e = s.entry(key.to_string()).or_default();
        e.push(v);
        if e.len() > 4 {
            e.remove(0);
        }
    }

    fn guess(&self, key: &str, rng: &mut StdRng) -> Option<String> {
        let s = self.seen.lock();
        match s.get(key) {
            // Mostly the latest value seen, so that many swaps succeed.
            Some(vs) if !vs.is_empty() && rng.random_bool(0.7) => vs[vs.len() - 1].clone(),
            Some(vs) if !vs.is_empty() => vs[rng.random_range(0..vs.len())].clone(),
            _ => None,
        }
    }
}

/// What one HTTP attempt learned.
enum Answer {
    /// A definite answer (the JSON body, or `None` for a read of an absent key).
    Done(Option<Value>),
    /// A definite refusal: the request was invalid and did nothing.
    Refused(String),
    /// Unknown: a timeout, a lost connection, or an error after which the write may have
    /// happened. Worth retrying.
    Unknown(String),
}

async fn attempt(
    http: &reqwest::Client,
    ep: &str,
    f: &str,
    key: &str,
    invoke: &Value,
    req_id: &str,
) -> Answer {
    let url = format!("http://{ep}/v1/kv/{key}");
    let req = match f {
        "read" => http.get(&url),
        "write" => http
            .put(&url)
            .body(invoke.as_str().unwrap_or_default().to_string()),
        "delete" => http.delete(&url),
        _ => {
            let cmp = match invoke[0].as_str() {
                Some(v) => json!({"key": key, "target": "value", "op": "=", "value": v}),
                None => json!({"key": key, "target": "version", "op": "=", "value": 0}),
            };
            http.post(format!("http://{ep}/v1/txn")).json(&json!({
                "compare": [cmp],
                "success": [{"put": {"key": key, "value": invoke[1]}}],
                "failure": [],
            }))
        }
    };
    let req = if f == "read" {
        req
    } else {
        req.header("Idempotency-Key", req_id)
    };
    let resp = match req.timeout(ATTEMPT_TIMEOUT).send().await {
        Ok(r) => r,
        Err(e) => return Answer::Unknown(short(&e.to_string())),
    };
    let status = resp.status();
    let body: Value = match resp.json().await {
        Ok(b) => b,
        Err(e) => return Answer::Unknown(format!("read body: {}", short(&e.to_string()))),
    };
    if status.is_success() {
        return Answer::Done(Some(body));
    }
    let code = body["error"]["code"].as_str().unwrap_or("").to_string();
    match code.as_str() {
        "key_not_found" if f == "read" => Answer::Done(None),
        "invalid_argument" | "key_too_large" | "value_too_large" | "request_too_large" => {
            Answer::Refused(code)
        }
        "" => Answer::Unknown(format!("http {status}")),
        _ => Answer::Unknown(code),
    }
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

pub struct WorkloadConfig {
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub seed: u64,
}

/// Runs the clients until `stop`; returns the number of operations invoked.
pub async fn run(
    cfg: WorkloadConfig,
    history: Arc<HistoryWriter>,
    keys: Arc<Keys>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(1000))
        .pool_max_idle_per_host(2)
        .build()
        .expect("build an http client");
    let n_clients = cfg.clients as u64;
    let endpoints = Arc::new(cfg.endpoints);
    let invoked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..n_clients {
        let (http, history, keys, stop, endpoints, invoked) = (
            http.clone(),
            history.clone(),
            keys.clone(),
            stop.clone(),
            endpoints.clone(),
            invoked.clone(),
        );
        let seed = cfg.seed;
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (c << 40) ^ 0x5eed);
            let mut process = c;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(THINK_MS))).await;
                n += 1;
                invoked.fetch_add(1, Ordering::Relaxed);
                let key = keys.pick(&mut rng);
                let value = format!("p{process}-{n}");
                let (f, invoke) = match rng.random_range(0..10) {
                    0..4 => ("read", Value::Null),
                    4..7 => ("write", json!(value)),
                    7..9 => ("cas", json!([keys.guess(&key, &mut rng), value])),
                    _ => ("delete", Value::Null),
                };
                let home = (process as usize) % endpoints.len();
                let req_id = format!("{seed:x}-{process}-{n}");
                let unknown = one_op(
                    &http, &history, &keys, &endpoints, home, process, f, &key, invoke, &req_id,
                )
                .await;
                if unknown {
                    // As in Jepsen: a process with an operation of unknown outcome is retired.
                    process += n_clients;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    invoked.load(Ordering::Relaxed)
}

/// Performs and records one operation; true if its outcome stays unknown.
#[allow(clippy::too_many_arguments)]
pub async fn one_op(
    http: &reqwest::Client,
    history: &HistoryWriter,
    keys: &Keys,
    endpoints: &[String],
    home: usize,
    process: u64,
    f: &str,
    key: &str,
    invoke: Value,
    req_id: &str,
) -> bool {
    history.invoke(process, f, key, invoke.clone(), &endpoints[home]);
    let started = Instant::now();
    let mut errors: Vec<String> = Vec::new();
    let mut i = 0;
    loop {
        let ep = &endpoints[(home + i) % endpoints.len()];
        i += 1;
        match attempt(http, ep, f, key, &invoke, req_id).await {
            Answer::Done(body) => {
                let (kind, value, error) = match f {
                    "read" => {
                        let v = body
                            .as_ref()
                            .and_then(|b| b["value"].as_str())
                            .map(String::from);
                        keys.saw(key, v.clone());
                        (Kind::Ok, json!(v), None)
                    }
                    "write" => {
                        keys.saw(key, invoke.as_str().map(String::from));
                        (Kind::Ok, invoke.clone(), None)
                    }
                    "delete" => {
                        let deleted = body.as_ref().and_then(|b| b["deleted"].as_u64());
                        (Kind::Ok, json!(deleted.unwrap_or(0) > 0), None)
                    }
                    _ => {
                        let ok = body.as_ref().and_then(|b| b["succeeded"].as_bool());
                        if ok == Some(true) {
                            (Kind::Ok, invoke.clone(), None)
                        } else {
                            (Kind::Fail, invoke.clone(), Some(CAS_MISMATCH.to_string()))
                        }
                    }
                };
                history.complete(process, kind, f, key, value, error, ep);
                return false;
            }
            Answer::Refused(code) => {
                // After an unknown attempt a write may still have happened.
                let kind = if errors.is_empty() || f == "read" {
                    Kind::Fail
                } else {
                    Kind::Info
                };
                history.complete(process, kind, f, key, Value::Null, Some(code), ep);
                return kind == Kind::Info;
            }
            Answer::Unknown(e) => {
                errors.push(e);
                if started.elapsed() + ATTEMPT_TIMEOUT / 2 > OP_DEADLINE {
                    // A read did nothing: it certainly failed. A write may have happened.
                    let kind = if f == "read" { Kind::Fail } else { Kind::Info };
                    errors.dedup();
                    history.complete(
                        process,
                        kind,
                        f,
                        key,
                        Value::Null,
                        Some(errors.join("; ")),
                        ep,
                    );
                    return kind == Kind::Info;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads `key` through `endpoint` until answered or `deadline`, recording the read as process
/// `process`; the value read, or `None` if no answer came.
pub async fn final_read(
    http: &reqwest::Client,
    history: &HistoryWriter,
    endpoint: &str,
    process: u64,
    key: &str,
    deadline: Duration,
) -> Option<Option<String>> {
    let started = Instant::now();
    loop {
        history.invoke(process, "read", key, Value::Null, endpoint);
        match attempt(http, endpoint, "read", key, &Value::Null, "").await {
            Answer::Done(body) => {
                let v = body
                    .as_ref()
                    .and_then(|b| b["value"].as_str())
                    .map(String::from);
                history.complete(process, Kind::Ok, "read", key, json!(v), None, endpoint);
                return Some(v);
            }
            Answer::Refused(e) | Answer::Unknown(e) => {
                history.complete(
                    process,
                    Kind::Fail,
                    "read",
                    key,
                    Value::Null,
                    Some(e),
                    endpoint,
                );
                if started.elapsed() > deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
