//! `POST /v1/txn`: an etcd-style transaction in JSON.
//!
//! ```json
//! {"compare": [{"key": "a", "target": "value", "op": "=", "value": "x"}],
//!  "success": [{"put": {"key": "a", "value": "b"}}, {"get": {"key": "a"}}],
//!  "failure": [{"delete": {"key": "a"}}]}
//! ```
//!
//! Every object with keys or values may say `"encoding":"base64"`.
//!
//! A branch may also write messages, in the same range as the keys (a stream or queue created
//! with `colocate` set to one of them), all or nothing with the keys (the outbox pattern):
//!
//! ```json
//! {"success": [{"put": {"key": "order/7", "value": "paid"}},
//!              {"publish": {"stream": "orders", "key": "order/7", "value": "paid"}},
//!              {"send": {"queue": "ship", "body": "order 7"}}]}
//! ```

use super::error::{HttpError, body_error};
use super::json::{Encoding, KvJson, parse_body};
use super::request_id::request_id;
use crate::keys::prefix_range;
use crate::observe::observed;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use meridian_node::outbox::{OutboxMessage, OutboxRequest};
use meridian_node::{ClientApi, WriteOptions};
use meridian_state::outbox::MessageOpResult;
use meridian_state::queue::SendMessage;
use meridian_state::stream::NewMessage;
use meridian_state::{
    Compare, CompareOp, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    ResponseOp, TxnRequest, TxnResponse,
};
use meridian_types::MeridianError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnJson {
    #[serde(default)]
    pub compare: Vec<CompareJson>,
    #[serde(default)]
    pub success: Vec<OpJson>,
    #[serde(default)]
    pub failure: Vec<OpJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareJson {
    pub key: String,
    /// Compare every key that starts with `key`.
    #[serde(default)]
    pub prefix: bool,
    pub target: TargetJson,
    pub op: OpSymbol,
    /// A string for `value`, a number for the other targets.
    pub value: serde_json::Value,
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetJson {
    Value,
    Version,
    CreateRevision,
    ModRevision,
    Lease,
}

#[derive(Clone, Copy, Debug, Deserialize)]
pub enum OpSymbol {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = "<")]
    Less,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OpJson {
    Get(GetOpJson),
    Put(PutOpJson),
    Delete(DeleteOpJson),
    /// A message to a stream partition of the transaction's range.
    Publish(PublishOpJson),
    /// A message to a queue of the transaction's range.
    Send(SendOpJson),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishOpJson {
    pub stream: String,
    /// The partition; else the key's partition; else partition 0.
    #[serde(default)]
    pub partition: Option<u32>,
    #[serde(default)]
    pub key: Option<String>,
    pub value: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub dedup_id: Option<String>,
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendOpJson {
    pub queue: String,
    pub body: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub dedup_id: Option<String>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetOpJson {
    pub key: String,
    #[serde(default)]
    pub prefix: bool,
    #[serde(default)]
    pub limit: u64,
    #[serde(default)]
    pub keys_only: bool,
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutOpJson {
    pub key: String,
    pub value: String,
    #[serde(default)]
    pub prev_kv: bool,
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteOpJson {
    pub key: String,
    #[serde(default)]
    pub prefix: bool,
    #[serde(default)]
    pub prev_kv: bool,
    #[serde(default)]
    pub encoding: Encoding,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct TxnResultJson {
    pub succeeded: bool,
    pub responses: Vec<ResponseOpJson>,
    pub revision: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseOpJson {
    Get {
        kvs: Vec<KvJson>,
        more: bool,
        count: u64,
    },
    Put {
        revision: u64,
        prev_kv: Option<KvJson>,
    },
    Delete {
        deleted: u64,
        prev_kvs: Vec<KvJson>,
    },
    Publish {
        stream: String,
        partition: u32,
        offset: u64,
        duplicate: bool,
    },
    Send {
        queue: String,
        id: u64,
        duplicate: bool,
    },
}

fn key(encoding: Encoding, s: &str) -> Result<Vec<u8>, MeridianError> {
    let key = encoding.decode("key", s)?;
    if key.is_empty() {
        return Err(MeridianError::invalid("key is empty"));
    }
    Ok(key)
}

/// `(key, range_end)`: the key alone, or every key starting with it.
fn key_range(
    encoding: Encoding,
    s: &str,
    prefix: bool,
) -> Result<(Vec<u8>, Vec<u8>), MeridianError> {
    if prefix {
        Ok(prefix_range(&encoding.decode("key", s)?))
    } else {
        Ok((key(encoding, s)?, Vec::new()))
    }
}

fn number(v: &serde_json::Value) -> Result<u64, MeridianError> {
    v.as_u64().ok_or_else(|| {
        MeridianError::invalid(format!(
            "compare value must be a non-negative integer, got {v}"
        ))
    })
}

impl CompareJson {
    fn into_compare(self) -> Result<Compare, MeridianError> {
        let (key, range_end) = key_range(self.encoding, &self.key, self.prefix)?;
        let target = match self.target {
            TargetJson::Value => match &self.value {
                serde_json::Value::String(s) => {
                    CompareTarget::Value(self.encoding.decode("value", s)?)
                }
                other => {
                    return Err(MeridianError::invalid(format!(
                        "compare of a value needs a string, got {other}"
                    )));
                }
            },
            TargetJson::Version => CompareTarget::Version(number(&self.value)?),
            TargetJson::CreateRevision => CompareTarget::CreateRevision(number(&self.value)?),
            TargetJson::ModRevision => CompareTarget::ModRevision(number(&self.value)?),
            TargetJson::Lease => CompareTarget::Lease(self.value.as_i64().ok_or_else(|| {
                MeridianError::invalid(format!("lease must be an integer, got {}", self.value))
            })?),
        };
        let op = match self.op {
            OpSymbol::Equal => CompareOp::Equal,
            OpSymbol::NotEqual => CompareOp::NotEqual,
            OpSymbol::Greater => CompareOp::Greater,
            OpSymbol::Less => CompareOp::Less,
        };
        Ok(Compare {
            key,
            range_end,
            op,
            target,
        })
    }
}

/// One op of a branch: a key-value op or a message.
enum BranchOp {
    Kv(RequestOp),
    Message(OutboxMessage),
}

impl OpJson {
    fn into_op(self) -> Result<BranchOp, MeridianError> {
        Ok(BranchOp::Kv(match self {
            OpJson::Publish(p) => {
                let enc = p.encoding;
                return Ok(BranchOp::Message(OutboxMessage::Publish {
                    stream: p.stream,
                    partition: p.partition,
                    message: NewMessage {
                        key: p.key.map(|k| enc.decode("key", &k)).transpose()?,
                        payload: enc.decode("value", &p.value)?,
                        headers: p.headers.into_iter().collect(),
                        dedup_id: p.dedup_id,
                    },
                }));
            }
            OpJson::Send(m) => {
                return Ok(BranchOp::Message(OutboxMessage::Send {
                    queue: m.queue,
                    message: SendMessage {
                        body: m.encoding.decode("body", &m.body)?,
                        attributes: m.attributes,
                        group: m.group,
                        dedup_id: m.dedup_id,
                        delay_ms: m.delay_ms,
                    },
                }));
            }
            OpJson::Get(g) => {
                let (key, range_end) = key_range(g.encoding, &g.key, g.prefix)?;
                RequestOp::Range(RangeRequest {
                    key,
                    range_end,
                    limit: g.limit,
                    keys_only: g.keys_only,
                    ..Default::default()
                })
            }
            OpJson::Put(p) => RequestOp::Put(PutRequest {
                key: key(p.encoding, &p.key)?,
                value: p.encoding.decode("value", &p.value)?,
                prev_kv: p.prev_kv,
                lease: 0,
                ignore_lease: false,
                ignore_value: false,
            }),
            OpJson::Delete(d) => {
                let (key, range_end) = key_range(d.encoding, &d.key, d.prefix)?;
                RequestOp::DeleteRange(DeleteRangeRequest {
                    key,
                    range_end,
                    prev_kv: d.prev_kv,
                })
            }
        }))
    }
}

/// A branch split into its key-value ops and its messages, remembering their order.
#[derive(Debug, Default)]
struct Branch {
    kv: Vec<RequestOp>,
    messages: Vec<OutboxMessage>,
    /// For each op in the request's order: whether it is a message.
    is_message: Vec<bool>,
}

impl Branch {
    fn new(ops: Vec<OpJson>) -> Result<Self, MeridianError> {
        let mut b = Branch::default();
        for op in ops {
            match op.into_op()? {
                BranchOp::Kv(r) => {
                    b.kv.push(r);
                    b.is_message.push(false);
                }
                BranchOp::Message(m) => {
                    b.messages.push(m);
                    b.is_message.push(true);
                }
            }
        }
        Ok(b)
    }
}

/// A parsed transaction: the key-value part and the messages of each branch.
#[derive(Debug)]
pub struct ParsedTxn {
    pub txn: TxnRequest,
    success: Branch,
    failure: Branch,
}

impl ParsedTxn {
    fn has_messages(&self) -> bool {
        !self.success.messages.is_empty() || !self.failure.messages.is_empty()
    }
}

impl TxnJson {
    /// The transaction this JSON describes.
    pub fn into_request(self) -> Result<ParsedTxn, MeridianError> {
        let compare = self
            .compare
            .into_iter()
            .map(CompareJson::into_compare)
            .collect::<Result<_, _>>()?;
        let mut success = Branch::new(self.success)?;
        let mut failure = Branch::new(self.failure)?;
        Ok(ParsedTxn {
            txn: TxnRequest {
                compare,
                success: std::mem::take(&mut success.kv),
                failure: std::mem::take(&mut failure.kv),
            },
            success,
            failure,
        })
    }
}

/// Which request ops asked for keys only, to shape their answers.
fn keys_only_of(ops: &[RequestOp]) -> Vec<bool> {
    ops.iter()
        .map(|op| matches!(op, RequestOp::Range(r) if r.keys_only))
        .collect()
}

impl TxnResultJson {
    fn new(resp: &TxnResponse, keys_only: &[bool]) -> Self {
        let responses = resp
            .responses
            .iter()
            .enumerate()
            .map(|(i, op)| match op {
                ResponseOp::Range(r) => {
                    let keys_only = keys_only.get(i).copied().unwrap_or(false);
                    ResponseOpJson::Get {
                        kvs: KvJson::list(&r.kvs, keys_only),
                        more: r.more,
                        count: r.count,
                    }
                }
                ResponseOp::Put(p) => ResponseOpJson::Put {
                    revision: p.revision,
                    prev_kv: p.prev_kv.as_ref().map(|kv| KvJson::new(kv, false)),
                },
                ResponseOp::DeleteRange(d) => ResponseOpJson::Delete {
                    deleted: d.deleted,
                    prev_kvs: KvJson::list(&d.prev_kvs, false),
                },
            })
            .collect();
        Self {
            succeeded: resp.succeeded,
            responses,
            revision: resp.revision,
        }
    }

    /// Puts the messages' answers among the key-value ones, in the order the branch asked.
    fn with_messages(mut self, messages: &[MessageOpResult], is_message: &[bool]) -> Self {
        let mut kv = std::mem::take(&mut self.responses).into_iter();
        let mut msgs = messages.iter().map(|m| match m {
            MessageOpResult::Published {
                stream,
                partition,
                acks,
            } => ResponseOpJson::Publish {
                stream: stream.clone(),
                partition: *partition,
                offset: acks.first().map_or(0, |a| a.offset),
                duplicate: acks.first().is_some_and(|a| a.duplicate),
            },
            MessageOpResult::Sent { queue, outcomes } => ResponseOpJson::Send {
                queue: queue.clone(),
                id: outcomes.first().map_or(0, |o| o.id.0),
                duplicate: outcomes.first().is_some_and(|o| o.duplicate),
            },
        });
        for &m in is_message {
            let next = if m { msgs.next() } else { kv.next() };
            self.responses.extend(next);
        }
        self
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnQuery {
    request_id: Option<String>,
}

/// `POST /v1/txn`.
pub async fn txn<A: ClientApi>(
    State(api): State<A>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TxnResultJson>, HttpError> {
    let res = observed(&api, "txn", async {
        let q = Query::<TxnQuery>::try_from_uri(&uri)
            .map_err(super::error::query_error)?
            .0;
        let body = body.map_err(|r| body_error(r, api.limits().request_bytes_max))?;
        let parsed = parse_body::<TxnJson>(&body)?.into_request()?;
        let opts = WriteOptions {
            request_id: request_id(&headers, q.request_id.as_deref())?,
        };
        let (success_keys_only, failure_keys_only) = (
            keys_only_of(&parsed.txn.success),
            keys_only_of(&parsed.txn.failure),
        );
        let keys_only = |succeeded: bool| {
            if succeeded {
                success_keys_only
            } else {
                failure_keys_only
            }
        };
        if !parsed.has_messages() {
            let resp = api.txn(parsed.txn, opts).await?;
            return Ok(TxnResultJson::new(&resp, &keys_only(resp.succeeded)));
        }
        let ParsedTxn {
            txn,
            success,
            failure,
        } = parsed;
        let req = OutboxRequest {
            txn,
            success: success.messages,
            failure: failure.messages,
        };
        let resp = api.txn_with_messages(req, opts).await?;
        let order = if resp.txn.succeeded {
            success.is_message
        } else {
            failure.is_message
        };
        Ok(
            TxnResultJson::new(&resp.txn, &keys_only(resp.txn.succeeded))
                .with_messages(&resp.messages, &order),
        )
    })
    .await?;
    Ok(Json(res))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<TxnRequest, MeridianError> {
        Ok(parse_body::<TxnJson>(json.as_bytes())?.into_request()?.txn)
    }

    #[test]
    fn messages_split_from_keys_in_order() {
        let p = parse_body::<TxnJson>(
            br#"{"success":[{"publish":{"stream":"s","key":"k","value":"v"}},
                            {"put":{"key":"a","value":"b"}},
                            {"send":{"queue":"q","body":"/w==","encoding":"base64"}}]}"#,
        )
        .unwrap()
        .into_request()
        .unwrap();
        assert_eq!(p.txn.success.len(), 1);
        assert!(p.has_messages());
        assert_eq!(p.success.is_message, vec![true, false, true]);
        assert!(matches!(&p.success.messages[0],
            OutboxMessage::Publish { stream, partition: None, message }
                if stream == "s" && message.key.as_deref() == Some(&b"k"[..])));
        assert!(matches!(&p.success.messages[1],
            OutboxMessage::Send { queue, message } if queue == "q" && message.body == [0xff]));
        for bad in [
            r#"{"success":[{"publish":{"stream":"s"}}]}"#,
            r#"{"success":[{"send":{"body":"x"}}]}"#,
            r#"{"success":[{"send":{"queue":"q","body":"x","colour":1}}]}"#,
        ] {
            let err = parse_body::<TxnJson>(bad.as_bytes())
                .and_then(TxnJson::into_request)
                .expect_err(bad);
            assert_eq!(
                err.code,
                meridian_types::ErrorCode::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn maps_compares_and_ops() {
        let req = parse(
            r#"{"compare":[{"key":"a","target":"value","op":"=","value":"x"},
                           {"key":"p/","prefix":true,"target":"version","op":">","value":0}],
                "success":[{"put":{"key":"a","value":"b"}},{"get":{"key":"a"}}],
                "failure":[{"delete":{"key":"d","prefix":true}}]}"#,
        )
        .unwrap();
        assert_eq!(req.compare[0].target, CompareTarget::Value(b"x".to_vec()));
        assert_eq!(req.compare[0].op, CompareOp::Equal);
        assert_eq!(req.compare[1].range_end, b"p0".to_vec());
        assert_eq!(req.compare[1].target, CompareTarget::Version(0));
        assert_eq!(req.compare[1].op, CompareOp::Greater);
        assert!(matches!(&req.success[0], RequestOp::Put(p) if p.value == b"b"));
        assert!(matches!(&req.success[1], RequestOp::Range(r) if r.range_end.is_empty()));
        assert!(matches!(&req.failure[0], RequestOp::DeleteRange(d) if d.range_end == b"e"));
    }

    #[test]
    fn base64_objects_decode() {
        let req =
            parse(r#"{"success":[{"put":{"key":"aw==","value":"/w==","encoding":"base64"}}]}"#)
                .unwrap();
        assert!(matches!(&req.success[0], RequestOp::Put(p) if p.key == b"k" && p.value == [0xff]));
    }

    #[test]
    fn rejects_bad_shapes() {
        for bad in [
            r#"{"compare":[{"key":"a","target":"value","op":"=","value":3}]}"#,
            r#"{"compare":[{"key":"a","target":"version","op":"=","value":"3"}]}"#,
            r#"{"compare":[{"key":"a","target":"version","op":"=","value":-1}]}"#,
            r#"{"compare":[{"key":"a","target":"colour","op":"=","value":1}]}"#,
            r#"{"compare":[{"key":"a","target":"version","op":"~","value":1}]}"#,
            r#"{"success":[{"put":{"key":"","value":"b"}}]}"#,
            r#"{"success":[{"frobnicate":{"key":"a"}}]}"#,
            r#"{"success":[{"put":{"key":"a"}}]}"#,
            r#"{"sucess":[]}"#,
            r#"{"success":"#,
        ] {
            let err = parse(bad).expect_err(bad);
            assert_eq!(
                err.code,
                meridian_types::ErrorCode::InvalidArgument,
                "{bad}"
            );
        }
    }
}
