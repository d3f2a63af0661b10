//! `GET /v1/watch?key=K` or `?prefix=P`, with `from_revision=R`, `prev_kv=true`,
//! `progress_ms=N`: a watch as server-sent events.
//!
//! Events: `created` (`{"revision":R}`: every change after R follows), then `put` and
//! `delete` (each `{"type","kv","prev_kv"?}`), `progress` (`{"revision":R}`: every change up to R
//! was sent), and a final `compacted` (`{"error":{...},"compact_revision":C}`) or `error`. The
//! last event of each revision carries `id: <revision>`, so a reconnecting client's
//! `Last-Event-ID` resumes right after the last whole revision it got (`from_revision` wins when
//! both are given). Order and resumption across ranges: see `meridian_node::watch`.

use super::error::{HttpError, query_error};
use super::json::{Encoding, KvJson};
use crate::keys::prefix_range;
use crate::observe::observed;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use meridian_node::{ClientApi, WatchMessage, WatchSpec};
use meridian_state::{EventKind, WatchEvent};
use meridian_types::{ErrorCode, MeridianError};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The shortest progress interval a client may ask for (a bound on input).
pub const PROGRESS_MS_MIN: u64 = 100;
/// Events queued per SSE watch before its watch waits for the client.
const SSE_QUEUE: usize = 256;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchQuery {
    key: Option<String>,
    prefix: Option<String>,
    from_revision: Option<u64>,
    #[serde(default)]
    prev_kv: bool,
    progress_ms: Option<u64>,
    #[serde(default)]
    encoding: Encoding,
}

/// One change, as the `data` of a `put` or `delete` event.
#[derive(Debug, Serialize)]
pub struct EventJson {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub kv: KvJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_kv: Option<KvJson>,
}

impl EventJson {
    pub fn new(e: &WatchEvent) -> Self {
        Self {
            kind: match e.kind {
                EventKind::Put => "put",
                EventKind::Delete => "delete",
            },
            kv: KvJson::new(&e.kv, false),
            prev_kv: e.prev_kv.as_ref().map(|p| KvJson::new(p, false)),
        }
    }
}

fn json_event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_else(|_| "{}".into()))
}

fn spec_of(q: WatchQuery, last_event_id: Option<u64>) -> Result<WatchSpec, MeridianError> {
    let (key, range_end) = match (q.key, q.prefix) {
        (Some(k), None) => (q.encoding.decode("key", &k)?, Vec::new()),
        (None, Some(p)) => prefix_range(&q.encoding.decode("prefix", &p)?),
        _ => {
            return Err(MeridianError::invalid(
                "give exactly one of key= and prefix=",
            ));
        }
    };
    if key.is_empty() {
        return Err(MeridianError::invalid("key is empty"));
    }
    let start_revision = match (q.from_revision, last_event_id) {
        (Some(r), _) => r,
        (None, Some(id)) => id.saturating_add(1),
        (None, None) => 0,
    };
    let progress_every = match q.progress_ms {
        None => None,
        Some(ms) if ms >= PROGRESS_MS_MIN => Some(Duration::from_millis(ms)),
        Some(ms) => {
            return Err(MeridianError::invalid(format!(
                "progress_ms {ms} is below {PROGRESS_MS_MIN}"
            )));
        }
    };
    Ok(WatchSpec {
        key,
        range_end,
        start_revision,
        prev_kv: q.prev_kv,
        progress_every,
    })
}

/// `GET /v1/watch`.
pub async fn watch<A: ClientApi>(
    State(api): State<A>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<axum::response::Response, HttpError> {
    let mut stream = observed(&api, "watch", async {
        let q: WatchQuery = Query::try_from_uri(&uri)
            .map(|q| q.0)
            .map_err(query_error)?;
        let last_event_id = match headers.get("last-event-id").map(|v| v.to_str()) {
            None => None,
            Some(Ok(s)) => Some(s.trim().parse::<u64>().map_err(|_| {
                MeridianError::invalid(format!("Last-Event-ID {s:?} is not a revision"))
            })?),
            Some(Err(_)) => return Err(MeridianError::invalid("Last-Event-ID is not ASCII")),
        };
        api.watch(spec_of(q, last_event_id)?).await
    })
    .await?;
    let (tx, rx) = mpsc::channel(SSE_QUEUE);
    tokio::spawn(async move {
        let created = serde_json::json!({ "revision": stream.start_revision() });
        if tx.send(Ok(json_event("created", &created))).await.is_err() {
            return;
        }
        while let Some(msg) = stream.recv().await {
            let mut out = Vec::new();
            let mut last = false;
            match msg {
                WatchMessage::Events { events, .. } => {
                    for (i, e) in events.iter().enumerate() {
                        let mut ev = json_event(
                            if e.kind == EventKind::Put {
                                "put"
                            } else {
                                "delete"
                            },
                            &EventJson::new(e),
                        );
                        // The id only where a revision ends, so a resume never splits a txn.
                        let ends = events
                            .get(i + 1)
                            .is_none_or(|n| n.kv.mod_revision != e.kv.mod_revision);
                        if ends {
                            ev = ev.id(e.kv.mod_revision.to_string());
                        }
                        out.push(ev);
                    }
                }
                WatchMessage::Progress { revision } => {
                    out.push(json_event(
                        "progress",
                        &serde_json::json!({ "revision": revision }),
                    ));
                }
                WatchMessage::Compacted { compact_revision } => {
                    let err = MeridianError::new(
                        ErrorCode::Compacted,
                        format!(
                            "the watch's start revision is compacted away (compact revision {compact_revision}); start again from a revision above it"
                        ),
                    );
                    out.push(json_event(
                        "compacted",
                        &serde_json::json!({
                            "error": { "code": err.code.as_str(), "message": err.message },
                            "compact_revision": compact_revision,
                        }),
                    ));
                    last = true;
                }
                WatchMessage::Failed(e) => {
                    out.push(json_event(
                        "error",
                        &serde_json::json!({
                            "error": { "code": e.code.as_str(), "message": e.message },
                        }),
                    ));
                    last = true;
                }
            }
            for ev in out {
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            if last {
                return;
            }
        }
    });
    Ok(
        Sse::new(ReceiverStream::<Result<Event, Infallible>>::new(rx))
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}
