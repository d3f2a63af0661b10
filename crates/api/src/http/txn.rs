//! `POST /v1/txn`: an etcd-style transaction in JSON.
//!
//! ```json
//! {"compare": [{"key": "a", "target": "value", "op": "=", "value": "x"}],
//!  "success": [{"put": {"key": "a", "value": "b"}}, {"get": {"key": "a"}}],
//!  "failure": [{"delete": {"key": "a"}}]}
//! ```
//!
//! Every object with keys or values may say `"encoding":"base64"`.

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
use meridian_node::{ClientApi, WriteOptions};
use meridian_state::{
    Compare, CompareOp, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    ResponseOp, TxnRequest, TxnResponse,
};
use meridian_types::MeridianError;
use serde::{Deserialize, Serialize};

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

impl OpJson {
    fn into_request(self) -> Result<RequestOp, MeridianError> {
        Ok(match self {
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
        })
    }
}

impl TxnJson {
    /// The transaction this JSON describes.
    pub fn into_request(self) -> Result<TxnRequest, MeridianError> {
        let ops = |ops: Vec<OpJson>| {
            ops.into_iter()
                .map(OpJson::into_request)
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(TxnRequest {
            compare: self
                .compare
                .into_iter()
                .map(CompareJson::into_compare)
                .collect::<Result<_, _>>()?,
            success: ops(self.success)?,
            failure: ops(self.failure)?,
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
        let req = parse_body::<TxnJson>(&body)?.into_request()?;
        let opts = WriteOptions {
            request_id: request_id(&headers, q.request_id.as_deref())?,
        };
        let (success_keys_only, failure_keys_only) =
            (keys_only_of(&req.success), keys_only_of(&req.failure));
        let resp = api.txn(req, opts).await?;
        let keys_only = if resp.succeeded {
            success_keys_only
        } else {
            failure_keys_only
        };
        Ok(TxnResultJson::new(&resp, &keys_only))
    })
    .await?;
    Ok(Json(res))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<TxnRequest, MeridianError> {
        parse_body::<TxnJson>(json.as_bytes())?.into_request()
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
