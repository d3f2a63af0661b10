//! etcd's gRPC services: arbitrary bytes as the message of a `KV`, `Watch`, `Maintenance` or
//! `Cluster` call, sent through the real router (`meridian_api::client_router`, tonic's decoding with the
//! node's size limit, `etcd::convert`, the service handlers) over an in-memory node.
//!
//! Input: byte 0 picks the method, byte 1 the request's framing and metadata (idempotency key,
//! `meridian-consistency`, a compressed-flag frame, no framing at all), byte 2 the metadata
//! values; the rest is the protobuf message. Seeds are valid messages (see `corpus/etcd_grpc`).
//!
//! Properties: nothing panics; every answer carries a `grpc-status`; an error's message names
//! a stable code (`"<code>: ..."`), is one of the exact texts etcd clients match, or is tonic's
//! own framing complaint; a framed message that does not decode is `InvalidArgument`, never
//! `Internal`; an OK answer is one well-formed response message (a `Watch`: any number of them).

#![no_main]

use axum::body::Body;
use libfuzzer_sys::fuzz_target;
use meridian_api::etcd::status::{
    COMPACTED_MESSAGE, FUTURE_REVISION_MESSAGE, REQUEST_TOO_LARGE_MESSAGE,
};
use meridian_fuzz::{FuzzApi, collect, grpc_frame, grpc_status, is_error_code, runtime};
use meridian_proto::etcd::etcdserverpb as pb;
use prost::Message;
use tower::ServiceExt;

/// What each method's request and response are, to check decodability.
struct Method {
    path: &'static str,
    /// Whether the request bytes decode as this method's request message.
    request_decodes: fn(&[u8]) -> bool,
    /// Whether the bytes decode as this method's response message.
    response_decodes: fn(&[u8]) -> bool,
}

fn decodes<M: Message + Default>(b: &[u8]) -> bool {
    M::decode(b).is_ok()
}

const METHODS: &[Method] = &[
    Method {
        path: "/etcdserverpb.KV/Range",
        request_decodes: decodes::<pb::RangeRequest>,
        response_decodes: decodes::<pb::RangeResponse>,
    },
    Method {
        path: "/etcdserverpb.KV/Put",
        request_decodes: decodes::<pb::PutRequest>,
        response_decodes: decodes::<pb::PutResponse>,
    },
    Method {
        path: "/etcdserverpb.KV/DeleteRange",
        request_decodes: decodes::<pb::DeleteRangeRequest>,
        response_decodes: decodes::<pb::DeleteRangeResponse>,
    },
    Method {
        path: "/etcdserverpb.KV/Txn",
        request_decodes: decodes::<pb::TxnRequest>,
        response_decodes: decodes::<pb::TxnResponse>,
    },
    Method {
        path: "/etcdserverpb.KV/Compact",
        request_decodes: decodes::<pb::CompactionRequest>,
        response_decodes: decodes::<pb::CompactionResponse>,
    },
    Method {
        path: "/etcdserverpb.Maintenance/Status",
        request_decodes: decodes::<pb::StatusRequest>,
        response_decodes: decodes::<pb::StatusResponse>,
    },
    Method {
        path: "/etcdserverpb.Maintenance/Alarm",
        request_decodes: decodes::<pb::AlarmRequest>,
        response_decodes: decodes::<pb::AlarmResponse>,
    },
    Method {
        path: "/etcdserverpb.Cluster/MemberList",
        request_decodes: decodes::<pb::MemberListRequest>,
        response_decodes: decodes::<pb::MemberListResponse>,
    },
    // A stream: an OK answer is any number of frames, each a `WatchResponse`.
    Method {
        path: WATCH_PATH,
        request_decodes: decodes::<pb::WatchRequest>,
        response_decodes: decodes::<pb::WatchResponse>,
    },
    Method {
        path: "/etcdserverpb.Maintenance/Defragment",
        request_decodes: decodes::<pb::DefragmentRequest>,
        response_decodes: |_| false,
    },
];

/// The one streaming method: its OK answer may hold several frames (or none).
const WATCH_PATH: &str = "/etcdserverpb.Watch/Watch";

/// Splits a gRPC body into its frames' messages; `None` if it is not whole, uncompressed frames.
fn frames(mut body: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 5 || body[0] != 0 {
            return None;
        }
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let msg = body.get(5..5 + len)?;
        out.push(msg);
        body = &body[5 + len..];
    }
    Some(out)
}

const IDEMPOTENCY_KEYS: &[&str] = &[
    "1",
    "ffffffffffffffffffffffffffffffff",
    "not-a-number",
    "340282366920938463463374607431768211456",
    "-1",
    "",
    "00000000-0000-0000-0000-000000000001",
    "\u{7f}",
];
const CONSISTENCIES: &[&str] = &[
    "linearizable",
    "lease",
    "local",
    "serializable",
    "bogus",
    "",
];

/// tonic's own complaints about a request it cannot decode; they carry no Meridian code.
const TONIC_PREFIXES: &[&str] = &[
    "failed to decode Protobuf message",
    "Error, decoded message length too large",
    "Message compressed, compression support not enabled",
    "protocol error",
    "Unexpected EOF decoding stream",
    "Missing request message",
];

fn message_is_clear(code: i32, message: &str) -> bool {
    if let Some((c, rest)) = message.split_once(": ")
        && is_error_code(c)
        && !rest.is_empty()
    {
        return true;
    }
    if [
        COMPACTED_MESSAGE,
        FUTURE_REVISION_MESSAGE,
        REQUEST_TOO_LARGE_MESSAGE,
    ]
    .contains(&message)
    {
        return true;
    }
    // Unimplemented (12) from the fallback or an unserved RPC.
    if code == 12 && message.starts_with("Meridian does not serve") {
        return true;
    }
    TONIC_PREFIXES.iter().any(|p| message.starts_with(p))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let method = &METHODS[usize::from(data[0]) % METHODS.len()];
    let (flags, values, message) = (data[1], data[2], &data[3..]);
    let raw_body = flags & 0x10 != 0;
    let compressed = flags & 0x20 != 0;
    let body = if raw_body {
        message.to_vec()
    } else {
        let mut f = grpc_frame(message);
        if compressed {
            f[0] = 1;
        }
        f
    };
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(method.path)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers");
    if flags & 1 != 0 {
        let key = IDEMPOTENCY_KEYS[usize::from(values) % IDEMPOTENCY_KEYS.len()];
        if let Ok(v) = http::HeaderValue::from_str(key) {
            req = req.header("idempotency-key", v);
        }
    }
    if flags & 2 != 0 {
        let c = CONSISTENCIES[usize::from(values >> 4) % CONSISTENCIES.len()];
        req = req.header("meridian-consistency", c);
    }
    if flags & 4 != 0 {
        req = req.header("grpc-timeout", "1S");
    }
    let req = req.body(Body::from(body)).expect("a valid request");

    let router = meridian_api::client_router(FuzzApi::seeded());
    let (parts, body, trailers) = runtime().block_on(async {
        let resp = router.oneshot(req).await.expect("the router is infallible");
        collect(resp).await
    });
    let what = method.path;
    assert_eq!(parts.status, http::StatusCode::OK, "{what}: {parts:?}");
    let (code, msg) = grpc_status(&parts, trailers.as_ref());
    let framed_ok = !raw_body && !compressed;
    let decodes = framed_ok
        && message.len() <= meridian_fuzz::FUZZ_LIMITS.request_bytes_max
        && (method.request_decodes)(message);
    if code == 0 {
        // Unframed bytes may happen to be valid frames; only a framed message is checked.
        assert!(
            decodes || !framed_ok,
            "{what}: OK for a request that does not decode"
        );
        if what == WATCH_PATH {
            let msgs = frames(&body).unwrap_or_else(|| panic!("{what}: bad response frames"));
            assert!(
                msgs.iter().all(|m| (method.response_decodes)(m)),
                "{what}: OK answer that does not decode"
            );
            return;
        }
        // One frame holding one response message.
        assert!(
            body.len() >= 5 && body[0] == 0,
            "{what}: bad response frame"
        );
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        assert_eq!(body.len(), 5 + len, "{what}: response frame length");
        assert!(
            (method.response_decodes)(&body[5..]),
            "{what}: OK answer that does not decode"
        );
        return;
    }
    assert!(!msg.is_empty(), "{what}: status {code} without a message");
    assert!(
        message_is_clear(code, &msg),
        "{what}: status {code} with a message naming no stable code: {msg:?}"
    );
    assert_ne!(code, 2, "{what}: Unknown status: {msg:?}");
    // A framed message that does not decode is the caller's fault: InvalidArgument, not Internal.
    if framed_ok {
        assert_ne!(code, 13, "{what}: Internal: {msg:?}");
    }
    if code == 3 && msg.contains("does not decode as protobuf") {
        assert!(
            !decodes,
            "{what}: 'does not decode' for a request that decodes: {msg:?}"
        );
    }
});
