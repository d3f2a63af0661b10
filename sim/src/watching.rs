//! The watcher of the messaging workload (`--messaging`): a watch over the key-value workload's
//! keys (`GET /v1/watch?prefix=k`, server-sent events) through random nodes during the faults.
//! Each connection lives a random while or until the fault ends it; the next one, through another
//! random node, resumes after the last whole revision the watcher got (or the last progress
//! event). After the heal a fresh watch from revision 1 replays the history as reference.
//! `invariants::watch_resume` then checks that the resumed pieces, joined, are exactly that
//! history: every change once, in revision order, none lost at a resume, and every acknowledged
//! write among them.

use crate::run::{Plan, WARMUP, host};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Random stream of the watcher, apart from the other clients'.
const WATCHER_RNG: u64 = 0x5741_5443;
/// How long one connection of the watcher lives at most (a random share of it).
const CONNECTION_MS: std::ops::Range<u64> = 200..4000;
/// The progress interval asked for: a quiet watch still moves its resume point.
const PROGRESS_MS: u64 = 300;
/// Time allowed to open a watch.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed open.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// One change as a watch delivered it: revision, key, `put`/`delete`, value.
pub use meridian_tests::watch_workload::Change;
use meridian_tests::watch_workload::feed;

/// One connection of the watcher: where it resumed, what it got, how it ended.
#[derive(Clone, Debug, Serialize)]
pub struct Segment {
    pub node: String,
    pub from_revision: u64,
    pub changes: Vec<Change>,
    pub ended: String,
}

/// Everything the watcher and the replay saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WatchRecord {
    pub segments: Vec<Segment>,
    /// Every change up to this revision was delivered to the watcher (its resume point less 1).
    pub through: u64,
    /// The replay from revision 1 after the heal, up to at least `through`.
    pub replay: Option<Vec<Change>>,
    /// Events whose data did not parse, or a replay that could not finish.
    pub problems: Vec<String>,
}

#[derive(Clone, Default)]
pub struct WatchLog(Arc<Mutex<WatchRecord>>);

impl WatchLog {
    pub fn record(&self) -> WatchRecord {
        self.0.lock().clone()
    }

    fn update(&self, f: impl FnOnce(&mut WatchRecord)) {
        f(&mut self.0.lock());
    }
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Reads one watch connection until `deadline`, its end, or `stop(through)` says enough.
/// Whole revisions go to `out`; `through` moves to the last revision known complete. Answers
/// how the connection ended.
async fn read_watch(
    body: &mut hyper::body::Incoming,
    deadline: Duration,
    through: &mut u64,
    out: &mut Vec<Change>,
    problems: &mut Vec<String>,
    stop: impl Fn(u64) -> bool,
) -> String {
    let mut buf = Vec::new();
    // Changes of a revision whose last event (the one with the id) has not come yet.
    let mut pending: Vec<Change> = Vec::new();
    loop {
        if stop(*through) {
            return "done".into();
        }
        let left = deadline.saturating_sub(now());
        if left.is_zero() {
            return "deadline".into();
        }
        let frame = match tokio::time::timeout(left, body.frame()).await {
            Err(_) => return "deadline".into(),
            Ok(None) => return "closed by the server".into(),
            Ok(Some(Err(e))) => return format!("body: {e}"),
            Ok(Some(Ok(f))) => f,
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        if let Some(end) = feed(&mut buf, &mut pending, out, through, problems) {
            return end;
        }
    }
}

/// Watches the key-value workload's keys through random nodes until the fault phase ends.
pub async fn watcher(plan: Plan, log: WatchLog, until: Duration) -> turmoil::Result {
    let mut rng = SmallRng::seed_from_u64(plan.seed ^ WATCHER_RNG);
    tokio::time::sleep(WARMUP).await;
    let mut through = 0u64;
    while now() < until {
        let node = host(rng.random_range(1..=plan.nodes));
        let from = through + 1;
        let path = format!("/v1/watch?prefix=k&from_revision={from}&progress_ms={PROGRESS_MS}");
        let mut body = match crate::http::open_stream(&node, &path, OPEN_TIMEOUT).await {
            Ok((200, body)) => body,
            _ => {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let deadline = (now() + Duration::from_millis(rng.random_range(CONNECTION_MS))).min(until);
        let mut changes = Vec::new();
        let mut problems = Vec::new();
        let ended = read_watch(
            &mut body,
            deadline,
            &mut through,
            &mut changes,
            &mut problems,
            |_| false,
        )
        .await;
        log.update(|r| {
            r.segments.push(Segment {
                node,
                from_revision: from,
                changes,
                ended,
            });
            r.through = through;
            r.problems.extend(problems);
        });
    }
    Ok(())
}

/// After the heal: replays the history from revision 1 through the nodes in turn until it has
/// every change up to the watcher's `through`.
pub async fn replayer(plan: Plan, log: WatchLog, give_up: Duration) -> turmoil::Result {
    // The watcher's last connection ends with the fault phase; give it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let target = log.record().through;
    let mut node_index = 0u64;
    while now() < give_up {
        node_index = node_index % plan.nodes + 1;
        let node = host(node_index);
        let path = format!("/v1/watch?prefix=k&from_revision=1&progress_ms={PROGRESS_MS}");
        let mut body = match crate::http::open_stream(&node, &path, OPEN_TIMEOUT).await {
            Ok((200, body)) => body,
            _ => {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let mut through = 0;
        let mut changes = Vec::new();
        let mut problems = Vec::new();
        let done = |t: u64| t >= target;
        read_watch(
            &mut body,
            give_up,
            &mut through,
            &mut changes,
            &mut problems,
            done,
        )
        .await;
        let complete = through >= target;
        log.update(|r| {
            r.problems.extend(problems);
            if complete {
                r.replay = Some(changes);
            }
        });
        if complete {
            return Ok(());
        }
    }
    log.update(|r| {
        r.problems.push(format!(
            "the replay did not reach revision {target} after the heal"
        ))
    });
    Ok(())
}
