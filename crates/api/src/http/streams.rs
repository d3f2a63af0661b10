//! `/v1/streams`: event streams over HTTP/JSON.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/streams` | create: `{"name":"orders","partitions":4,"retention":"7d","placement":"eu/","colocate":"key"}` |
//! | `GET /v1/streams` | `{"streams":[spec...]}` |
//! | `GET /v1/streams/{name}` | the spec and each partition's offsets, bytes, committed offsets, groups |
//! | `DELETE /v1/streams/{name}` | `{"deleted":true}` (`false` if there was none) |
//! | `POST /v1/streams/{name}/messages` | publish one message `{"key","value","headers","dedup_id"}` or `{"messages":[...]}`; `?partition=`; `Idempotency-Key` |
//! | `GET /v1/streams/{name}/partitions/{p}/messages` | read: `offset=` / `time_ms=` / `from=earliest\|latest` / `group=`, `max=`, `max_bytes=`, `wait_ms=` (long poll) |
//! | `GET /v1/streams/{name}/partitions/{p}/follow` | the same as server-sent events, one per message (`id:` the offset; `Last-Event-ID` resumes) |
//! | `POST /v1/streams/{name}/groups/{group}/heartbeat` | join or heartbeat `{"member":"m1","session_timeout_ms":10000}`: generation and partitions with committed offsets |
//! | `POST /v1/streams/{name}/groups/{group}/leave` | `{"member":"m1"}` |
//! | `POST /v1/streams/{name}/groups/{group}/commit` | `{"partition":0,"offset":42,"member":"m1","generation":3}`: the next offset the group reads; with member and generation refused (`stale_generation`, 409) unless the member still holds the partition in that generation |
//! | `GET /v1/streams/{name}/groups/{group}` | members, assignment, committed offsets and lag |
//!
//! Keys and values are UTF-8 strings; with `"encoding":"base64"` (in a message, or the body) they
//! are base64. A read answers a message as base64 (and says so) when its key or value is not
//! UTF-8.

use super::error::{HttpError, body_error, path_error, query_error};
use super::json::{Encoding, parse_body};
use super::request_id::request_id;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use meridian_node::ClientApi;
use meridian_node::stream::{
    CreateStreamRequest, GroupStatus, MemberAssignment, PartitionReadRequest, Published,
    StreamView, Streams, parse_retention,
};
use meridian_state::StreamSpec;
use meridian_state::stream::{NewMessage, ReadFrom, StreamMessage};
use meridian_types::MeridianError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

type HttpResult<T> = Result<Json<T>, HttpError>;

/// Longest wait of one read inside a follow stream.
const FOLLOW_POLL: Duration = Duration::from_secs(15);

fn streams_of<A: ClientApi>(api: &A) -> Result<Streams, MeridianError> {
    api.streams()
        .ok_or_else(|| MeridianError::invalid("this server does not serve streams"))
}

fn body<T: serde::de::DeserializeOwned, A: ClientApi>(
    api: &A,
    b: Result<Bytes, BytesRejection>,
) -> Result<T, MeridianError> {
    let b = b.map_err(|e| body_error(e, api.limits().request_bytes_max))?;
    parse_body(&b)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default = "one")]
    partitions: u32,
    #[serde(default)]
    retention: String,
    #[serde(default)]
    placement: Option<String>,
    #[serde(default)]
    colocate: Option<String>,
}

fn one() -> u32 {
    1
}

/// `GET /v1/streams`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StreamsJson {
    pub streams: Vec<StreamSpec>,
}

pub async fn create<A: ClientApi>(
    State(api): State<A>,
    b: Result<Bytes, BytesRejection>,
) -> HttpResult<StreamSpec> {
    let s = streams_of(&api)?;
    let c: CreateBody = body(&api, b)?;
    let req = CreateStreamRequest {
        name: c.name,
        partitions: c.partitions,
        retention: parse_retention(&c.retention)?,
        placement: c.placement.map(String::into_bytes),
        colocate: c.colocate.map(String::into_bytes),
    };
    Ok(Json(s.create(req).await?))
}

pub async fn list<A: ClientApi>(State(api): State<A>) -> HttpResult<StreamsJson> {
    Ok(Json(StreamsJson {
        streams: streams_of(&api)?.list()?,
    }))
}

pub async fn get<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<String>, PathRejection>,
) -> HttpResult<StreamView> {
    let Path(name) = path.map_err(path_error)?;
    Ok(Json(streams_of(&api)?.view(&name).await?))
}

pub async fn delete<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<String>, PathRejection>,
) -> HttpResult<serde_json::Value> {
    let Path(name) = path.map_err(path_error)?;
    let deleted = streams_of(&api)?.delete(&name).await?;
    Ok(Json(serde_json::json!({ "deleted": deleted })))
}

/// A message as a client sends it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    dedup_id: Option<String>,
    #[serde(default)]
    encoding: Option<Encoding>,
}

impl MessageIn {
    fn into_new(self, default: Encoding) -> Result<NewMessage, MeridianError> {
        let enc = self.encoding.unwrap_or(default);
        Ok(NewMessage {
            key: self.key.map(|k| enc.decode("key", &k)).transpose()?,
            payload: enc.decode("value", &self.value)?,
            headers: self.headers.into_iter().collect(),
            dedup_id: self.dedup_id,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(default)]
    messages: Option<Vec<MessageIn>>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    dedup_id: Option<String>,
    #[serde(default)]
    encoding: Encoding,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishQuery {
    #[serde(default)]
    partition: Option<u32>,
    #[serde(default)]
    request_id: Option<String>,
}

/// The answer to a publish.
#[derive(Debug, Serialize, Deserialize)]
pub struct PublishedJson {
    pub acks: Vec<Published>,
}

pub async fn publish<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<PublishQuery>, QueryRejection>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> HttpResult<PublishedJson> {
    let Path(name) = path.map_err(path_error)?;
    let Query(q) = q.map_err(query_error)?;
    let s = streams_of(&api)?;
    let rid = request_id(&headers, q.request_id.as_deref())?;
    let p: PublishBody = body(&api, b)?;
    let msgs: Vec<NewMessage> = match (p.messages, p.value) {
        (Some(list), None) => list
            .into_iter()
            .map(|m| m.into_new(p.encoding))
            .collect::<Result<_, _>>()?,
        (None, Some(value)) => vec![
            MessageIn {
                key: p.key,
                value,
                headers: p.headers,
                dedup_id: p.dedup_id,
                encoding: None,
            }
            .into_new(p.encoding)?,
        ],
        _ => {
            return Err(MeridianError::invalid(
                "give either \"value\" (one message) or \"messages\" (a batch)",
            )
            .into());
        }
    };
    let acks = s.publish(&name, q.partition, msgs, rid).await?;
    Ok(Json(PublishedJson { acks }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    time_ms: Option<u64>,
    /// `earliest` or `latest`.
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    max: Option<u32>,
    #[serde(default)]
    max_bytes: Option<u64>,
    #[serde(default)]
    wait_ms: Option<u64>,
}

impl ReadQuery {
    fn into_request(
        self,
        stream: String,
        partition: u32,
    ) -> Result<PartitionReadRequest, MeridianError> {
        let from = match (self.offset, self.time_ms, self.from.as_deref()) {
            (Some(o), None, None) => ReadFrom::Offset(o),
            (None, Some(t), None) => ReadFrom::Time(t),
            (None, None, Some("earliest")) | (None, None, None) => ReadFrom::Earliest,
            (None, None, Some("latest")) => ReadFrom::Latest,
            (None, None, Some(other)) => {
                return Err(MeridianError::invalid(format!(
                    "from={other:?}: expected earliest or latest"
                )));
            }
            _ => {
                return Err(MeridianError::invalid(
                    "give at most one of offset, time_ms and from",
                ));
            }
        };
        Ok(PartitionReadRequest {
            stream,
            partition,
            from,
            group: self.group,
            max_count: self.max.unwrap_or(100),
            max_bytes: self.max_bytes.unwrap_or(1 << 20),
            wait_ms: self.wait_ms.unwrap_or(0),
        })
    }
}

/// A message as a client reads it.
#[derive(Debug, Serialize, Deserialize)]
pub struct MessageJson {
    pub offset: u64,
    pub timestamp_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key: Option<String>,
    pub value: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encoding: Option<Encoding>,
}

impl MessageJson {
    pub fn new(m: &StreamMessage) -> Self {
        let utf8 = std::str::from_utf8(&m.payload).is_ok()
            && m.key
                .as_ref()
                .is_none_or(|k| std::str::from_utf8(k).is_ok());
        let enc = |b: &[u8]| {
            if utf8 {
                String::from_utf8_lossy(b).into_owned()
            } else {
                BASE64.encode(b)
            }
        };
        MessageJson {
            offset: m.offset,
            timestamp_ms: m.timestamp_ms,
            key: m.key.as_deref().map(enc),
            value: enc(&m.payload),
            headers: m.headers.iter().cloned().collect(),
            encoding: (!utf8).then_some(Encoding::Base64),
        }
    }
}

/// The answer to a read.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReadJson {
    pub messages: Vec<MessageJson>,
    pub next_offset: u64,
    pub first_offset: u64,
    pub end_offset: u64,
}

pub async fn read<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<(String, u32)>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> HttpResult<ReadJson> {
    let Path((name, partition)) = path.map_err(path_error)?;
    let Query(q) = q.map_err(query_error)?;
    let r = streams_of(&api)?
        .read(q.into_request(name, partition)?)
        .await?;
    Ok(Json(ReadJson {
        messages: r.messages.iter().map(MessageJson::new).collect(),
        next_offset: r.next_offset,
        first_offset: r.first_offset,
        end_offset: r.end_offset,
    }))
}

pub async fn follow<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<(String, u32)>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let Path((name, partition)) = path.map_err(path_error)?;
    let Query(q) = q.map_err(query_error)?;
    let s = streams_of(&api)?;
    let mut req = q.into_request(name, partition)?;
    if let Some(last) = headers.get("last-event-id") {
        let id: u64 = last
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| MeridianError::invalid("Last-Event-ID must be an offset"))?;
        req.from = ReadFrom::Offset(id + 1);
        req.group = None;
    }
    req.wait_ms = FOLLOW_POLL.as_millis() as u64;
    // Fail before the stream starts when the stream does not exist.
    s.spec(&req.stream).await?;
    let events = futures::stream::unfold(Some((s, req)), |st| async move {
        let (s, mut req) = st?;
        match s.read(req.clone()).await {
            Ok(r) => {
                req.from = ReadFrom::Offset(r.next_offset);
                req.group = None;
                let evs: Vec<Result<Event, std::convert::Infallible>> = r
                    .messages
                    .iter()
                    .map(|m| {
                        let data = serde_json::to_string(&MessageJson::new(m))
                            .unwrap_or_else(|_| "{}".into());
                        Ok(Event::default().id(m.offset.to_string()).data(data))
                    })
                    .collect();
                Some((futures::stream::iter(evs), Some((s, req))))
            }
            Err(e) => {
                let data =
                    serde_json::json!({"error": {"code": e.code.as_str(), "message": e.message}});
                let ev = Event::default().event("error").data(data.to_string());
                // Say what went wrong, then end the stream.
                Some((futures::stream::iter(vec![Ok(ev)]), None))
            }
        }
    });
    use futures::StreamExt;
    Ok(Sse::new(events.flatten())
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    member: String,
    #[serde(default)]
    session_timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    partition: u32,
    offset: u64,
    /// A member's commit names it and the generation its heartbeat answered (both or neither).
    member: Option<String>,
    generation: Option<u64>,
}

pub async fn heartbeat<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<(String, String)>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> HttpResult<MemberAssignment> {
    let Path((name, group)) = path.map_err(path_error)?;
    let m: MemberBody = body(&api, b)?;
    let s = streams_of(&api)?;
    Ok(Json(
        s.heartbeat(&name, &group, &m.member, m.session_timeout_ms)
            .await?,
    ))
}

pub async fn leave<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<(String, String)>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> HttpResult<serde_json::Value> {
    let Path((name, group)) = path.map_err(path_error)?;
    let m: MemberBody = body(&api, b)?;
    streams_of(&api)?.leave(&name, &group, &m.member).await?;
    Ok(Json(serde_json::json!({ "left": true })))
}

pub async fn commit<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<(String, String)>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> HttpResult<serde_json::Value> {
    let Path((name, group)) = path.map_err(path_error)?;
    let c: CommitBody = body(&api, b)?;
    let fence = match (&c.member, c.generation) {
        (Some(m), Some(g)) => Some((m.as_str(), g)),
        (None, None) => None,
        _ => {
            return Err(
                MeridianError::invalid("a fenced commit names both member and generation").into(),
            );
        }
    };
    streams_of(&api)?
        .commit(&name, &group, c.partition, c.offset, fence)
        .await?;
    Ok(Json(serde_json::json!({ "committed": c.offset })))
}

pub async fn group_status<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> HttpResult<GroupStatus> {
    let Path((name, group)) = path.map_err(path_error)?;
    Ok(Json(streams_of(&api)?.group_status(&name, &group).await?))
}
