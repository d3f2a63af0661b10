//! `meridian kv watch KEY [--prefix] [--from-revision R]`: print every change to a key or a
//! prefix, from `GET /v1/watch` (server-sent events).
//!
//! The watch survives the node it talks to: when the connection ends it reconnects (to the next
//! endpoint first) from the revision after the last whole revision it printed, so no change is
//! missed or printed twice; so does a connection silent for three progress intervals, or an
//! `unavailable`-like error event. A `compacted` answer (the history it needs is gone) ends it.

use crate::http_api::{HttpApi, Opened};
use crate::kv_cmd::Output;
use anyhow::{Context, bail};
use meridian_api::sse::take_events;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

/// How often the server is asked for a progress event (it keeps the resume point fresh when
/// the watched keys are quiet).
const PROGRESS_MS: u64 = 10_000;
/// Pause before reconnecting when no endpoint answered.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// A watch that has sent nothing (not even progress) for this long is given up for another
/// node.
const SILENCE_MAX: Duration = Duration::from_millis(3 * PROGRESS_MS);
/// Largest single event accepted (a key and a value at their limits fit well within it).
const EVENT_BYTES_MAX: usize = 64 << 20;
/// Error codes after which the watch resumes on another node rather than end.
const RETRYABLE: [&str; 4] = ["unavailable", "timeout", "not_leader", "range_moved"];

/// What to watch.
pub struct WatchArgs {
    pub endpoints: Vec<String>,
    pub key: String,
    pub prefix: bool,
    pub from_revision: Option<u64>,
    pub prev_kv: bool,
    pub output: Output,
}

pub async fn run(a: WatchArgs) -> anyhow::Result<()> {
    let api = HttpApi::new(a.endpoints.clone())?;
    // Where a (re)connection starts: the revision after the last whole one printed.
    let mut from = a.from_revision;
    let mut endpoint = 0;
    let mut stdout = std::io::stdout();
    loop {
        let mut q = vec![
            (if a.prefix { "prefix" } else { "key" }, a.key.clone()),
            ("progress_ms", PROGRESS_MS.to_string()),
        ];
        if let Some(r) = from {
            q.push(("from_revision", r.to_string()));
        }
        if a.prev_kv {
            q.push(("prev_kv", "true".into()));
        }
        let (mut resp, i) = match api.open(&["v1", "watch"], &q, endpoint).await? {
            Opened::Stream(resp, i) => (resp, i),
            Opened::Unreachable(e) => {
                eprintln!("watch: no node answered ({e:#}); retrying");
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        let mut buf = Vec::new();
        // Events of a revision not yet complete (a txn's changes come as several events, the
        // revision's id on the last): printed together, so a resume never prints one twice.
        let mut pending: Vec<(String, Value)> = Vec::new();
        let ended = 'conn: loop {
            // Progress events keep a healthy watch talking; a silent one has lost its node.
            let chunk = match tokio::time::timeout(SILENCE_MAX, resp.chunk()).await {
                Ok(Ok(Some(c))) => c,
                Ok(Ok(None)) => break "the server closed the watch".to_string(),
                Ok(Err(e)) => break format!("{e}"),
                Err(_) => break format!("nothing heard for {SILENCE_MAX:?}"),
            };
            buf.extend_from_slice(&chunk);
            for ev in take_events(&mut buf) {
                let data: Value = serde_json::from_str(&ev.data)
                    .with_context(|| format!("event {:?} with data {:?}", ev.event, ev.data))?;
                match ev.event.as_str() {
                    "created" | "progress" => {
                        // Every change up to `revision` was sent: resume after it.
                        if let Some(r) = data["revision"].as_u64() {
                            from = Some(from.unwrap_or(0).max(r + 1));
                        }
                    }
                    "put" | "delete" => {
                        pending.push((ev.event, data));
                        // The id marks the end of a revision: resume after it, never inside.
                        if let Some(r) = ev.id.as_deref().and_then(|s| s.parse::<u64>().ok()) {
                            for (kind, data) in pending.drain(..) {
                                print_event(&mut stdout, a.output, &kind, &data)?;
                            }
                            from = Some(r + 1);
                        }
                    }
                    "compacted" | "error" => {
                        let code = data["error"]["code"].as_str().unwrap_or("unknown");
                        let msg = data["error"]["message"].as_str().unwrap_or("");
                        // A node that lost its way (no leader, too slow) is left for another.
                        if RETRYABLE.contains(&code) {
                            break 'conn format!("{code}: {msg}");
                        }
                        bail!("{code}: {msg}");
                    }
                    _ => {}
                }
            }
            if buf.len() > EVENT_BYTES_MAX {
                bail!("an event of over {EVENT_BYTES_MAX} bytes: not a Meridian watch");
            }
        };
        eprintln!(
            "watch: {} ended ({ended}); resuming from revision {}",
            a.endpoints[i],
            from.map_or("now".into(), |r| r.to_string())
        );
        endpoint = i + 1;
    }
}

/// Text: `PUT`/`DELETE`, the key, and for a put the value, one per line (as `etcdctl watch`
/// prints them); JSON: one event object per line.
fn print_event(out: &mut impl Write, o: Output, kind: &str, data: &Value) -> anyhow::Result<()> {
    match o {
        Output::Json => writeln!(out, "{data}")?,
        Output::Text => {
            let kv = &data["kv"];
            writeln!(out, "{}", kind.to_uppercase())?;
            writeln!(out, "{}", kv["key"].as_str().unwrap_or(""))?;
            if kind == "put" {
                writeln!(out, "{}", kv["value"].as_str().unwrap_or(""))?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
