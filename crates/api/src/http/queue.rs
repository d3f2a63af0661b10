//! `/v1/queues`: durable work queues.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/queues` | `{"queues":[spec...]}` |
//! | `PUT /v1/queues/{name}` | create from `{"visibility_timeout_ms":30000,"max_deliveries":5,"dead_letter":"dlq","delay_ms":0,"dedup_window_ms":300000,"colocate":"key"}` (all optional); idempotent, 409 `queue_exists` for another configuration |
//! | `GET /v1/queues/{name}` | `{"spec":{...},"stats":{...}}` |
//! | `DELETE /v1/queues/{name}` | `{"deleted":true}` (`false` if there was none) |
//! | `POST /v1/queues/{name}/messages` | send `{"messages":[{"body":"..","attributes":{},"group":"g","dedup_id":"d","delay_ms":0}]}` or one message as the object itself → `{"messages":[{"id":7,"duplicate":false}]}` |
//! | `POST /v1/queues/{name}/receive?max=10&wait_ms=20000&visibility_timeout_ms=` | `{"messages":[delivery...]}`, waiting up to `wait_ms` for the first |
//! | `POST /v1/queues/{name}/ack` | `{"receipts":["7.1",..]}` → `{"results":[{"receipt":"7.1","acked":true}, {"receipt":..,"error":{..}}]}` |
//! | `POST /v1/queues/{name}/nack` | `{"receipt":"7.1","delay_ms":1000,"error":"why"}` |
//! | `POST /v1/queues/{name}/extend` | `{"receipt":"7.1","timeout_ms":30000}` → `{"deadline_ms":..}` |
//! | `GET /v1/queues/{name}/stats` | the depth and totals alone |
//!
//! Bodies are UTF-8 strings unless the message says `"encoding":"base64"`. Deadlines are
//! milliseconds since the Unix epoch on the leader's clock.

use super::error::{HttpError, body_error, path_error, query_error};
use super::json::{Encoding, parse_body};
use crate::observe::observed;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use meridian_node::{ClientApi, QueueInfo};
use meridian_state::QueueSpec;
use meridian_state::queue::{Delivery, QueueConfig, QueueStats, Receipt, SendMessage};
use meridian_types::MeridianError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

type HttpResult<T> = Result<Json<T>, HttpError>;
type Body = Result<Bytes, BytesRejection>;
type Name = Result<Path<String>, PathRejection>;

/// The queue routes.
pub fn routes<A: ClientApi>() -> Router<A> {
    Router::new()
        .route("/v1/queues", get(list::<A>))
        .route(
            "/v1/queues/{name}",
            get(info::<A>).put(create::<A>).delete(delete::<A>),
        )
        .route("/v1/queues/{name}/messages", post(send::<A>))
        .route("/v1/queues/{name}/receive", post(receive::<A>))
        .route("/v1/queues/{name}/ack", post(ack::<A>))
        .route("/v1/queues/{name}/nack", post(nack::<A>))
        .route("/v1/queues/{name}/extend", post(extend::<A>))
        .route("/v1/queues/{name}/stats", get(stats::<A>))
}

fn name_of(p: Name) -> Result<String, MeridianError> {
    p.map(|Path(n)| n).map_err(path_error)
}

fn body_of<T: serde::de::DeserializeOwned, A: ClientApi>(
    api: &A,
    body: Body,
) -> Result<T, MeridianError> {
    let b = body.map_err(|r| body_error(r, api.limits().request_bytes_max))?;
    parse_body(&b)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct QueuesJson {
    pub queues: Vec<QueueSpec>,
}

/// The body of `PUT /v1/queues/{name}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub visibility_timeout_ms: Option<u64>,
    pub max_deliveries: Option<u32>,
    pub dead_letter: Option<String>,
    pub delay_ms: Option<u64>,
    pub dedup_window_ms: Option<u64>,
    /// Put the queue in the range holding this key (UTF-8).
    pub colocate: Option<String>,
}

impl CreateBody {
    fn config(&self) -> QueueConfig {
        let d = QueueConfig::default();
        QueueConfig {
            visibility_timeout_ms: self
                .visibility_timeout_ms
                .unwrap_or(d.visibility_timeout_ms),
            max_deliveries: self.max_deliveries.unwrap_or(d.max_deliveries),
            dead_letter: self.dead_letter.clone(),
            delay_ms: self.delay_ms.unwrap_or(d.delay_ms),
            dedup_window_ms: self.dedup_window_ms.unwrap_or(d.dedup_window_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeletedJson {
    pub deleted: bool,
}

/// One message to send.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    pub body: String,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub group: Option<String>,
    pub dedup_id: Option<String>,
    pub delay_ms: Option<u64>,
}

impl MessageBody {
    fn into_message(self) -> Result<SendMessage, MeridianError> {
        Ok(SendMessage {
            body: self.encoding.decode("body", &self.body)?,
            attributes: self.attributes,
            group: self.group,
            dedup_id: self.dedup_id,
            delay_ms: self.delay_ms,
        })
    }
}

/// `{"messages":[...]}` or one message.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SendBody {
    Batch { messages: Vec<MessageBody> },
    One(MessageBody),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SentJson {
    pub id: u64,
    pub duplicate: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SentListJson {
    pub messages: Vec<SentJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveQuery {
    pub max: Option<u32>,
    pub wait_ms: Option<u64>,
    pub visibility_timeout_ms: Option<u64>,
}

/// One delivered message.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeliveryJson {
    pub id: u64,
    pub receipt: String,
    pub body: String,
    /// `"base64"` when the body is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    pub attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub enqueued_ms: u64,
    pub deliveries: u32,
    pub deadline_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl From<Delivery> for DeliveryJson {
    fn from(d: Delivery) -> Self {
        let (body, encoding) = match String::from_utf8(d.body) {
            Ok(s) => (s, None),
            Err(e) => (BASE64.encode(e.as_bytes()), Some(Encoding::Base64)),
        };
        Self {
            id: d.id.0,
            receipt: d.receipt.to_string(),
            body,
            encoding,
            attributes: d.attributes,
            group: d.group,
            enqueued_ms: d.enqueued_ms,
            deliveries: d.deliveries,
            deadline_ms: d.deadline_ms,
            last_error: d.last_error,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeliveriesJson {
    pub messages: Vec<DeliveryJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    pub receipts: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct AckResultJson {
    pub receipt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct AckJson {
    pub results: Vec<AckResultJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NackBody {
    pub receipt: String,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub error: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    pub receipt: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExtendedJson {
    pub deadline_ms: u64,
}

async fn list<A: ClientApi>(State(api): State<A>) -> HttpResult<QueuesJson> {
    Ok(Json(QueuesJson {
        queues: api.queue_list().await?,
    }))
}

async fn create<A: ClientApi>(
    State(api): State<A>,
    name: Name,
    body: Body,
) -> HttpResult<QueueSpec> {
    let name = name_of(name)?;
    let b = body.map_err(|r| body_error(r, api.limits().request_bytes_max))?;
    // An empty body takes every default.
    let req: CreateBody = if b.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        parse_body(&b)?
    };
    let colocate = req.colocate.as_ref().map(|k| k.as_bytes().to_vec());
    let fut = api.queue_create(name, req.config(), colocate);
    Ok(Json(observed(&api, "queue_create", fut).await?))
}

async fn info<A: ClientApi>(State(api): State<A>, name: Name) -> HttpResult<QueueInfo> {
    Ok(Json(api.queue_info(name_of(name)?).await?))
}

async fn stats<A: ClientApi>(State(api): State<A>, name: Name) -> HttpResult<QueueStats> {
    Ok(Json(api.queue_info(name_of(name)?).await?.stats))
}

async fn delete<A: ClientApi>(State(api): State<A>, name: Name) -> HttpResult<DeletedJson> {
    let deleted = api.queue_delete(name_of(name)?).await?;
    Ok(Json(DeletedJson { deleted }))
}

async fn send<A: ClientApi>(
    State(api): State<A>,
    name: Name,
    body: Body,
) -> HttpResult<SentListJson> {
    let name = name_of(name)?;
    let msgs = match body_of::<SendBody, A>(&api, body)? {
        SendBody::Batch { messages } => messages,
        SendBody::One(m) => vec![m],
    };
    let msgs = msgs
        .into_iter()
        .map(MessageBody::into_message)
        .collect::<Result<Vec<_>, _>>()?;
    let sent = observed(&api, "queue_send", api.queue_send(name, msgs)).await?;
    Ok(Json(SentListJson {
        messages: sent
            .into_iter()
            .map(|s| SentJson {
                id: s.id.0,
                duplicate: s.duplicate,
            })
            .collect(),
    }))
}

async fn receive<A: ClientApi>(
    State(api): State<A>,
    name: Name,
    q: Result<Query<ReceiveQuery>, QueryRejection>,
) -> HttpResult<DeliveriesJson> {
    let name = name_of(name)?;
    let Query(q) = q.map_err(query_error)?;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0));
    let fut = api.queue_receive(name, q.max.unwrap_or(1), wait, q.visibility_timeout_ms);
    let got = observed(&api, "queue_receive", fut).await?;
    Ok(Json(DeliveriesJson {
        messages: got.into_iter().map(DeliveryJson::from).collect(),
    }))
}

fn receipt(s: &str) -> Result<Receipt, MeridianError> {
    s.parse()
}

async fn ack<A: ClientApi>(State(api): State<A>, name: Name, body: Body) -> HttpResult<AckJson> {
    let name = name_of(name)?;
    let req: AckBody = body_of(&api, body)?;
    let receipts = req
        .receipts
        .iter()
        .map(|r| receipt(r))
        .collect::<Result<Vec<_>, _>>()?;
    let results = observed(&api, "queue_ack", api.queue_ack(name, receipts)).await?;
    Ok(Json(AckJson {
        results: req
            .receipts
            .into_iter()
            .zip(results)
            .map(|(receipt, r)| match r {
                Ok(acked) => AckResultJson {
                    receipt,
                    acked: Some(acked),
                    error: None,
                },
                Err(e) => AckResultJson {
                    receipt,
                    acked: None,
                    error: Some(serde_json::json!({"code": e.code.as_str(), "message": e.message})),
                },
            })
            .collect(),
    }))
}

async fn nack<A: ClientApi>(
    State(api): State<A>,
    name: Name,
    body: Body,
) -> HttpResult<serde_json::Value> {
    let name = name_of(name)?;
    let req: NackBody = body_of(&api, body)?;
    let fut = api.queue_nack(name, receipt(&req.receipt)?, req.delay_ms, req.error);
    observed(&api, "queue_nack", fut).await?;
    Ok(Json(serde_json::json!({ "nacked": true })))
}

async fn extend<A: ClientApi>(
    State(api): State<A>,
    name: Name,
    body: Body,
) -> HttpResult<ExtendedJson> {
    let name = name_of(name)?;
    let req: ExtendBody = body_of(&api, body)?;
    let fut = api.queue_extend(name, receipt(&req.receipt)?, req.timeout_ms);
    let deadline_ms = observed(&api, "queue_extend", fut).await?;
    Ok(Json(ExtendedJson { deadline_ms }))
}
