//! The HTTP/JSON API: arbitrary method, path, query, headers and body through the real router
//! (`meridian_api::client_router`) over an in-memory node.
//!
//! The input is a request in HTTP/1 text shape, so seeds are written by hand:
//! `METHOD TARGET\n` then `name: value` header lines, an empty line, and the body (raw bytes).
//! A method, target or header that does not parse is one hyper would have refused before the
//! router, so it is skipped (an invalid header line is dropped).
//!
//! Properties: nothing panics; no answer is a 5xx (the in-memory node has no internal failures
//! to report); every non-2xx answer is `{"error":{"code":C,"message":M}}` with `C` one of the
//! stable codes and `M` non-empty, and the status is the one the code documents; every JSON
//! success body parses. gRPC requests (content type `application/grpc...`) are the `etcd_grpc`
//! target's business: here they only must not panic.

#![no_main]

use axum::body::Body;
use libfuzzer_sys::fuzz_target;
use meridian_api::http::error::status_of;
use meridian_fuzz::{FuzzApi, collect, is_error_code, runtime};
use meridian_types::ErrorCode;
use tower::ServiceExt;

fn parse_request(data: &[u8]) -> Option<http::Request<Body>> {
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let sp = line.iter().position(|&b| b == b' ')?;
    let method = http::Method::from_bytes(&line[..sp]).ok()?;
    let uri = http::Uri::try_from(&line[sp + 1..]).ok()?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    let mut rest = rest;
    loop {
        let (hline, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        rest = after;
        if hline.is_empty() {
            break;
        }
        if let Some(colon) = hline.iter().position(|&b| b == b':') {
            let name = http::HeaderName::from_bytes(&hline[..colon]);
            let value = http::HeaderValue::from_bytes(hline[colon + 1..].trim_ascii());
            if let (Ok(n), Ok(v)) = (name, value) {
                builder = builder.header(n, v);
            }
        }
        if rest.is_empty() {
            break;
        }
    }
    builder.body(Body::from(rest.to_vec())).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = parse_request(data) else {
        return;
    };
    let grpc = meridian_api::etcd::is_grpc(req.headers());
    let head = req.method() == http::Method::HEAD;
    let what = format!("{} {}", req.method(), req.uri());
    let router = meridian_api::client_router(FuzzApi::seeded());
    let (parts, body, _trailers) = runtime().block_on(async {
        let resp = router.oneshot(req).await.expect("the router is infallible");
        collect(resp).await
    });
    if grpc {
        return;
    }
    let status = parts.status;
    assert!(
        !status.is_server_error(),
        "{what}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    let json_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if head {
        return;
    }
    if status.is_success() {
        if json_type {
            serde_json::from_slice::<serde_json::Value>(&body)
                .unwrap_or_else(|e| panic!("{what}: success body is not JSON ({e})"));
        }
        return;
    }
    assert!(json_type, "{what}: {status} without a JSON body: {parts:?}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{what}: {status} body is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    let code = v["error"]["code"].as_str().unwrap_or_default();
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        is_error_code(code),
        "{what}: {status} without a stable code: {v}"
    );
    assert!(
        !message.is_empty(),
        "{what}: {status} without a message: {v}"
    );
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(1),
        "{what}: error body has more than `error`: {v}"
    );
    // The status is the code's documented one; only `invalid_argument` also answers an
    // unknown path (404) or method (405).
    let code = meridian_fuzz::ERROR_CODES
        .iter()
        .find(|c| c.as_str() == code)
        .copied()
        .expect("a stable code");
    let allowed = status == status_of(code)
        || (code == ErrorCode::InvalidArgument
            && [
                http::StatusCode::NOT_FOUND,
                http::StatusCode::METHOD_NOT_ALLOWED,
            ]
            .contains(&status));
    assert!(allowed, "{what}: {status} for code {code}: {v}");
});
