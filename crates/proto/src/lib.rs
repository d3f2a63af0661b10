//! Layer: types. Generated protobuf code: Meridian's node RPC, its client services
//! (`meridian.v1`) and etcd's v3 API.
//!
//! Architecture invariant: generated code only, and the one codec it names (`codec.rs`); no
//! other logic lives here.

pub mod codec;

pub mod node {
    #![allow(clippy::all)]
    tonic::include_proto!("meridian.node.v1");
}

/// Meridian's own client gRPC services (`meridian.v1`): event streams (`streams.proto`) and
/// work queues (`queue.proto`).
pub mod v1 {
    #![allow(clippy::all)]
    tonic::include_proto!("meridian.v1");
}

/// etcd's v3 API, generated from etcd's own `.proto` files (vendored under `proto/etcd`, see the
/// README there), so etcd clients and `etcdctl` work unchanged.
///
/// The three packages are siblings in this module because the generated code refers to the
/// others by `super::mvccpb::...` and `super::authpb::...`.
pub mod etcd {
    /// The `KV`, `Watch`, `Lease`, `Cluster`, `Maintenance` and `Auth` services.
    pub mod etcdserverpb {
        #![allow(clippy::all)]
        tonic::include_proto!("etcdserverpb");
    }

    /// `KeyValue` and `Event`.
    pub mod mvccpb {
        #![allow(clippy::all)]
        tonic::include_proto!("mvccpb");
    }

    /// Users, roles and permissions.
    pub mod authpb {
        #![allow(clippy::all)]
        tonic::include_proto!("authpb");
    }
}
