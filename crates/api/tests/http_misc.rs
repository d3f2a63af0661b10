//! `/v1/txn`, `/v1/compact`, `/v1/cluster`, health, metrics and unknown routes, in-process.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::FakeApi;
use common::http::{call, get, send};
use meridian_api::client_router;
use meridian_types::{ErrorCode, Limits, MeridianError};
use serde_json::json;

fn app() -> (FakeApi, axum::Router) {
    let api = FakeApi::default();
    (api.clone(), client_router(api))
}

const CAS: &str = r#"{
    "compare": [{"key": "lock", "target": "version", "op": "=", "value": 0}],
    "success": [{"put": {"key": "lock", "value": "me"}}, {"get": {"key": "lock"}}],
    "failure": [{"get": {"key": "lock"}}]
}"#;

#[tokio::test]
async fn txn_runs_the_branch_its_compares_choose() {
    let (api, app) = app();
    let r = call(&app, "POST", "/v1/txn", CAS).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        json!({"succeeded": true, "revision": 1, "responses": [
            {"put": {"revision": 1, "prev_kv": null}},
            {"get": {"kvs": [{"key": "lock", "value": "me", "create_revision": 1,
                              "mod_revision": 1, "version": 1, "lease": 0}],
                     "more": false, "count": 1}}
        ]})
    );
    let r = call(&app, "POST", "/v1/txn", CAS).await;
    let j = r.json();
    assert_eq!(j["succeeded"], false);
    assert_eq!(j["responses"][0]["get"]["kvs"][0]["value"], "me");
    assert_eq!(api.revision(), 1);
    assert_eq!(api.observed(), vec![("txn", Ok(())), ("txn", Ok(()))]);
}

#[tokio::test]
async fn txn_compares_values_and_deletes_prefixes() {
    let (api, app) = app();
    call(&app, "PUT", "/v1/kv/cfg/a", "1").await;
    call(&app, "PUT", "/v1/kv/cfg/b", "2").await;
    let body = json!({
        "compare": [{"key": "cfg/a", "target": "value", "op": "!=", "value": "9"},
                    {"key": "cfg/", "prefix": true, "target": "mod_revision", "op": "<", "value": 3}],
        "success": [{"delete": {"key": "cfg/", "prefix": true, "prev_kv": true}}]
    });
    let j = call(&app, "POST", "/v1/txn", body.to_string()).await.json();
    assert_eq!(j["succeeded"], true);
    assert_eq!(j["responses"][0]["delete"]["deleted"], 2);
    assert_eq!(j["responses"][0]["delete"]["prev_kvs"][1]["value"], "2");
    assert_eq!(api.value(b"cfg/a"), None);
}

#[tokio::test]
async fn malformed_txns_are_json_400s() {
    let (api, app) = app();
    for bad in [
        "",
        "{",
        "[]",
        r#"{"compare": [{"key": "a", "target": "version", "op": "==", "value": 1}]}"#,
        r#"{"success": [{"put": {"key": "a"}}]}"#,
        r#"{"success": [{"put": {"key": "", "value": "v"}}]}"#,
        r#"{"succes": []}"#,
    ] {
        call(&app, "POST", "/v1/txn", bad)
            .await
            .assert_error(400, "invalid_argument");
    }
    assert_eq!(api.revision(), 0);
    // The content type does not matter (curl -d sends a form type).
    let req = Request::builder()
        .method("POST")
        .uri("/v1/txn")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(CAS))
        .unwrap();
    assert_eq!(send(&app, req).await.status, 200);
}

#[tokio::test]
async fn txn_limits_are_enforced() {
    let limits = Limits {
        request_bytes_max: 2048,
        txn_ops_max: 4,
        ..Limits::default()
    };
    let api = FakeApi::with_limits(limits);
    let app = client_router(api.clone());
    let ops: Vec<_> = (0..5)
        .map(|i| json!({"put": {"key": format!("k{i}"), "value": "v"}}))
        .collect();
    let body = json!({"success": ops}).to_string();
    call(&app, "POST", "/v1/txn", body)
        .await
        .assert_error(400, "too_many_txn_ops");
    let huge = json!({"success": [{"put": {"key": "k", "value": "x".repeat(4096)}}]}).to_string();
    call(&app, "POST", "/v1/txn", huge)
        .await
        .assert_error(413, "request_too_large");
    assert_eq!(
        api.observed().last(),
        Some(&("txn", Err(ErrorCode::RequestTooLarge)))
    );
}

#[tokio::test]
async fn txn_carries_a_request_id() {
    let (api, app) = app();
    let req = Request::builder()
        .method("POST")
        .uri("/v1/txn")
        .header("Idempotency-Key", "67e55044-10b1-426f-9247-bb680e5fe0c8")
        .body(Body::from(CAS))
        .unwrap();
    assert_eq!(send(&app, req).await.status, 200);
    let id = api.seen.lock().write_opts[0].request_id;
    assert_eq!(id.map(|i| i.0), Some(0x67e5504410b1426f9247bb680e5fe0c8));
}

#[tokio::test]
async fn compact_route() {
    let (api, app) = app();
    call(&app, "PUT", "/v1/kv/k", "1").await;
    call(&app, "PUT", "/v1/kv/k", "2").await;
    let r = call(&app, "POST", "/v1/compact", r#"{"revision": 2}"#).await;
    assert_eq!(r.json(), json!({"revision": 2}));
    get(&app, "/v1/kv/k?revision=1")
        .await
        .assert_error(410, "compacted");
    call(&app, "POST", "/v1/compact", r#"{"revision": 5}"#)
        .await
        .assert_error(400, "future_revision");
    call(&app, "POST", "/v1/compact", r#"{"revision": 0}"#)
        .await
        .assert_error(400, "invalid_argument");
    call(&app, "POST", "/v1/compact", r#"{"rev": 1}"#)
        .await
        .assert_error(400, "invalid_argument");
    assert_eq!(
        api.observed()
            .iter()
            .filter(|(op, _)| *op == "compact")
            .count(),
        4
    );
}

#[tokio::test]
async fn cluster_view_is_json() {
    let (api, app) = app();
    let r = get(&app, "/v1/cluster").await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["cluster_id"], 7);
    assert_eq!(j["nodes"][1]["addr"], "127.0.0.1:7002");
    assert_eq!(j["ranges"][0]["leader"], 2);
    api.fail_next(MeridianError::new(
        ErrorCode::NotInitialized,
        "no cluster yet",
    ));
    get(&app, "/v1/cluster")
        .await
        .assert_error(503, "not_initialized");
}

#[tokio::test]
async fn drain_and_remove_nodes() {
    let (api, app) = app();
    let r = call(&app, "POST", "/v1/cluster/nodes/3/drain", Body::empty()).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["node"], 3);
    assert_eq!(j["replicas"], 2);
    assert_eq!(j["done"], false);
    api.fail_next(MeridianError::new(ErrorCode::NotDrained, "still holds 2"));
    call(&app, "DELETE", "/v1/cluster/nodes/3", Body::empty())
        .await
        .assert_error(409, "not_drained");
    let r = call(&app, "DELETE", "/v1/cluster/nodes/3", Body::empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["removed"], 3);
    // A node id that is not a number is a JSON error with a stable code.
    call(&app, "POST", "/v1/cluster/nodes/three/drain", Body::empty())
        .await
        .assert_error(400, "invalid_argument");
    call(&app, "DELETE", "/v1/cluster/nodes/-1", Body::empty())
        .await
        .assert_error(400, "invalid_argument");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (api, app) = app();
    let r = get(&app, "/healthz").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_slice()),
        (200, b"ok".as_slice())
    );
    assert_eq!(get(&app, "/readyz").await.status, 200);
    *api.not_ready.lock() = Some(MeridianError::new(
        ErrorCode::NotInitialized,
        "not in a cluster",
    ));
    get(&app, "/readyz")
        .await
        .assert_error(503, "not_initialized");
    *api.not_ready.lock() = Some(MeridianError::new(ErrorCode::Timeout, "meta leader silent"));
    get(&app, "/readyz").await.assert_error(503, "timeout");

    let r = get(&app, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&r.body).ends_with("# EOF\n"));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let (_, app) = app();
    get(&app, "/v2/nothing")
        .await
        .assert_error(404, "invalid_argument");
    call(&app, "POST", "/v1/kv/k", "v")
        .await
        .assert_error(405, "invalid_argument");
    call(&app, "GET", "/v1/txn", "")
        .await
        .assert_error(405, "invalid_argument");
    call(&app, "DELETE", "/healthz", "")
        .await
        .assert_error(405, "invalid_argument");
}

#[tokio::test]
async fn unknown_grpc_methods_are_unimplemented() {
    let (_, app) = app();
    let req = Request::builder()
        .method("POST")
        .uri("/etcdserverpb.Auth/Authenticate")
        .header("content-type", "application/grpc")
        .body(Body::empty())
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("12")
    );
}
