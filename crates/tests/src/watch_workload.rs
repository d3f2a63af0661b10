//! The watcher of the real-network test: a server-sent-event watch of every key
//! (`GET /v1/watch?prefix=`) through a random node, each connection living a random while or
//! until a fault ends it; the next, through another random node, resumes after the last whole
//! revision received (or the last progress event). After the heal [`verify`] replays the history
//! from revision 1 through one node: the resumed pieces, joined, must be exactly that history up
//! to the last revision the watcher knew complete (nothing lost at a resume, nothing repeated),
//! each in revision order.

use meridian_api::sse::take_events;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long one connection lives at most (a random share of it).
const CONNECTION_MS: std::ops::Range<u64> = 300..4000;
/// The progress interval asked for.
const PROGRESS_MS: u64 = 300;
/// Time allowed to open a watch, and for the replay after the heal.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);
const REPLAY_DEADLINE: Duration = Duration::from_secs(60);

/// One change: revision, key, `put`/`delete`, value.
pub type Change = (u64, String, String, Option<String>);

#[derive(Debug, Default)]
pub struct WatchRecord {
    pub pieces: Vec<Vec<Change>>,
    /// Every change up to this revision was delivered.
    pub through: u64,
    pub problems: Vec<String>,
}

/// The change a `put` or `delete` event's data describes.
pub fn change_of(kind: &str, data: &Value) -> Option<Change> {
    let kv = data.get("kv")?;
    Some((
        kv.get("mod_revision")?.as_u64()?,
        kv.get("key")?.as_str()?.to_string(),
        kind.to_string(),
        kv.get("value").and_then(Value::as_str).map(str::to_string),
    ))
}

/// Reads one watch until `deadline`, its end, or `through` reaches `target`. Whole revisions go
/// to `out`; `through` moves to the last revision known complete.
async fn read_watch(
    resp: &mut reqwest::Response,
    deadline: Instant,
    target: u64,
    through: &mut u64,
    out: &mut Vec<Change>,
    problems: &mut Vec<String>,
) {
    let mut buf = Vec::new();
    let mut pending: Vec<Change> = Vec::new();
    while *through < target {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => return,
        };
        buf.extend_from_slice(&chunk);
        if feed(&mut buf, &mut pending, out, through, problems).is_some() {
            return; // `compacted` or `error`: the next connection starts again
        }
    }
}

/// Takes the complete events off `buf` and applies them: whole revisions go to `out` (the
/// changes of a revision wait in `pending` until its last event, the one with the id), and
/// `through` moves to the last revision known complete (an id, or a progress event). Answers
/// `Some(why)` when the watch ended (`compacted`, `error`).
pub fn feed(
    buf: &mut Vec<u8>,
    pending: &mut Vec<Change>,
    out: &mut Vec<Change>,
    through: &mut u64,
    problems: &mut Vec<String>,
) -> Option<String> {
    for ev in take_events(buf) {
        let data: Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("event {:?} data {:?}: {e}", ev.event, ev.data));
                continue;
            }
        };
        match ev.event.as_str() {
            "put" | "delete" => match change_of(&ev.event, &data) {
                Some(c) => {
                    pending.push(c);
                    if let Some(r) = ev.id.as_deref().and_then(|s| s.parse::<u64>().ok()) {
                        out.append(pending);
                        *through = (*through).max(r);
                    }
                }
                None => problems.push(format!("a {} event without its fields: {data}", ev.event)),
            },
            "progress" => {
                if let Some(r) = data["revision"].as_u64() {
                    if let Some(c) = pending.first() {
                        problems.push(format!(
                            "progress {r} while revision {} was not complete",
                            c.0
                        ));
                    }
                    *through = (*through).max(r);
                }
            }
            "created" => {}
            other => return Some(format!("{other}: {data}")),
        }
    }
    None
}

async fn open(http: &reqwest::Client, ep: &str, from: u64) -> Option<reqwest::Response> {
    let url =
        format!("http://{ep}/v1/watch?prefix=&from_revision={from}&progress_ms={PROGRESS_MS}");
    let resp = tokio::time::timeout(OPEN_TIMEOUT, http.get(url).send())
        .await
        .ok()?
        .ok()?;
    resp.status().is_success().then_some(resp)
}

/// Watches every key through random nodes until `stop`.
pub async fn watcher(
    eps: Vec<String>,
    seed: u64,
    rec: Arc<Mutex<WatchRecord>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("build an http client");
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7761_7463);
    let mut through = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let ep = &eps[rng.random_range(0..eps.len())];
        let Some(mut resp) = open(&http, ep, through + 1).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(CONNECTION_MS));
        let mut piece = Vec::new();
        let mut problems = Vec::new();
        read_watch(
            &mut resp,
            deadline,
            u64::MAX,
            &mut through,
            &mut piece,
            &mut problems,
        )
        .await;
        let mut r = rec.lock();
        r.pieces.push(piece);
        r.through = through;
        r.problems.extend(problems);
    }
}

/// After the heal: replays from revision 1 and compares. Answers what is wrong and a summary.
pub async fn verify(eps: &[String], rec: &Mutex<WatchRecord>) -> (Vec<String>, String) {
    let (joined, target, mut bad) = {
        let r = rec.lock();
        let joined: Vec<Change> = r.pieces.iter().flatten().cloned().collect();
        (joined, r.through, r.problems.clone())
    };
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut replay = None;
    let mut i = 0;
    while replay.is_none() && start.elapsed() < REPLAY_DEADLINE {
        let ep = &eps[i % eps.len()];
        i += 1;
        let Some(mut resp) = open(&http, ep, 1).await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let (mut through, mut out) = (0, Vec::new());
        let deadline = start + REPLAY_DEADLINE;
        read_watch(
            &mut resp,
            deadline,
            target,
            &mut through,
            &mut out,
            &mut bad,
        )
        .await;
        if through >= target {
            replay = Some(out);
        }
    }
    let Some(replay) = replay else {
        bad.push(format!(
            "the replay did not reach revision {target} after the heal"
        ));
        return (bad, String::new());
    };
    let want: Vec<Change> = replay.into_iter().filter(|c| c.0 <= target).collect();
    bad.extend(check_resumed(&joined, &want, target));
    let summary = format!(
        "{} changes watched over {} connections, checked against a replay of {}",
        joined.len(),
        rec.lock().pieces.len(),
        want.len()
    );
    (bad, summary)
}

/// What is wrong with a resumed watch: `joined` (its pieces in order) must equal `replay` (a
/// fresh watch from revision 1, cut at `through`), each revision compared as a set (a txn's
/// changes may come in any order), and both must be in revision order.
pub fn check_resumed(joined: &[Change], replay: &[Change], through: u64) -> Vec<String> {
    let mut bad = Vec::new();
    for (what, feed) in [("the resumed watch", joined), ("the replay", replay)] {
        if let Some(w) = feed.windows(2).find(|w| w[1].0 < w[0].0) {
            bad.push(format!(
                "{what} went from revision {} ({}) back to {} ({})",
                w[0].0, w[0].1, w[1].0, w[1].1
            ));
        }
    }
    let mut got = joined.to_vec();
    let mut want: Vec<Change> = replay.iter().filter(|c| c.0 <= through).cloned().collect();
    got.sort();
    want.sort();
    if got != want {
        let i = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        bad.push(format!(
            "the resumed watch ({} changes) differs from the replay ({} up to revision {through}) \
             at change {i}: got {:?}, replay has {:?}",
            got.len(),
            want.len(),
            got.get(i),
            want.get(i)
        ));
    }
    bad
}
