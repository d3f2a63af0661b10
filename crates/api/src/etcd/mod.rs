//! etcd's v3 gRPC API (tonic), from etcd's own protos in `meridian_proto::etcd`, so `etcdctl`
//! and etcd client libraries work against any Meridian node.
//!
//! Served: `KV` (all of it), `Watch`, `Lease`, `Maintenance.Status` and `Alarm` (always
//! empty), and `Cluster.MemberList`. Everything else — `Auth`, membership changes and the
//! other maintenance RPCs — answers `Unimplemented`.

pub mod cluster;
pub mod convert;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod status;
pub mod unary;
pub mod watch;

pub use cluster::EtcdCluster;
pub use kv::EtcdKv;
pub use lease::EtcdLease;
pub use maintenance::EtcdMaintenance;
pub use watch::EtcdWatch;

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use meridian_node::ClientApi;
use meridian_proto::etcd::etcdserverpb::cluster_server::ClusterServer;
use meridian_proto::etcd::etcdserverpb::kv_server::KvServer;
use meridian_proto::etcd::etcdserverpb::lease_server::LeaseServer;
use meridian_proto::etcd::etcdserverpb::maintenance_server::MaintenanceServer;
use meridian_proto::etcd::etcdserverpb::watch_server::WatchServer;
use tonic::service::Routes;

/// The served etcd services. Messages over `limits().request_bytes_max` are refused.
pub fn routes<A: ClientApi>(api: A) -> Routes {
    let max = api.limits().request_bytes_max;
    Routes::new(KvServer::new(EtcdKv::new(api.clone())).max_decoding_message_size(max))
        .add_service(
            MaintenanceServer::new(EtcdMaintenance::new(api.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            ClusterServer::new(EtcdCluster::new(api.clone())).max_decoding_message_size(max),
        )
        .add_service(WatchServer::new(EtcdWatch::new(api.clone())).max_decoding_message_size(max))
        .add_service(LeaseServer::new(EtcdLease::new(api)).max_decoding_message_size(max))
}

/// Whether a request is gRPC (`content-type: application/grpc[+proto|...]`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The answer to a gRPC method no service here serves.
pub fn unimplemented(path: &str) -> Response {
    tonic::Status::unimplemented(format!("Meridian does not serve {path}"))
        .into_http::<axum::body::Body>()
        .into_response()
}
