//! etcd's `KV` service: range, put, delete range, txn, compact.

use super::convert::{self, HeaderInfo};
use super::status::to_status;
use crate::observe::{boxed, observed};
use meridian_node::{ClientApi, Consistency, ReadOptions, WriteOptions};
use meridian_proto::etcd::etcdserverpb as pb;
use meridian_proto::etcd::etcdserverpb::kv_server::Kv;
use meridian_types::MeridianError;
use tonic::{Request, Response, Status};

/// etcd's `KV` service over a node's [`ClientApi`].
#[derive(Clone, Debug)]
pub struct EtcdKv<A> {
    api: A,
}

impl<A: ClientApi> EtcdKv<A> {
    pub fn new(api: A) -> Self {
        Self { api }
    }

    fn header_info(&self) -> HeaderInfo {
        let (cluster_id, member_id) = self.api.identity();
        HeaderInfo {
            cluster_id,
            member_id,
        }
    }

    async fn range(
        &self,
        r: pb::RangeRequest,
        asked: Option<Consistency>,
        min_revision: u64,
    ) -> Result<(pb::RangeResponse, Option<u64>), MeridianError> {
        let (req, serializable, extras) = convert::range_from_pb(r)?;
        let consistency = if serializable {
            Consistency::Local
        } else {
            asked.unwrap_or(Consistency::Linearizable)
        };
        let (keys_only, count_only) = (req.keys_only, req.count_only);
        let opts = ReadOptions {
            consistency,
            min_revision,
        };
        let read = self.api.range_read(req, opts).await?;
        let staleness_ms = read.staleness_ms;
        let mut resp = read.resp;
        if !extras.is_plain() && !count_only {
            if resp.more {
                return Err(MeridianError::invalid(format!(
                    "unsupported: sorting or filtering a range of more than {} keys; narrow \
                     the range or sort by key ascending",
                    resp.kvs.len()
                )));
            }
            extras.apply(&mut resp);
        }
        let pb = convert::range_to_pb(resp, keys_only, count_only, self.header_info());
        Ok((pb, staleness_ms))
    }

    async fn put(
        &self,
        r: pb::PutRequest,
        opts: WriteOptions,
    ) -> Result<pb::PutResponse, MeridianError> {
        let resp = self.api.put(convert::put_from_pb(r)?, opts).await?;
        Ok(convert::put_to_pb(resp, self.header_info()))
    }

    async fn delete_range(
        &self,
        r: pb::DeleteRangeRequest,
        opts: WriteOptions,
    ) -> Result<pb::DeleteRangeResponse, MeridianError> {
        let req = convert::delete_from_pb(r)?;
        let resp = self.api.delete_range(req, opts).await?;
        Ok(convert::delete_to_pb(resp, self.header_info()))
    }

    async fn txn(
        &self,
        t: pb::TxnRequest,
        opts: WriteOptions,
    ) -> Result<pb::TxnResponse, MeridianError> {
        let (req, extras) = convert::txn_from_pb_with_extras(t)?;
        let (success, failure) = (req.success.clone(), req.failure.clone());
        let mut resp = self.api.txn(req, opts).await?;
        let (ran, extras) = if resp.succeeded {
            (success, extras.success)
        } else {
            (failure, extras.failure)
        };
        for (r, x) in resp.responses.iter_mut().zip(&extras) {
            if let meridian_state::ResponseOp::Range(r) = r
                && !x.is_plain()
            {
                x.apply(r);
            }
        }
        Ok(convert::txn_to_pb(resp, &ran, self.header_info()))
    }

    async fn compact(
        &self,
        c: pb::CompactionRequest,
    ) -> Result<pb::CompactionResponse, MeridianError> {
        let revision = convert::to_u64("revision", c.revision)?;
        if revision == 0 {
            return Err(MeridianError::invalid(
                "compact revision must be at least 1",
            ));
        }
        let compacted = self.api.compact(revision).await?;
        Ok(pb::CompactionResponse {
            header: Some(self.header_info().header(compacted, 0)),
        })
    }
}

/// gRPC metadata naming a client request id: a retried write with the same id is applied once
/// (the same meaning as HTTP's `Idempotency-Key`).
pub const IDEMPOTENCY_METADATA: &str = "idempotency-key";
/// gRPC metadata asking for a read consistency etcd's protocol cannot express (`lease`,
/// `bounded:<ms>`); etcd's `serializable` flag still means `local`.
pub const CONSISTENCY_METADATA: &str = "meridian-consistency";
/// gRPC metadata carrying a session token: the lowest revision of the key's range a replica
/// other than the leader may serve the read at.
pub const MIN_REVISION_METADATA: &str = "meridian-min-revision";
/// Response metadata of a range: the most the answer may miss, in milliseconds (absent when
/// unknown, a `local` read).
pub const STALENESS_METADATA: &str = "meridian-staleness-ms";

fn write_options<T>(req: &Request<T>) -> Result<WriteOptions, MeridianError> {
    match req.metadata().get(IDEMPOTENCY_METADATA).map(|v| v.to_str()) {
        None => Ok(WriteOptions::default()),
        Some(Ok(s)) => Ok(WriteOptions {
            request_id: Some(crate::http::request_id::parse_request_id(s)?),
        }),
        Some(Err(_)) => Err(MeridianError::invalid("idempotency-key is not ASCII")),
    }
}

fn asked_consistency<T>(req: &Request<T>) -> Result<Option<Consistency>, MeridianError> {
    match req.metadata().get(CONSISTENCY_METADATA).map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(s)) => Consistency::parse(s).map(Some),
        Some(Err(_)) => Err(MeridianError::invalid("meridian-consistency is not ASCII")),
    }
}

fn asked_min_revision<T>(req: &Request<T>) -> Result<u64, MeridianError> {
    match req
        .metadata()
        .get(MIN_REVISION_METADATA)
        .map(|v| v.to_str())
    {
        None => Ok(0),
        Some(Ok(s)) => s.parse().map_err(|_| {
            MeridianError::invalid(format!(
                "meridian-min-revision {s:?} is not a revision (an unsigned integer)"
            ))
        }),
        Some(Err(_)) => Err(MeridianError::invalid("meridian-min-revision is not ASCII")),
    }
}

fn reply<T>(result: Result<T, MeridianError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(to_status)
}

#[tonic::async_trait]
impl<A: ClientApi> Kv for EtcdKv<A> {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let asked = asked_consistency(&request);
        let min_revision = asked_min_revision(&request);
        let r = request.into_inner();
        let op = if r.range_end.is_empty() {
            "get"
        } else {
            "scan"
        };
        let (resp, staleness_ms) = observed(
            &self.api,
            op,
            boxed(async { self.range(r, asked?, min_revision?).await }),
        )
        .await
        .map_err(to_status)?;
        let mut resp = Response::new(resp);
        if let Some(ms) = staleness_ms {
            resp.metadata_mut()
                .insert(STALENESS_METADATA, tonic::metadata::MetadataValue::from(ms));
        }
        Ok(resp)
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let opts = write_options(&request);
        let r = request.into_inner();
        reply(observed(&self.api, "put", boxed(async { self.put(r, opts?).await })).await)
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let opts = write_options(&request);
        let r = request.into_inner();
        reply(
            observed(
                &self.api,
                "delete",
                boxed(async { self.delete_range(r, opts?).await }),
            )
            .await,
        )
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let opts = write_options(&request);
        let r = request.into_inner();
        reply(observed(&self.api, "txn", boxed(async { self.txn(r, opts?).await })).await)
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        reply(observed(&self.api, "compact", self.compact(request.into_inner())).await)
    }
}
