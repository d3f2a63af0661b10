//! etcd's `KV` service: range, put, delete range, txn, compact.

use super::convert::{self, HeaderInfo};
use super::status::to_status;
use crate::observe::observed;
use meridian_node::{ClientApi, Consistency, WriteOptions};
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

    async fn range(&self, r: pb::RangeRequest) -> Result<pb::RangeResponse, MeridianError> {
        let (req, serializable, extras) = convert::range_from_pb(r)?;
        let consistency = if serializable {
            Consistency::Local
        } else {
            Consistency::Linearizable
        };
        let (keys_only, count_only) = (req.keys_only, req.count_only);
        let mut resp = self.api.range(req, consistency).await?;
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
        Ok(convert::range_to_pb(
            resp,
            keys_only,
            count_only,
            self.header_info(),
        ))
    }

    async fn put(&self, r: pb::PutRequest) -> Result<pb::PutResponse, MeridianError> {
        let resp = self
            .api
            .put(convert::put_from_pb(r)?, WriteOptions::default())
            .await?;
        Ok(convert::put_to_pb(resp, self.header_info()))
    }

    async fn delete_range(
        &self,
        r: pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse, MeridianError> {
        let req = convert::delete_from_pb(r)?;
        let resp = self.api.delete_range(req, WriteOptions::default()).await?;
        Ok(convert::delete_to_pb(resp, self.header_info()))
    }

    async fn txn(&self, t: pb::TxnRequest) -> Result<pb::TxnResponse, MeridianError> {
        let req = convert::txn_from_pb(t)?;
        let (success, failure) = (req.success.clone(), req.failure.clone());
        let resp = self.api.txn(req, WriteOptions::default()).await?;
        let ran = if resp.succeeded { success } else { failure };
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

fn reply<T>(result: Result<T, MeridianError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(to_status)
}

#[tonic::async_trait]
impl<A: ClientApi> Kv for EtcdKv<A> {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let r = request.into_inner();
        let op = if r.range_end.is_empty() {
            "get"
        } else {
            "scan"
        };
        reply(observed(&self.api, op, self.range(r)).await)
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        reply(observed(&self.api, "put", self.put(request.into_inner())).await)
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        reply(observed(&self.api, "delete", self.delete_range(request.into_inner())).await)
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        reply(observed(&self.api, "txn", self.txn(request.into_inner())).await)
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        reply(observed(&self.api, "compact", self.compact(request.into_inner())).await)
    }
}
