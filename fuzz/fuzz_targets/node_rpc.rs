//! Node RPC (`/meridian.node.v1.NodeRpc/Call` and `/Stream`), which shares the client port:
//! arbitrary bytes as the `Envelope` message (or a stream of `StreamCall` messages) through the
//! real router composition of `meridian server` and `meridian_transport::node_rpc_service`
//! (tonic decoding, the `grpc-timeout` parsing), into a handler that decodes each method's
//! payload as `meridian_node::Node` does (postcard into the real message types) and answers
//! like it.
//!
//! Input: byte 0 flags (bit 0: send a `grpc-timeout`; bit 1: call `Stream`), then the
//! `grpc-timeout` value up to the first `\n`, then the protobuf `Envelope`; for `Stream`, a
//! sequence of messages, each one length byte and that many bytes of `StreamCall`.
//!
//! Properties: nothing panics; every answer carries a `grpc-status`; a message that decodes
//! reaches the handler with every field intact, and one that does not is `InvalidArgument`
//! (`invalid_argument: the message does not decode as protobuf: ...`); a refused payload is
//! `FailedPrecondition` whose message names a stable code. On `Stream`: every answer decodes
//! and answers a call that was sent, every call before the first undecodable one is answered
//! exactly once (all of them when all decode), a refusal names a stable code, and an
//! undecodable call ends the stream with `InvalidArgument`.

#![no_main]

use axum::body::Body;
use futures::FutureExt;
use futures::future::BoxFuture;
use libfuzzer_sys::fuzz_target;
use meridian_fuzz::{FuzzApi, collect, grpc_frame, grpc_status, is_error_code, runtime};
use meridian_node::messages::{
    ForwardRequest, JoinRequest, M_FORWARD, M_HELLO, M_INIT, M_JOIN, M_STATUS,
};
use meridian_proto::node::{Envelope as PbEnvelope, StreamAnswer, StreamCall};
use meridian_state::ClusterMap;
use meridian_transport::{Envelope, Handler, node_rpc_service};
use meridian_types::MeridianError;
use parking_lot::Mutex;
use prost::Message;
use std::sync::Arc;
use tower::ServiceExt;

/// Decodes payloads like `Node::dispatch` and remembers the last envelope it was handed.
#[derive(Default)]
struct DecodingHandler {
    seen: Mutex<Option<Envelope>>,
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    postcard::from_bytes(b)
        .map_err(|e| MeridianError::invalid(format!("decode message: {e}")).to_string())
}

impl Handler for DecodingHandler {
    fn handle(&self, env: Envelope) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        *self.seen.lock() = Some(env.clone());
        async move {
            match env.method.as_str() {
                M_HELLO | M_STATUS => Ok(Vec::new()),
                M_INIT => decode::<ClusterMap>(&env.payload).map(|_| Vec::new()),
                M_JOIN => decode::<JoinRequest>(&env.payload).map(|_| Vec::new()),
                M_FORWARD => decode::<ForwardRequest>(&env.payload).map(|_| Vec::new()),
                m if m.starts_with("raft.") => Err(format!(
                    "unavailable: group {} is not hosted on this node",
                    env.group
                )),
                other => {
                    Err(MeridianError::invalid(format!("unknown method {other:?}")).to_string())
                }
            }
        }
        .boxed()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (timeout, message) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    if flags & 2 != 0 {
        return stream_case(flags, timeout, message);
    }
    let req = request("Call", flags, timeout, grpc_frame(message));
    let handler = Arc::new(DecodingHandler::default());
    let router = node_router(handler.clone());
    let (parts, _body, trailers) = runtime().block_on(async {
        let resp = router.oneshot(req).await.expect("the router is infallible");
        collect(resp).await
    });
    assert_eq!(parts.status, http::StatusCode::OK, "{parts:?}");
    let (code, msg) = grpc_status(&parts, trailers.as_ref());
    let seen = handler.seen.lock().take();
    match PbEnvelope::decode(message) {
        Ok(pb) => {
            let env = seen.expect("a decodable envelope reaches the handler");
            assert_eq!(env.cluster_id.0, pb.cluster_id);
            assert_eq!(env.from.0, pb.from_node);
            assert_eq!(env.to.0, pb.to_node);
            assert_eq!(env.group.0, pb.group_id);
            assert_eq!(env.method, pb.method);
            assert_eq!(env.payload, pb.payload);
            if flags & 1 == 0 {
                assert_eq!(env.timeout, std::time::Duration::from_secs(30));
            }
            if code != 0 {
                assert_eq!(code, 9, "a refused envelope is FailedPrecondition: {msg:?}");
                let stable = msg.split_once(": ").is_some_and(|(c, _)| is_error_code(c));
                assert!(stable, "refusal without a stable code: {msg:?}");
            }
        }
        Err(_) => {
            assert!(
                seen.is_none(),
                "an undecodable envelope reached the handler"
            );
            assert_eq!(code, 3, "undecodable envelope: {msg:?}");
            assert!(
                msg.starts_with("invalid_argument: the message does not decode as protobuf"),
                "{msg:?}"
            );
        }
    }
});

/// A gRPC request to node RPC's `method`, with a `grpc-timeout` when flag bit 0 is set.
fn request(method: &str, flags: u8, timeout: &[u8], body: Vec<u8>) -> http::Request<Body> {
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("/meridian.node.v1.NodeRpc/{method}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers");
    if flags & 1 != 0
        && let Ok(v) = http::HeaderValue::from_bytes(timeout)
    {
        req = req.header("grpc-timeout", v);
    }
    req.body(Body::from(body)).expect("a valid request")
}

/// The client router with node RPC mounted as `meridian server` mounts it.
fn node_router(handler: Arc<DecodingHandler>) -> axum::Router {
    meridian_api::client_router(FuzzApi::new()).route_service(
        "/meridian.node.v1.NodeRpc/{*method}",
        node_rpc_service(handler),
    )
}

/// Splits `data` into messages of one length byte and that many bytes (the last may be short).
fn chunks(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let n = usize::from(len).min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}

fn stream_case(flags: u8, timeout: &[u8], data: &[u8]) {
    let calls = chunks(data);
    let body: Vec<u8> = calls.iter().flat_map(|c| grpc_frame(c)).collect();
    let req = request("Stream", flags, timeout, body);
    let router = node_router(Arc::new(DecodingHandler::default()));
    let (parts, body, trailers) = runtime().block_on(async {
        let resp = router.oneshot(req).await.expect("the router is infallible");
        collect(resp).await
    });
    assert_eq!(parts.status, http::StatusCode::OK, "{parts:?}");
    let (code, msg) = grpc_status(&parts, trailers.as_ref());
    // The calls up to the first one that does not decode are read and run.
    let decoded: Vec<StreamCall> = calls
        .iter()
        .map_while(|c| StreamCall::decode(*c).ok())
        .collect();
    let all_decode = decoded.len() == calls.len();
    let mut sent: Vec<u64> = decoded.iter().map(|c| c.call_id).collect();
    let mut answered = Vec::new();
    let mut rest = &body[..];
    while !rest.is_empty() {
        assert!(rest.len() >= 5 && rest[0] == 0, "bad answer frame");
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let a = StreamAnswer::decode(&rest[5..5 + len]).expect("an answer decodes");
        if !a.error.is_empty() {
            let stable = a
                .error
                .split_once(": ")
                .is_some_and(|(c, _)| is_error_code(c));
            assert!(stable, "refusal without a stable code: {:?}", a.error);
        }
        answered.push(a.call_id);
        rest = &rest[5 + len..];
    }
    sent.sort_unstable();
    answered.sort_unstable();
    if all_decode {
        assert_eq!(code, 0, "a stream of decodable calls ends OK: {msg:?}");
        assert_eq!(answered, sent, "every call answered exactly once");
    } else {
        assert_eq!(code, 3, "an undecodable call: {msg:?}");
        assert!(
            msg.starts_with("invalid_argument: the message does not decode as protobuf"),
            "{msg:?}"
        );
        // Answers of calls still running when the stream ended are lost with it.
        let mut left = sent.clone();
        for id in &answered {
            let i = left
                .iter()
                .position(|s| s == id)
                .unwrap_or_else(|| panic!("answer to call {id}, which was not sent"));
            left.remove(i);
        }
    }
}
