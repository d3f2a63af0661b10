//! etcd's `Cluster` service: `MemberList` from the cluster view (for `etcdctl member list`);
//! membership changes go through `meridian cluster add|remove`, not etcd's RPCs.

use super::convert::HeaderInfo;
use super::status::to_status;
use meridian_node::{ClientApi, ClusterView};
use meridian_proto::etcd::etcdserverpb as pb;
use meridian_proto::etcd::etcdserverpb::cluster_server::Cluster;
use tonic::{Request, Response, Status};

/// etcd's `Cluster` service over a node's [`ClientApi`].
#[derive(Clone, Debug)]
pub struct EtcdCluster<A> {
    api: A,
}

impl<A: ClientApi> EtcdCluster<A> {
    pub fn new(api: A) -> Self {
        Self { api }
    }
}

/// The members etcd clients see: every node not removed, one URL for peers and clients alike
/// (a Meridian node serves both on its one address).
pub fn members(view: &ClusterView) -> Vec<pb::Member> {
    view.nodes
        .iter()
        .filter(|n| n.state != "removed")
        .map(|n| {
            let url = format!("http://{}", n.addr);
            pb::Member {
                id: n.id,
                name: format!("node-{}", n.id),
                peer_ur_ls: vec![url.clone()],
                client_ur_ls: vec![url],
                is_learner: false,
            }
        })
        .collect()
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "Meridian does not serve Cluster.{rpc}; use `meridian cluster add|remove`"
    ))
}

#[tonic::async_trait]
impl<A: ClientApi> Cluster for EtcdCluster<A> {
    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let view = self.api.cluster_view().await.map_err(to_status)?;
        let meta_term = view.ranges.iter().find(|r| r.id == 0).map_or(0, |r| r.term);
        let header = HeaderInfo {
            cluster_id: view.cluster_id,
            member_id: view.node_id,
        };
        Ok(Response::new(pb::MemberListResponse {
            header: Some(header.header(0, meta_term)),
            members: members(&view),
        }))
    }

    async fn member_add(
        &self,
        _request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(unimplemented("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(unimplemented("MemberRemove"))
    }

    async fn member_update(
        &self,
        _request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(unimplemented("MemberUpdate"))
    }

    async fn member_promote(
        &self,
        _request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(unimplemented("MemberPromote"))
    }
}
