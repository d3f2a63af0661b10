//! `/v1/kv/...`: get, put and delete one key (or a prefix), scan a prefix page by page, compact.

use super::error::{HttpError, body_error, path_error, query_error};
use super::json::{Encoding, KvJson, parse_body};
use super::request_id::request_id;
use crate::keys::{key_after, prefix_range};
use crate::observe::observed;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use meridian_node::{ClientApi, Consistency, RangeRead, ReadOptions, WriteOptions};
use meridian_state::{DeleteRangeRequest, PutRequest, RangeRequest};
use meridian_types::{ErrorCode, MeridianError};
use serde::{Deserialize, Serialize};

/// Scan page size when the client gives no `limit`.
pub const SCAN_LIMIT_DEFAULT: u64 = 100;

type HttpResult<T> = Result<Json<T>, HttpError>;

fn query<T: serde::de::DeserializeOwned>(uri: &Uri) -> Result<T, MeridianError> {
    Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(query_error)
}

/// The key named by the path, decoded per `encoding`. An empty key is invalid.
fn path_key(
    path: Result<Path<String>, PathRejection>,
    encoding: Encoding,
) -> Result<Vec<u8>, MeridianError> {
    let Path(raw) = path.map_err(path_error)?;
    let key = encoding.decode("key", &raw)?;
    if key.is_empty() {
        return Err(MeridianError::invalid("key is empty"));
    }
    Ok(key)
}

fn consistency(s: Option<&str>) -> Result<Consistency, MeridianError> {
    s.map_or(Ok(Consistency::default()), Consistency::parse)
}

/// The response header carrying a read's staleness bound (as the JSON field `staleness_ms`).
pub const STALENESS_HEADER: &str = "meridian-staleness-ms";

/// The `meridian-staleness-ms` header of a read (none when the bound is unknown).
fn staleness_headers(read: &RangeRead) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(ms) = read.staleness_ms {
        h.insert(STALENESS_HEADER, axum::http::HeaderValue::from(ms));
    }
    h
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetQuery {
    consistency: Option<String>,
    #[serde(default)]
    min_revision: u64,
    #[serde(default)]
    revision: u64,
    #[serde(default)]
    encoding: Encoding,
}

/// `GET /v1/kv/{key}`: one key and the store's revision.
#[derive(Debug, Serialize)]
pub struct GetJson {
    #[serde(flatten)]
    pub kv: KvJson,
    pub revision: u64,
    /// The most the answer may miss, in milliseconds: no write acknowledged longer ago than
    /// this is missing. 0 when the leader served it; `null` for a `local` read of a replica that
    /// could not prove a bound.
    pub staleness_ms: Option<u64>,
}

/// `GET /v1/kv/{key}?consistency=C&min_revision=R&revision=V`.
pub async fn get_key<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<(HeaderMap, Json<GetJson>), HttpError> {
    let res = observed(&api, "get", async {
        let q: GetQuery = query(&uri)?;
        let key = path_key(path, q.encoding)?;
        let req = RangeRequest {
            key: key.clone(),
            revision: q.revision,
            ..Default::default()
        };
        let opts = ReadOptions {
            consistency: consistency(q.consistency.as_deref())?,
            min_revision: q.min_revision,
        };
        let read = api.range_read(req, opts).await?;
        let resp = &read.resp;
        match resp.kvs.first() {
            Some(kv) => Ok((
                staleness_headers(&read),
                GetJson {
                    kv: KvJson::new(kv, false),
                    revision: resp.revision,
                    staleness_ms: read.staleness_ms,
                },
            )),
            None => Err(MeridianError::new(
                ErrorCode::KeyNotFound,
                format!("key {:?} not found", String::from_utf8_lossy(&key)),
            )),
        }
    })
    .await?;
    Ok((res.0, Json(res.1)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutQuery {
    #[serde(default)]
    prev_kv: bool,
    /// Attach the key to this lease (it goes when the lease does).
    #[serde(default)]
    lease: i64,
    request_id: Option<String>,
    #[serde(default)]
    encoding: Encoding,
}

/// `PUT /v1/kv/{key}`: the revision of the write and, if asked, the previous pair.
#[derive(Debug, Serialize)]
pub struct PutJson {
    pub revision: u64,
    pub prev_kv: Option<KvJson>,
}

/// `PUT /v1/kv/{key}` with the raw value as the body.
pub async fn put_key<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResult<PutJson> {
    let res = observed(&api, "put", async {
        let q: PutQuery = query(&uri)?;
        let key = path_key(path, q.encoding)?;
        let value = body.map_err(|r| body_error(r, api.limits().request_bytes_max))?;
        let opts = WriteOptions {
            request_id: request_id(&headers, q.request_id.as_deref())?,
        };
        let req = PutRequest {
            key,
            value: value.to_vec(),
            prev_kv: q.prev_kv,
            lease: q.lease,
            ignore_lease: false,
            ignore_value: false,
        };
        let resp = api.put(req, opts).await?;
        Ok(PutJson {
            revision: resp.revision,
            prev_kv: resp.prev_kv.as_ref().map(|kv| KvJson::new(kv, false)),
        })
    })
    .await?;
    Ok(Json(res))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    prefix: bool,
    #[serde(default)]
    prev_kv: bool,
    request_id: Option<String>,
    #[serde(default)]
    encoding: Encoding,
}

/// `DELETE /v1/kv/{key}`: how many keys went, at which revision.
#[derive(Debug, Serialize)]
pub struct DeleteJson {
    pub deleted: u64,
    pub revision: u64,
    /// Only with `?prev_kv=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_kvs: Option<Vec<KvJson>>,
}

/// `DELETE /v1/kv/{key}`, or with `?prefix=true` every key starting with it.
pub async fn delete_key<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> HttpResult<DeleteJson> {
    let res = observed(&api, "delete", async {
        let q: DeleteQuery = query(&uri)?;
        let key = path_key(path, q.encoding)?;
        let (key, range_end) = if q.prefix {
            prefix_range(&key)
        } else {
            (key, Vec::new())
        };
        let opts = WriteOptions {
            request_id: request_id(&headers, q.request_id.as_deref())?,
        };
        let req = DeleteRangeRequest {
            key,
            range_end,
            prev_kv: q.prev_kv,
        };
        let resp = api.delete_range(req, opts).await?;
        Ok(DeleteJson {
            deleted: resp.deleted,
            revision: resp.revision,
            prev_kvs: q.prev_kv.then(|| KvJson::list(&resp.prev_kvs, false)),
        })
    })
    .await?;
    Ok(Json(res))
}

/// `/v1/kv/` with no key.
pub async fn empty_key() -> HttpError {
    HttpError(MeridianError::invalid(
        "key is empty; use /v1/kv/{key} or /v1/kv?prefix=",
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanQuery {
    #[serde(default)]
    prefix: String,
    limit: Option<u64>,
    after: Option<String>,
    #[serde(default)]
    revision: u64,
    consistency: Option<String>,
    #[serde(default)]
    min_revision: u64,
    #[serde(default)]
    keys_only: bool,
    #[serde(default)]
    encoding: Encoding,
}

/// `GET /v1/kv?prefix=`: one page of a scan.
#[derive(Debug, Serialize)]
pub struct ScanJson {
    pub kvs: Vec<KvJson>,
    /// Whether keys remain after this page; ask again with `after` = the last key.
    pub more: bool,
    /// Keys in the scanned interval (from `after` on), ignoring `limit`.
    pub count: u64,
    pub revision: u64,
    /// As in [`GetJson::staleness_ms`]; a page spanning ranges reports its stalest part.
    pub staleness_ms: Option<u64>,
}

/// `GET /v1/kv?prefix=P&limit=L&after=K&revision=R&consistency=C&min_revision=T&keys_only=true`.
pub async fn scan<A: ClientApi>(
    State(api): State<A>,
    uri: Uri,
) -> Result<(HeaderMap, Json<ScanJson>), HttpError> {
    let res = observed(&api, "scan", async {
        let q: ScanQuery = query(&uri)?;
        let page_max = api.limits().scan_page_max as u64;
        let limit = q.limit.unwrap_or(SCAN_LIMIT_DEFAULT.min(page_max));
        if limit == 0 {
            return Err(MeridianError::invalid("limit must be at least 1"));
        }
        if limit > page_max {
            return Err(MeridianError::new(
                ErrorCode::LimitTooLarge,
                format!("limit {limit} is over the scan page limit {page_max}"),
            ));
        }
        let prefix = q.encoding.decode("prefix", &q.prefix)?;
        let (mut start, end) = prefix_range(&prefix);
        if let Some(after) = &q.after {
            start = start.max(key_after(&q.encoding.decode("after", after)?));
        }
        let opts = ReadOptions {
            consistency: consistency(q.consistency.as_deref())?,
            min_revision: q.min_revision,
        };
        let past_end = end != [0] && start >= end;
        let req = RangeRequest {
            key: start,
            range_end: end,
            limit,
            revision: q.revision,
            keys_only: q.keys_only,
            count_only: false,
        };
        if past_end {
            // Paged past the prefix: nothing left. Ask for the prefix's count only to learn
            // the revision (and any revision error) the same way as a real page would.
            let (key, range_end) = prefix_range(&prefix);
            let probe = RangeRequest {
                key,
                range_end,
                count_only: true,
                ..req
            };
            let read = api.range_read(probe, opts).await?;
            return Ok((
                staleness_headers(&read),
                ScanJson {
                    kvs: Vec::new(),
                    more: false,
                    count: 0,
                    revision: read.resp.revision,
                    staleness_ms: read.staleness_ms,
                },
            ));
        }
        let read = api.range_read(req, opts).await?;
        let resp = &read.resp;
        Ok((
            staleness_headers(&read),
            ScanJson {
                kvs: KvJson::list(&resp.kvs, q.keys_only),
                more: resp.more,
                count: resp.count,
                revision: resp.revision,
                staleness_ms: read.staleness_ms,
            },
        ))
    })
    .await?;
    Ok((res.0, Json(res.1)))
}

/// `POST /v1/compact` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompactJson {
    revision: u64,
}

/// `POST /v1/compact` answer: the revision compacted at.
#[derive(Debug, Serialize)]
pub struct CompactedJson {
    pub revision: u64,
}

/// `POST /v1/compact` with `{"revision":N}`: forget versions superseded before `N`.
pub async fn compact<A: ClientApi>(
    State(api): State<A>,
    body: Result<Bytes, BytesRejection>,
) -> HttpResult<CompactedJson> {
    let res = observed(&api, "compact", async {
        let body = body.map_err(|r| body_error(r, api.limits().request_bytes_max))?;
        let CompactJson { revision } = parse_body(&body)?;
        if revision == 0 {
            return Err(MeridianError::invalid("revision must be at least 1"));
        }
        let revision = api.compact(revision).await?;
        Ok(CompactedJson { revision })
    })
    .await?;
    Ok(Json(res))
}
