//! etcd's `Maintenance` service: `Status` (for `etcdctl endpoint status`) and an empty alarm
//! list (for `etcdctl endpoint health`); the rest is not served.

use super::convert::{HeaderInfo, to_i64};
use super::status::to_status;
use meridian_node::ClientApi;
use meridian_proto::etcd::etcdserverpb as pb;
use meridian_proto::etcd::etcdserverpb::alarm_request::AlarmAction;
use meridian_proto::etcd::etcdserverpb::maintenance_server::Maintenance;
use tonic::{Request, Response, Status};

/// The etcd server version reported by `Status`. Clients parse it as semver and some refuse
/// servers older than 3.2, so it names the etcd API level served, not Meridian's version.
pub const ETCD_API_VERSION: &str = "3.5.0";

/// etcd's `Maintenance` service over a node's [`ClientApi`].
#[derive(Clone, Debug)]
pub struct EtcdMaintenance<A> {
    api: A,
}

impl<A: ClientApi> EtcdMaintenance<A> {
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
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("Meridian does not serve Maintenance.{rpc}"))
}

#[tonic::async_trait]
impl<A: ClientApi> Maintenance for EtcdMaintenance<A> {
    /// No alarms are ever raised: `GET` and `DEACTIVATE` answer an empty list.
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        match AlarmAction::try_from(request.get_ref().action) {
            Ok(AlarmAction::Get | AlarmAction::Deactivate) => {
                Ok(Response::new(pb::AlarmResponse {
                    header: Some(self.header_info().header(0, 0)),
                    alarms: Vec::new(),
                }))
            }
            Ok(AlarmAction::Activate) => Err(unimplemented("Alarm(ACTIVATE)")),
            Err(_) => Err(Status::invalid_argument(
                "invalid_argument: unknown alarm action",
            )),
        }
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let s = self.api.node_status().await.map_err(to_status)?;
        let header = HeaderInfo {
            cluster_id: s.cluster_id,
            member_id: s.node_id,
        };
        Ok(Response::new(pb::StatusResponse {
            header: Some(header.header(s.revision, s.raft_term)),
            version: ETCD_API_VERSION.to_string(),
            db_size: to_i64(s.db_size_bytes),
            leader: s.leader.unwrap_or(0),
            raft_index: s.raft_index,
            raft_term: s.raft_term,
            raft_applied_index: s.raft_applied_index,
            errors: Vec::new(),
            db_size_in_use: to_i64(s.db_size_bytes),
            is_learner: false,
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        Err(unimplemented("Defragment"))
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        Err(unimplemented("Hash"))
    }

    async fn hash_kv(
        &self,
        _request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        Err(unimplemented("HashKV"))
    }

    type SnapshotStream = tokio_stream::Empty<Result<pb::SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(unimplemented("Snapshot"))
    }

    async fn move_leader(
        &self,
        _request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        Err(unimplemented("MoveLeader"))
    }
}
