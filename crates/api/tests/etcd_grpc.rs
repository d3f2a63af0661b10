//! The etcd services over a real socket: `client_router` served by `axum::serve` on
//! 127.0.0.1:0, called with the generated etcd clients (and plain HTTP/1 on the same port).

mod common;

use common::{CLUSTER_ID, FakeApi, NODE_ID};
use meridian_api::{client_router, prefix_range_end};
use meridian_node::Consistency;
use meridian_proto::etcd::etcdserverpb::{
    self as pb, cluster_client::ClusterClient, compare, kv_client::KvClient,
    lease_client::LeaseClient, maintenance_client::MaintenanceClient, range_request, request_op,
    response_op,
};
use meridian_types::{ErrorCode, Limits, MeridianError};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;

struct Server {
    addr: SocketAddr,
    channel: Channel,
}

async fn start(api: FakeApi) -> anyhow::Result<Server> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = client_router(api);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok(Server { addr, channel })
}

fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn get(key: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: key.into(),
        ..Default::default()
    }
}

fn prefix(p: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: p.into(),
        range_end: prefix_range_end(p.as_bytes()),
        ..Default::default()
    }
}

fn keys(resp: &pb::RangeResponse) -> Vec<String> {
    resp.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

#[tokio::test]
async fn put_get_prefix_delete() -> anyhow::Result<()> {
    let api = FakeApi::default();
    let server = start(api.clone()).await?;
    let mut kv = KvClient::new(server.channel.clone());

    let resp = kv.put(put("app/a", "1")).await?.into_inner();
    let header = resp.header.expect("header");
    assert_eq!(
        (header.cluster_id, header.member_id, header.revision),
        (CLUSTER_ID, NODE_ID, 1)
    );
    assert_eq!(resp.prev_kv, None);
    kv.put(put("app/b", "2")).await?;
    kv.put(put("app/c", "3")).await?;
    kv.put(put("other", "x")).await?;
    let resp = kv
        .put(pb::PutRequest {
            prev_kv: true,
            ..put("app/a", "1b")
        })
        .await?
        .into_inner();
    let prev = resp.prev_kv.expect("prev_kv");
    assert_eq!(
        (prev.value.as_slice(), prev.mod_revision, prev.version),
        (b"1".as_slice(), 1, 1)
    );

    let resp = kv.range(get("app/a")).await?.into_inner();
    assert_eq!(resp.count, 1);
    let got = &resp.kvs[0];
    assert_eq!(
        (
            got.value.as_slice(),
            got.create_revision,
            got.mod_revision,
            got.version
        ),
        (b"1b".as_slice(), 1, 5, 2)
    );
    assert_eq!(resp.header.map(|h| h.revision), Some(5));

    let resp = kv.range(prefix("app/")).await?.into_inner();
    assert_eq!(keys(&resp), ["app/a", "app/b", "app/c"]);
    let resp = kv
        .range(pb::RangeRequest {
            limit: 2,
            ..prefix("app/")
        })
        .await?
        .into_inner();
    assert_eq!(
        (keys(&resp), resp.more, resp.count),
        (vec!["app/a".into(), "app/b".into()], true, 3)
    );
    let resp = kv
        .range(pb::RangeRequest {
            keys_only: true,
            ..prefix("app/")
        })
        .await?
        .into_inner();
    assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()));
    let resp = kv
        .range(pb::RangeRequest {
            count_only: true,
            ..prefix("app/")
        })
        .await?
        .into_inner();
    assert_eq!((resp.kvs.len(), resp.count), (0, 3));
    // Every key: key = range_end = [0].
    let all = pb::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    assert_eq!(kv.range(all).await?.into_inner().count, 4);

    let resp = kv
        .range(pb::RangeRequest {
            serializable: true,
            ..get("app/a")
        })
        .await?
        .into_inner();
    assert_eq!(resp.kvs.len(), 1);
    assert_eq!(
        api.seen.lock().consistencies.last(),
        Some(&Consistency::Local)
    );
    // A bounded read asked through metadata, with a session token; the answer says how stale.
    let mut req = tonic::Request::new(get("app/a"));
    req.metadata_mut()
        .insert("meridian-consistency", "bounded:5000".parse()?);
    req.metadata_mut()
        .insert("meridian-min-revision", "2".parse()?);
    let resp = kv.range(req).await?;
    assert_eq!(
        resp.metadata()
            .get("meridian-staleness-ms")
            .and_then(|v| v.to_str().ok()),
        Some("0")
    );
    assert_eq!(
        api.seen.lock().consistencies.last(),
        Some(&Consistency::Bounded(std::time::Duration::from_secs(5)))
    );
    let mut bad = tonic::Request::new(get("app/a"));
    bad.metadata_mut()
        .insert("meridian-min-revision", "soon".parse()?);
    assert_eq!(
        kv.range(bad).await.expect_err("a bad token").code(),
        tonic::Code::InvalidArgument
    );

    let resp = kv
        .delete_range(pb::DeleteRangeRequest {
            key: b"app/".to_vec(),
            range_end: prefix_range_end(b"app/"),
            prev_kv: true,
        })
        .await?
        .into_inner();
    assert_eq!(resp.deleted, 3);
    assert_eq!(resp.prev_kvs.len(), 3);
    assert_eq!(resp.header.map(|h| h.revision), Some(6));
    assert_eq!(kv.range(prefix("app/")).await?.into_inner().count, 0);
    assert_eq!(api.value(b"other"), Some(b"x".to_vec()));

    let ops: Vec<_> = api.observed().into_iter().map(|(op, _)| op).collect();
    assert_eq!(ops[..5], ["put"; 5]);
    assert_eq!(
        ops[5..],
        [
            "get", "scan", "scan", "scan", "scan", "scan", "get", "get", "get", "delete", "scan"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn sorted_ranges() -> anyhow::Result<()> {
    let server = start(FakeApi::default()).await?;
    let mut kv = KvClient::new(server.channel.clone());
    kv.put(put("s/a", "3")).await?;
    kv.put(put("s/b", "1")).await?;
    kv.put(put("s/c", "2")).await?;
    kv.put(put("s/a", "4")).await?; // s/a now has the newest mod revision.

    let sorted = |order: range_request::SortOrder, target: range_request::SortTarget, limit| {
        pb::RangeRequest {
            sort_order: order as i32,
            sort_target: target as i32,
            limit,
            ..prefix("s/")
        }
    };
    use range_request::{SortOrder, SortTarget};
    let resp = kv
        .range(sorted(SortOrder::Descend, SortTarget::Key, 0))
        .await?
        .into_inner();
    assert_eq!(keys(&resp), ["s/c", "s/b", "s/a"]);
    let resp = kv
        .range(sorted(SortOrder::Descend, SortTarget::Mod, 1))
        .await?
        .into_inner();
    assert_eq!(
        (keys(&resp), resp.more, resp.count),
        (vec!["s/a".to_string()], true, 3)
    );
    let resp = kv
        .range(sorted(SortOrder::None, SortTarget::Value, 0))
        .await?
        .into_inner();
    assert_eq!(keys(&resp), ["s/b", "s/c", "s/a"]);
    let bad = pb::RangeRequest {
        sort_order: 9,
        ..prefix("s/")
    };
    assert_eq!(
        kv.range(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    Ok(())
}

#[tokio::test]
async fn txn_compare_and_swap() -> anyhow::Result<()> {
    let api = FakeApi::default();
    let server = start(api.clone()).await?;
    let mut kv = KvClient::new(server.channel.clone());
    let cas = |expect_version: i64| pb::TxnRequest {
        compare: vec![pb::Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Version as i32,
            key: b"lock".to_vec(),
            range_end: vec![],
            target_union: Some(compare::TargetUnion::Version(expect_version)),
        }],
        success: vec![pb::RequestOp {
            request: Some(request_op::Request::RequestPut(put("lock", "me"))),
        }],
        failure: vec![pb::RequestOp {
            request: Some(request_op::Request::RequestRange(get("lock"))),
        }],
    };

    let resp = kv.txn(cas(0)).await?.into_inner();
    assert!(resp.succeeded);
    assert_eq!(resp.header.map(|h| h.revision), Some(1));
    assert!(matches!(
        resp.responses[0].response,
        Some(response_op::Response::ResponsePut(pb::PutResponse {
            header: Some(pb::ResponseHeader { revision: 1, .. }),
            ..
        }))
    ));

    let resp = kv.txn(cas(0)).await?.into_inner();
    assert!(!resp.succeeded);
    match &resp.responses[0].response {
        Some(response_op::Response::ResponseRange(r)) => assert_eq!(r.kvs[0].value, b"me"),
        other => panic!("expected a range answer, got {other:?}"),
    }
    assert_eq!(api.revision(), 1);

    let value_compare = pb::TxnRequest {
        compare: vec![pb::Compare {
            result: compare::CompareResult::NotEqual as i32,
            target: compare::CompareTarget::Value as i32,
            key: b"lock".to_vec(),
            range_end: vec![],
            target_union: Some(compare::TargetUnion::Value(b"me".to_vec())),
        }],
        ..cas(1)
    };
    assert!(!kv.txn(value_compare).await?.into_inner().succeeded);

    let nested = pb::TxnRequest {
        success: vec![pb::RequestOp {
            request: Some(request_op::Request::RequestTxn(cas(1))),
        }],
        ..cas(1)
    };
    let err = kv.txn(nested).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("unsupported"), "{}", err.message());
    Ok(())
}

#[tokio::test]
async fn errors_are_etcd_statuses() -> anyhow::Result<()> {
    let api = FakeApi::default();
    let server = start(api.clone()).await?;
    let mut kv = KvClient::new(server.channel.clone());
    kv.put(put("k", "1")).await?;
    kv.put(put("k", "2")).await?;

    let err = kv
        .range(pb::RangeRequest {
            revision: 9,
            ..get("k")
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision"
        )
    );
    let resp = kv
        .compact(pb::CompactionRequest {
            revision: 2,
            physical: false,
        })
        .await?
        .into_inner();
    assert_eq!(resp.header.map(|h| h.revision), Some(2));
    let err = kv
        .range(pb::RangeRequest {
            revision: 1,
            ..get("k")
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted"
        )
    );

    let err = kv.range(get("")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("invalid_argument: "),
        "{}",
        err.message()
    );
    api.fail_next(MeridianError::new(ErrorCode::NotLeader, "group 3 moved"));
    let err = kv.put(put("k", "3")).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unavailable, "not_leader: group 3 moved")
    );
    api.fail_next(MeridianError::new(ErrorCode::Timeout, "slow"));
    assert_eq!(
        kv.range(get("k")).await.unwrap_err().code(),
        Code::DeadlineExceeded
    );
    api.fail_next(MeridianError::new(ErrorCode::RequestTooLarge, "big"));
    let err = kv.put(put("k", "4")).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "etcdserver: request is too large")
    );
    assert!(api.observed().contains(&("put", Err(ErrorCode::NotLeader))));
    assert!(api.observed().contains(&("compact", Ok(()))));
    Ok(())
}

#[tokio::test]
async fn oversized_grpc_messages_are_refused() -> anyhow::Result<()> {
    let limits = Limits {
        request_bytes_max: 1024,
        ..Limits::default()
    };
    let api = FakeApi::with_limits(limits);
    let server = start(api.clone()).await?;
    let mut kv = KvClient::new(server.channel.clone());
    let err = kv.put(put("big", &"x".repeat(4096))).await.unwrap_err();
    // tonic refuses it while decoding, before the service runs.
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("too large"), "{err:?}");
    assert_eq!(api.revision(), 0);
    kv.put(put("small", &"x".repeat(512))).await?;
    assert_eq!(api.revision(), 1);
    Ok(())
}

/// Sends bytes as they are, to see what the server makes of a body that is not protobuf.
#[derive(Clone, Copy)]
struct RawCodec;
struct RawBytes;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;
    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }
    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(buf);
        Ok(Some(bytes::Buf::copy_to_bytes(buf, n).to_vec()))
    }
}

#[tokio::test]
async fn a_body_that_is_not_protobuf_is_invalid_argument() -> anyhow::Result<()> {
    let api = FakeApi::default();
    let server = start(api.clone()).await?;
    let mut grpc = tonic::client::Grpc::new(server.channel.clone());
    // An unterminated varint: prost cannot decode it.
    for path in ["/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range"] {
        grpc.ready().await?;
        let err = grpc
            .unary(
                tonic::Request::new(vec![0x0a, 0xff, 0xff, 0xff]),
                http::uri::PathAndQuery::from_static(path),
                RawCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{path}: {err:?}");
        assert!(
            err.message()
                .starts_with("invalid_argument: the message does not decode"),
            "{err:?}"
        );
    }
    assert_eq!(api.revision(), 0);
    // The same bytes encoded properly still work.
    let mut kv = KvClient::new(server.channel.clone());
    kv.put(put("k", "v")).await?;
    assert_eq!(api.revision(), 1);
    Ok(())
}

#[tokio::test]
async fn status_alarms_and_members() -> anyhow::Result<()> {
    let api = FakeApi::default();
    let server = start(api.clone()).await?;
    KvClient::new(server.channel.clone())
        .put(put("k", "v"))
        .await?;

    let mut m = MaintenanceClient::new(server.channel.clone());
    let s = m.status(pb::StatusRequest {}).await?.into_inner();
    assert_eq!(s.version, "3.5.0");
    assert_eq!(
        (
            s.db_size,
            s.leader,
            s.raft_index,
            s.raft_term,
            s.raft_applied_index
        ),
        (4096, 2, 11, 4, 10)
    );
    let h = s.header.expect("header");
    assert_eq!(
        (h.cluster_id, h.member_id, h.revision, h.raft_term),
        (CLUSTER_ID, NODE_ID, 1, 4)
    );
    let alarms = m.alarm(pb::AlarmRequest::default()).await?.into_inner();
    assert!(alarms.alarms.is_empty());
    assert_eq!(
        m.defragment(pb::DefragmentRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::Unimplemented
    );

    let mut c = ClusterClient::new(server.channel.clone());
    let list = c.member_list(pb::MemberListRequest {}).await?.into_inner();
    let ids: Vec<u64> = list.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(list.members[1].name, "node-2");
    assert_eq!(list.members[1].client_ur_ls, ["http://127.0.0.1:7002"]);
    assert_eq!(list.members[1].peer_ur_ls, ["http://127.0.0.1:7002"]);
    assert_eq!(
        list.header.map(|h| (h.cluster_id, h.member_id)),
        Some((CLUSTER_ID, NODE_ID))
    );
    let err = c
        .member_remove(pb::MemberRemoveRequest { id: 2 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    // The Lease service is served (its own tests: watch_lease_api.rs).
    let granted = LeaseClient::new(server.channel.clone())
        .lease_grant(pb::LeaseGrantRequest { ttl: 5, id: 0 })
        .await?
        .into_inner();
    assert_eq!(granted.ttl, 5);
    Ok(())
}

#[tokio::test]
async fn http1_shares_the_grpc_port() -> anyhow::Result<()> {
    let server = start(FakeApi::default()).await?;
    KvClient::new(server.channel.clone())
        .put(put("shared", "port"))
        .await?;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await?;
    tcp.write_all(b"GET /v1/kv/shared HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await?;
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#""value":"port""#), "{reply}");
    Ok(())
}

/// The node RPC service stands in for any gRPC service the node adds to the client router.
struct Echo;

#[tonic::async_trait]
impl meridian_proto::node::node_rpc_server::NodeRpc for Echo {
    type StreamStream =
        futures::stream::Empty<Result<meridian_proto::node::StreamAnswer, tonic::Status>>;

    async fn stream(
        &self,
        _request: tonic::Request<tonic::Streaming<meridian_proto::node::StreamCall>>,
    ) -> Result<tonic::Response<Self::StreamStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not used here"))
    }

    async fn call(
        &self,
        request: tonic::Request<meridian_proto::node::Envelope>,
    ) -> Result<tonic::Response<meridian_proto::node::EnvelopeReply>, tonic::Status> {
        let payload = request.into_inner().payload;
        Ok(tonic::Response::new(meridian_proto::node::EnvelopeReply {
            payload,
        }))
    }
}

#[tokio::test]
async fn more_grpc_services_can_join_the_router() -> anyhow::Result<()> {
    use meridian_proto::node::{
        Envelope, node_rpc_client::NodeRpcClient, node_rpc_server::NodeRpcServer,
    };
    let api = FakeApi::default();
    let router = tonic::service::Routes::from(client_router(api.clone()))
        .add_service(NodeRpcServer::new(Echo))
        .into_axum_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    let env = Envelope {
        payload: b"ping".to_vec(),
        ..Default::default()
    };
    let reply = NodeRpcClient::new(channel.clone())
        .call(env)
        .await?
        .into_inner();
    assert_eq!(reply.payload, b"ping");
    KvClient::new(channel).put(put("k", "v")).await?;
    assert_eq!(api.value(b"k"), Some(b"v".to_vec()));
    Ok(())
}
