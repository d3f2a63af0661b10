//! Layer: api. The only crate that knows a client wire protocol: Meridian's HTTP/JSON API and
//! etcd's v3 gRPC services. Both are thin translations onto [`meridian_node::ClientApi`], so
//! every protocol gets the same validation, routing and errors.
//!
//! Architecture invariant: this crate knows no Raft, no storage, no ranges and no routing; it
//! sees a node only through `ClientApi`. Nothing below it knows HTTP, JSON or etcd's protobufs.
//!
//! Codemap:
//! - [`http`]: the `/v1/...` JSON routes, health, readiness and metrics;
//! - [`etcd`]: etcd's `KV`, `Maintenance` and `Cluster` gRPC services;
//! - [`grpc_streams`]: Meridian's own `meridian.v1.Streams` gRPC service (event streams);
//! - [`queue_grpc`]: the `meridian.v1.Queues` gRPC service (work queues);
//! - [`sse`]: the reading side of server-sent events, for this repository's own clients;
//! - `keys`: key-range helpers shared by both (etcd's prefix rule);
//! - `observe`: per-request metrics around every call into the node.

pub mod etcd;
pub mod grpc_streams;
pub mod http;
mod keys;
mod observe;
pub mod queue_grpc;
pub mod sse;

pub use keys::prefix_range_end;

use meridian_node::ClientApi;

/// Every client protocol of a node on one router: the etcd gRPC services and the HTTP/JSON API.
///
/// gRPC and HTTP/1 share one port: `axum::serve` speaks HTTP/1 and h2c, and gRPC requests are
/// routed by path (`/etcdserverpb.KV/Range`, ...). Unknown paths get a gRPC `Unimplemented`
/// status if the request is gRPC, else a JSON 404.
///
/// The router has a fallback of its own, so to add more gRPC services to it do not `merge` it
/// with another router built by `tonic::service::Routes` (axum refuses to merge two fallbacks);
/// instead `tonic::service::Routes::from(client_router(api)).add_service(svc).into_axum_router()`.
pub fn client_router<A: ClientApi>(api: A) -> axum::Router {
    let mut router = etcd::routes(api.clone())
        .add_service(grpc_streams::server(api.clone()))
        .add_service(queue_grpc::server(api.clone()))
        .into_axum_router();
    // etcd's busiest calls, ahead of tonic's `KV` route (an exact path beats its wildcard).
    let fast = etcd::unary::FastKv::new(api.clone(), api.limits().request_bytes_max);
    for path in etcd::unary::PATHS {
        router = router.route_service(path, fast.clone());
    }
    router
        .merge(http::routes(api))
        .fallback(fallback)
        .method_not_allowed_fallback(http::method_not_allowed)
}

/// A path no route serves: gRPC `Unimplemented` for gRPC clients, a JSON 404 for the others.
async fn fallback(req: axum::extract::Request) -> axum::response::Response {
    if etcd::is_grpc(req.headers()) {
        etcd::unimplemented(req.uri().path())
    } else {
        http::not_found(req.method().clone(), req.uri().clone()).await
    }
}
