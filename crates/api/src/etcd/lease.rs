//! etcd's `Lease` service: grant, revoke, keep-alive (a stream), time-to-live, leases.

use super::convert::HeaderInfo;
use super::status::to_status;
use crate::observe::observed;
use meridian_node::ClientApi;
use meridian_proto::etcd::etcdserverpb as pb;
use meridian_proto::etcd::etcdserverpb::lease_server::Lease;
use meridian_types::ErrorCode;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Keep-alive answers queued per stream before it waits for the client.
const KEEP_ALIVE_QUEUE: usize = 16;

/// etcd's `Lease` service over a node's [`ClientApi`].
#[derive(Clone, Debug)]
pub struct EtcdLease<A> {
    api: A,
}

impl<A: ClientApi> EtcdLease<A> {
    pub fn new(api: A) -> Self {
        Self { api }
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        let (cluster_id, member_id) = self.api.identity();
        Some(
            HeaderInfo {
                cluster_id,
                member_id,
            }
            .header(0, 0),
        )
    }
}

#[tonic::async_trait]
impl<A: ClientApi> Lease for EtcdLease<A> {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = request.into_inner();
        let (id, ttl) = observed(&self.api, "lease_grant", self.api.lease_grant(r.id, r.ttl))
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: self.header(),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        observed(&self.api, "lease_revoke", self.api.lease_revoke(id))
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: self.header(),
        }))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<pb::LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEP_ALIVE_QUEUE);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let req = tokio::select! {
                    m = inbound.message() => match m {
                        Ok(Some(r)) => r,
                        Ok(None) | Err(_) => return,
                    },
                    _ = tx.closed() => return,
                };
                let ttl = match observed(
                    &this.api,
                    "lease_keep_alive",
                    this.api.lease_keep_alive(req.id),
                )
                .await
                {
                    Ok(ttl) => ttl,
                    // etcd answers a lease that is gone with TTL 0; the client stops.
                    Err(e) if e.code == ErrorCode::LeaseNotFound => 0,
                    // A leader election: the client sends again within a third of the TTL.
                    Err(e) if e.code.is_retryable() => {
                        tracing::debug!(lease = req.id, error = %e, "keep-alive not served");
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(to_status(e))).await;
                        return;
                    }
                };
                let resp = pb::LeaseKeepAliveResponse {
                    header: this.header(),
                    id: req.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        let res = observed(
            &self.api,
            "lease_time_to_live",
            self.api.lease_time_to_live(r.id, r.keys),
        )
        .await;
        let resp = match res {
            Ok(info) => pb::LeaseTimeToLiveResponse {
                header: self.header(),
                id: info.id,
                ttl: info.ttl_s,
                granted_ttl: info.granted_ttl_s,
                keys: info.keys,
            },
            // etcd: an expired or unknown lease has TTL -1.
            Err(e) if e.code == ErrorCode::LeaseNotFound => pb::LeaseTimeToLiveResponse {
                header: self.header(),
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: vec![],
            },
            Err(e) => return Err(to_status(e)),
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let ids = observed(&self.api, "lease_leases", self.api.lease_list())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.header(),
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}
