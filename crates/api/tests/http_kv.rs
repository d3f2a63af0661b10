//! The `/v1/kv` routes against a fake node, in-process.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::FakeApi;
use common::http::{call, get, send};
use meridian_api::client_router;
use meridian_node::Consistency;
use meridian_types::{ErrorCode, Limits, MeridianError, RequestId};
use serde_json::json;

fn app() -> (FakeApi, axum::Router) {
    let api = FakeApi::default();
    (api.clone(), client_router(api))
}

#[tokio::test]
async fn put_then_get_round_trips() {
    let (api, app) = app();
    let r = call(&app, "PUT", "/v1/kv/greeting", "hello").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"revision": 1, "prev_kv": null}));

    let r = get(&app, "/v1/kv/greeting").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"key": "greeting", "value": "hello", "create_revision": 1, "mod_revision": 1,
               "version": 1, "lease": 0, "revision": 1, "staleness_ms": 0})
    );
    assert_eq!(
        api.seen.lock().consistencies,
        vec![Consistency::Linearizable]
    );
}

#[tokio::test]
async fn put_returns_the_previous_pair_when_asked() {
    let (_, app) = app();
    call(&app, "PUT", "/v1/kv/k", "v1").await;
    let r = call(&app, "PUT", "/v1/kv/k?prev_kv=true", "v2").await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["revision"], 2);
    assert_eq!(j["prev_kv"]["value"], "v1");
    assert_eq!(j["prev_kv"]["mod_revision"], 1);
    let j = get(&app, "/v1/kv/k").await.json();
    assert_eq!(
        (
            j["value"].clone(),
            j["version"].clone(),
            j["create_revision"].clone()
        ),
        (json!("v2"), json!(2), json!(1))
    );
}

#[tokio::test]
async fn keys_may_contain_slashes_and_escapes() {
    let (api, app) = app();
    assert_eq!(call(&app, "PUT", "/v1/kv/a/b/c", "x").await.status, 200);
    assert_eq!(call(&app, "PUT", "/v1/kv/sp%20ace", "y").await.status, 200);
    assert_eq!(api.value(b"a/b/c"), Some(b"x".to_vec()));
    assert_eq!(api.value(b"sp ace"), Some(b"y".to_vec()));
    assert_eq!(get(&app, "/v1/kv/a/b/c").await.json()["key"], "a/b/c");
}

#[tokio::test]
async fn missing_key_is_404() {
    let (api, app) = app();
    get(&app, "/v1/kv/nope")
        .await
        .assert_error(404, "key_not_found");
    assert_eq!(api.observed(), vec![("get", Err(ErrorCode::KeyNotFound))]);
}

#[tokio::test]
async fn binary_values_come_back_as_base64() {
    let (api, app) = app();
    assert_eq!(
        call(&app, "PUT", "/v1/kv/bin", vec![0xffu8, 0x00, 0x01])
            .await
            .status,
        200
    );
    assert_eq!(api.value(b"bin"), Some(vec![0xff, 0, 1]));
    let j = get(&app, "/v1/kv/bin").await.json();
    assert_eq!(j["encoding"], "base64");
    assert_eq!(j["key"], "Ymlu");
    assert_eq!(j["value"], "/wAB");
    // A key that is not UTF-8, named in base64.
    assert_eq!(
        call(&app, "PUT", "/v1/kv/%2F%2F8%3D?encoding=base64", "v")
            .await
            .status,
        200
    );
    assert_eq!(api.value(&[0xff, 0xff]), Some(b"v".to_vec()));
    let j = get(&app, "/v1/kv/%2F%2F8%3D?encoding=base64").await.json();
    assert_eq!(
        (j["key"].clone(), j["value"].clone()),
        (json!("//8="), json!("dg=="))
    );
    get(&app, "/v1/kv/***?encoding=base64")
        .await
        .assert_error(400, "invalid_argument");
}

#[tokio::test]
async fn read_options_reach_the_node() {
    let (api, app) = app();
    call(&app, "PUT", "/v1/kv/k", "v").await;
    call(&app, "PUT", "/v1/kv/k", "w").await;
    assert_eq!(
        get(&app, "/v1/kv/k?consistency=local&revision=1")
            .await
            .status,
        200
    );
    assert_eq!(get(&app, "/v1/kv/k?consistency=lease").await.status, 200);
    let r = get(&app, "/v1/kv/k?consistency=bounded:5000&min_revision=1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["staleness_ms"], 0);
    assert_eq!(
        r.headers
            .get("meridian-staleness-ms")
            .and_then(|v| v.to_str().ok()),
        Some("0")
    );
    assert_eq!(
        get(&app, "/v1/kv?prefix=k&consistency=bounded:2s")
            .await
            .status,
        200
    );
    {
        let seen = api.seen.lock();
        assert_eq!(
            seen.consistencies,
            vec![
                Consistency::Local,
                Consistency::Lease,
                Consistency::Bounded(std::time::Duration::from_secs(5)),
                Consistency::Bounded(std::time::Duration::from_secs(2)),
            ]
        );
        assert_eq!(seen.last_range.as_ref().map(|r| r.revision), Some(0));
    }
    get(&app, "/v1/kv/k?revision=99")
        .await
        .assert_error(400, "future_revision");
    for bad in ["eventual", "bounded:", "bounded:soon", "bounded:-5"] {
        let r = get(&app, &format!("/v1/kv/k?consistency={bad}")).await;
        r.assert_error(400, "invalid_argument");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("bounded:")),
            "{bad}: the error lists the accepted forms"
        );
    }
    get(&app, "/v1/kv/k?min_revision=x")
        .await
        .assert_error(400, "invalid_argument");
    get(&app, "/v1/kv/k?revision=abc")
        .await
        .assert_error(400, "invalid_argument");
    get(&app, "/v1/kv/k?revison=1")
        .await
        .assert_error(400, "invalid_argument");
}

#[tokio::test]
async fn empty_key_is_invalid() {
    let (_, app) = app();
    get(&app, "/v1/kv/")
        .await
        .assert_error(400, "invalid_argument");
    call(&app, "PUT", "/v1/kv/", "v")
        .await
        .assert_error(400, "invalid_argument");
    call(&app, "DELETE", "/v1/kv/", "")
        .await
        .assert_error(400, "invalid_argument");
}

#[tokio::test]
async fn delete_one_key_or_a_prefix() {
    let (api, app) = app();
    for k in ["p/a", "p/b", "p/c", "q"] {
        call(&app, "PUT", &format!("/v1/kv/{k}"), "v").await;
    }
    let r = call(&app, "DELETE", "/v1/kv/q", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"deleted": 1, "revision": 5}));
    let r = call(&app, "DELETE", "/v1/kv/p/?prefix=true&prev_kv=true", "").await;
    let j = r.json();
    assert_eq!(j["deleted"], 3);
    assert_eq!(j["revision"], 6);
    assert_eq!(j["prev_kvs"].as_array().map(Vec::len), Some(3));
    assert_eq!(api.value(b"p/a"), None);
    let r = call(&app, "DELETE", "/v1/kv/absent", "").await;
    assert_eq!(r.json(), json!({"deleted": 0, "revision": 6}));
}

#[tokio::test]
async fn scan_pages_through_a_prefix() {
    let (_, app) = app();
    for i in 0..7 {
        call(&app, "PUT", &format!("/v1/kv/s/{i}"), format!("v{i}")).await;
    }
    call(&app, "PUT", "/v1/kv/t", "other").await;

    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let uri = match &after {
            Some(a) => format!("/v1/kv?prefix=s/&limit=3&after={a}"),
            None => "/v1/kv?prefix=s/&limit=3".to_string(),
        };
        let r = get(&app, &uri).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let j = r.json();
        assert_eq!(j["revision"], 8);
        let page: Vec<String> = j["kvs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| kv["key"].as_str().unwrap().to_string())
            .collect();
        assert!(page.len() <= 3);
        keys.extend(page.iter().cloned());
        pages += 1;
        if !j["more"].as_bool().unwrap() {
            break;
        }
        after = page.last().cloned();
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(keys, (0..7).map(|i| format!("s/{i}")).collect::<Vec<_>>());

    // The first page counts the whole prefix.
    let j = get(&app, "/v1/kv?prefix=s/&limit=2").await.json();
    assert_eq!(
        (j["count"].clone(), j["more"].clone()),
        (json!(7), json!(true))
    );
    // Past the end: nothing, no error.
    let j = get(&app, "/v1/kv?prefix=s/&after=s/9").await.json();
    assert_eq!(
        j,
        json!({"kvs": [], "more": false, "count": 0, "revision": 8, "staleness_ms": 0})
    );
}

#[tokio::test]
async fn scan_of_everything_and_keys_only() {
    let (api, app) = app();
    for k in ["a", "b", "c"] {
        call(&app, "PUT", &format!("/v1/kv/{k}"), "v").await;
    }
    let j = get(&app, "/v1/kv").await.json();
    assert_eq!(j["count"], 3);
    assert_eq!(j["kvs"][0]["value"], "v");
    assert_eq!(
        api.seen
            .lock()
            .last_range
            .as_ref()
            .map(|r| (r.key.clone(), r.range_end.clone(), r.limit)),
        Some((vec![0], vec![0], 100))
    );
    let j = get(&app, "/v1/kv?prefix=&keys_only=true").await.json();
    assert_eq!(
        j["kvs"][1],
        json!({"key": "b", "create_revision": 2, "mod_revision": 2, "version": 1, "lease": 0})
    );
}

#[tokio::test]
async fn scan_limits_are_checked() {
    let (_, app) = app();
    let max = Limits::default().scan_page_max;
    assert_eq!(
        get(&app, &format!("/v1/kv?prefix=a&limit={max}"))
            .await
            .status,
        200
    );
    get(&app, &format!("/v1/kv?prefix=a&limit={}", max + 1))
        .await
        .assert_error(400, "limit_too_large");
    get(&app, "/v1/kv?prefix=a&limit=0")
        .await
        .assert_error(400, "invalid_argument");
    get(&app, "/v1/kv?prefix=a&limit=-1")
        .await
        .assert_error(400, "invalid_argument");
    get(&app, "/v1/kv?prefix=a&keys_only=yes")
        .await
        .assert_error(400, "invalid_argument");
}

#[tokio::test]
async fn request_ids_make_puts_idempotent() {
    let (api, app) = app();
    let put = |key: &'static str| {
        Request::builder()
            .method("PUT")
            .uri("/v1/kv/k")
            .header("Idempotency-Key", key)
            .body(Body::from("v"))
            .unwrap()
    };
    let first = send(&app, put("retry-1")).await.json();
    let again = send(&app, put("retry-1")).await.json();
    assert_eq!(first, again);
    assert_eq!(api.revision(), 1);
    send(&app, put("retry-2")).await;
    assert_eq!(api.revision(), 2);

    // The query parameter names the same id as the header.
    call(&app, "PUT", "/v1/kv/k?request_id=retry-2", "v").await;
    assert_eq!(api.revision(), 2);
    let ids: Vec<Option<RequestId>> = api
        .seen
        .lock()
        .write_opts
        .iter()
        .map(|o| o.request_id)
        .collect();
    assert!(ids.iter().all(Option::is_some));
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
    assert_eq!(ids[2], ids[3]);

    let mismatched = Request::builder()
        .method("PUT")
        .uri("/v1/kv/k?request_id=a")
        .header("Idempotency-Key", "b")
        .body(Body::from("v"))
        .unwrap();
    send(&app, mismatched)
        .await
        .assert_error(400, "invalid_argument");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let limits = Limits {
        request_bytes_max: 1024,
        value_bytes_max: 512,
        ..Limits::default()
    };
    let api = FakeApi::with_limits(limits);
    let app = client_router(api.clone());
    call(&app, "PUT", "/v1/kv/big", vec![b'x'; 2048])
        .await
        .assert_error(413, "request_too_large");
    assert_eq!(api.revision(), 0);
    // Under the request limit but over the value limit: the node's own check.
    call(&app, "PUT", "/v1/kv/big", vec![b'x'; 600])
        .await
        .assert_error(400, "value_too_large");
    assert_eq!(
        call(&app, "PUT", "/v1/kv/big", vec![b'x'; 500])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn node_errors_map_to_statuses() {
    let (api, app) = app();
    let cases = [
        (ErrorCode::NotLeader, 503),
        (ErrorCode::Unavailable, 503),
        (ErrorCode::Timeout, 504),
        (ErrorCode::Compacted, 410),
        (ErrorCode::CrossRangeTxn, 400),
        (ErrorCode::WrongCluster, 409),
        (ErrorCode::Corruption, 500),
    ];
    for (code, status) in cases {
        api.fail_next(MeridianError::new(code, "injected"));
        get(&app, "/v1/kv/k")
            .await
            .assert_error(status, code.as_str());
    }
    api.fail_next(MeridianError::new(ErrorCode::KeyTooLarge, "injected"));
    call(&app, "PUT", "/v1/kv/k", "v")
        .await
        .assert_error(400, "key_too_large");
}

#[tokio::test]
async fn every_request_is_observed() {
    let (api, app) = app();
    call(&app, "PUT", "/v1/kv/k", "v").await;
    get(&app, "/v1/kv/k").await;
    get(&app, "/v1/kv?prefix=k").await;
    call(&app, "DELETE", "/v1/kv/k", "").await;
    get(&app, "/v1/kv/k?revision=x").await;
    assert_eq!(
        api.observed(),
        vec![
            ("put", Ok(())),
            ("get", Ok(())),
            ("scan", Ok(())),
            ("delete", Ok(())),
            ("get", Err(ErrorCode::InvalidArgument)),
        ]
    );
}
