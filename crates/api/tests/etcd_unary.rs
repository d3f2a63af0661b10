//! etcd's `KV` unary calls served without tonic's generic path (`etcd::unary::FastKv`) answer
//! exactly as tonic's `KvServer` does, whatever the request: each case goes to both, each over a
//! fresh store, and the answers (status, headers, body, trailers) must be identical.

mod common;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use common::FakeApi;
use http_body_util::BodyExt;
use meridian_api::etcd::EtcdKv;
use meridian_api::etcd::unary::FastKv;
use meridian_proto::etcd::etcdserverpb::{self as pb, kv_server::KvServer};
use meridian_types::Limits;
use prost::Message;
use tower::ServiceExt;

const MAX: usize = 1024;

fn frame(flag: u8, msg: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(flag);
    b.put_u32(msg.len() as u32);
    b.extend_from_slice(msg);
    b.freeze()
}

fn put(key: &str, value: &str) -> Vec<u8> {
    pb::PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn request(path: &str, headers: &[(&str, &str)], chunks: Vec<Bytes>) -> http::Request<Body> {
    let mut b = http::Request::post(format!("http://x{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    b.body(Body::from_stream(stream)).unwrap()
}

/// An answer as the client sees it: status, headers, body bytes, trailers.
type Answer = (
    u16,
    Vec<(String, String)>,
    Bytes,
    Option<Vec<(String, String)>>,
);

async fn collect(resp: http::Response<Body>) -> Answer {
    let pairs = |h: &http::HeaderMap| {
        let mut v: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect();
        v.sort();
        v
    };
    let status = resp.status().as_u16();
    let headers = pairs(resp.headers());
    let body = resp.into_body().collect().await.unwrap();
    let trailers = body.trailers().map(pairs);
    (status, headers, body.to_bytes(), trailers)
}

/// The same request to the fast path and to tonic, each over its own fresh store.
async fn both(path: &str, headers: &[(&str, &str)], chunks: Vec<Bytes>) -> (Answer, Answer) {
    let limits = Limits {
        request_bytes_max: MAX,
        ..Limits::default()
    };
    let fast = FastKv::new(FakeApi::with_limits(limits.clone()), MAX)
        .oneshot(request(path, headers, chunks.clone()))
        .await
        .unwrap();
    let tonic = KvServer::new(EtcdKv::new(FakeApi::with_limits(limits)))
        .max_decoding_message_size(MAX)
        .oneshot(request(path, headers, chunks))
        .await
        .unwrap()
        .map(Body::new);
    (collect(fast).await, collect(tonic).await)
}

fn grpc_status(a: &Answer) -> String {
    let from = |v: &Vec<(String, String)>| {
        v.iter()
            .find(|(k, _)| k == "grpc-status")
            .map(|(_, v)| v.clone())
    };
    a.3.as_ref()
        .and_then(from)
        .or_else(|| from(&a.1))
        .unwrap_or_default()
}

type Case<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<Bytes>,
    &'a str,
);

#[tokio::test]
async fn every_request_gets_the_answer_tonic_gives() {
    let msg = put("k", "v");
    let range = pb::RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    }
    .encode_to_vec();
    let whole = frame(0, &msg);
    // (name, path, headers, body chunks, the grpc-status wanted; "" for any error). tonic
    // answers a unary call with two messages from the first, so the fast path does too.
    let cases: Vec<Case> = vec![
        (
            "one message",
            "/etcdserverpb.KV/Put",
            vec![],
            vec![whole.clone()],
            "0",
        ),
        (
            "split over frames",
            "/etcdserverpb.KV/Put",
            vec![],
            vec![whole.slice(..2), whole.slice(2..7), whole.slice(7..)],
            "0",
        ),
        (
            "a range",
            "/etcdserverpb.KV/Range",
            vec![],
            vec![frame(0, &range)],
            "0",
        ),
        (
            "a txn",
            "/etcdserverpb.KV/Txn",
            vec![],
            vec![frame(0, &pb::TxnRequest::default().encode_to_vec())],
            "0",
        ),
        (
            "a delete",
            "/etcdserverpb.KV/DeleteRange",
            vec![],
            vec![frame(
                0,
                &pb::DeleteRangeRequest {
                    key: b"k".to_vec(),
                    ..Default::default()
                }
                .encode_to_vec(),
            )],
            "0",
        ),
        (
            "an idempotency key",
            "/etcdserverpb.KV/Put",
            vec![("idempotency-key", "00000000000000000000000000000007")],
            vec![whole.clone()],
            "0",
        ),
        (
            "not protobuf",
            "/etcdserverpb.KV/Put",
            vec![],
            vec![frame(0, &[0x0a, 0xff, 0xff])],
            "3",
        ),
        (
            "compressed flag",
            "/etcdserverpb.KV/Put",
            vec![],
            vec![frame(1, &msg)],
            "",
        ),
        (
            "gzip",
            "/etcdserverpb.KV/Put",
            vec![("grpc-encoding", "gzip")],
            vec![frame(1, &msg)],
            "",
        ),
        (
            "too large",
            "/etcdserverpb.KV/Put",
            vec![],
            vec![frame(0, &put("k", &"x".repeat(2 * MAX)))],
            "11",
        ),
        (
            "cut",
            "/etcdserverpb.KV/Put",
            vec![],
            vec![whole.slice(..whole.len() - 1)],
            "",
        ),
        (
            "only a header piece",
            "/etcdserverpb.KV/Put",
            vec![],
            vec![whole.slice(..3)],
            "",
        ),
        ("empty", "/etcdserverpb.KV/Put", vec![], vec![], ""),
        (
            "two messages",
            "/etcdserverpb.KV/Put",
            vec![],
            vec![whole.clone(), whole.clone()],
            "0",
        ),
    ];
    for (name, path, headers, chunks, want) in cases {
        let (fast, tonic) = both(path, &headers, chunks).await;
        assert_eq!(fast, tonic, "{name}: the fast path and tonic disagree");
        if want.is_empty() {
            let s = grpc_status(&fast);
            assert!(!s.is_empty() && s != "0", "{name}: not an error: {fast:?}");
        } else {
            assert_eq!(grpc_status(&fast), want, "{name}: {fast:?}");
        }
    }
}

#[tokio::test]
async fn an_answer_is_one_message_then_status_ok() {
    let limits = Limits {
        request_bytes_max: MAX,
        ..Limits::default()
    };
    let api = FakeApi::with_limits(limits);
    let resp = FastKv::new(api.clone(), MAX)
        .oneshot(request(
            "/etcdserverpb.KV/Put",
            &[],
            vec![frame(0, &put("k", "v"))],
        ))
        .await
        .unwrap();
    let (status, headers, body, trailers) = collect(resp).await;
    assert_eq!(status, 200);
    assert!(headers.contains(&("content-type".into(), "application/grpc".into())));
    assert_eq!(trailers, Some(vec![("grpc-status".into(), "0".into())]));
    assert_eq!(body[0], 0);
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    assert_eq!(len, body.len() - 5);
    let r = pb::PutResponse::decode(&body[5..]).unwrap();
    assert_eq!(r.header.unwrap().revision, 1);
    assert_eq!(api.revision(), 1);
}
