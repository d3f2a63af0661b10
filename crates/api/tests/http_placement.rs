//! `/v1/placement`: set, get, list and delete rules, their errors, and the rules in
//! `/v1/cluster`, in-process against the fake (which checks rules with the real `validate_rule`
//! on a five-node, three-region map).

mod common;

use common::FakeApi;
use common::http::{call, get};
use meridian_api::client_router;
use serde_json::json;

fn app() -> (FakeApi, axum::Router) {
    let api = FakeApi::default();
    (api.clone(), client_router(api))
}

#[tokio::test]
async fn set_get_list_and_delete_a_rule() {
    let (api, app) = app();
    let body = json!({"replicas": 3, "regions": ["eu-west", "us-east", "ap-south"],
                      "survival": "region", "leader_regions": ["eu-west", "us-east"]});
    let r = call(&app, "PUT", "/v1/placement/eu/", body.to_string()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        json!({"prefix": "eu/", "replicas": 3, "regions": ["eu-west", "us-east", "ap-south"],
               "zones": [], "survival": "region", "leader_regions": ["eu-west", "us-east"],
               "ranges": [2], "implicit": false})
    );
    assert!(api.map.lock().placements.contains_key(b"eu/".as_slice()));

    let r = get(&app, "/v1/placement/eu/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["leader_regions"], json!(["eu-west", "us-east"]));

    // The list starts with the implicit default, which governs the other ranges.
    let j = get(&app, "/v1/placement").await.json();
    let rules = j["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0]["prefix"], "");
    assert_eq!(rules[0]["implicit"], true);
    assert_eq!(rules[0]["ranges"], json!([1, 3]));
    assert_eq!(rules[1]["prefix"], "eu/");

    // /v1/cluster carries the rules too.
    let j = get(&app, "/v1/cluster").await.json();
    assert_eq!(j["placements"][1]["prefix"], "eu/");

    let r = call(&app, "DELETE", "/v1/placement/eu/", "").await;
    assert_eq!(r.json(), json!({"deleted": true}));
    let r = call(&app, "DELETE", "/v1/placement/eu/", "").await;
    assert_eq!(r.json(), json!({"deleted": false}));
    get(&app, "/v1/placement/eu/")
        .await
        .assert_error(404, "key_not_found");
}

#[tokio::test]
async fn the_default_rule_is_the_empty_prefix() {
    let (api, app) = app();
    let j = get(&app, "/v1/placement/").await.json();
    assert_eq!(j["implicit"], true);
    assert_eq!(j["replicas"], 3);
    assert_eq!(j["survival"], "region");
    let r = call(&app, "PUT", "/v1/placement/", r#"{"replicas": 5}"#).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(
        (j["prefix"].as_str(), j["survival"].as_str(), &j["ranges"]),
        (Some(""), Some("zone"), &json!([1, 2, 3]))
    );
    assert!(api.map.lock().placements.contains_key(&Vec::new()));
    let j = get(&app, "/v1/placement/").await.json();
    assert_eq!(
        (j["implicit"].as_bool(), j["replicas"].as_u64()),
        (Some(false), Some(5))
    );
    let r = call(&app, "DELETE", "/v1/placement/", "").await;
    assert_eq!(r.json(), json!({"deleted": true}));
}

#[tokio::test]
async fn prefixes_may_be_base64() {
    let (api, app) = app();
    // "\xff/" is not UTF-8.
    let r = call(
        &app,
        "PUT",
        "/v1/placement/%2Fy8%3D?encoding=base64",
        r#"{"replicas": 3}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(api.map.lock().placements.contains_key(b"\xff/".as_slice()));
    get(&app, "/v1/placement/***?encoding=base64")
        .await
        .assert_error(400, "invalid_argument");
}

#[tokio::test]
async fn unsatisfiable_rules_say_what_is_missing() {
    let (api, app) = app();
    let cases = [
        (
            json!({"replicas": 5, "regions": ["us-east", "eu-west"]}),
            "rule wants 5 replicas but only 4 active nodes are in regions [us-east, eu-west]",
        ),
        (
            json!({"replicas": 3, "regions": ["us-east", "mars"]}),
            "region \"mars\" has no active node",
        ),
        (
            json!({"replicas": 3, "regions": ["us-east", "eu-west"], "survival": "region"}),
            "needs at least 3 regions with enough nodes; the eligible nodes are in 2 regions",
        ),
        (
            json!({"replicas": 3, "zones": ["us-east/c"]}),
            "zone \"us-east/c\" has no active node",
        ),
    ];
    for (body, want) in cases {
        let r = call(&app, "PUT", "/v1/placement/eu/", body.to_string()).await;
        r.assert_error(400, "placement_unsatisfiable");
        let msg = r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
    }
    assert!(api.map.lock().placements.is_empty());
}

#[tokio::test]
async fn malformed_rules_are_invalid_arguments() {
    let (api, app) = app();
    for bad in [
        "",
        "[]",
        "{",
        r#"{}"#,
        r#"{"replicas": 4}"#,
        r#"{"replicas": -1}"#,
        r#"{"replicas": 3, "survival": "planet"}"#,
        r#"{"replicas": 3, "region": ["us-east"]}"#,
        r#"{"replicas": 3, "regions": ["us-east"], "leader_regions": ["eu-west"]}"#,
        r#"{"replicas": 3, "regions": ["us-east", "us-east"]}"#,
    ] {
        let r = call(&app, "PUT", "/v1/placement/p/", bad).await;
        r.assert_error(400, "invalid_argument");
    }
    let long = "k".repeat(1025);
    call(
        &app,
        "PUT",
        &format!("/v1/placement/{long}"),
        r#"{"replicas": 3}"#,
    )
    .await
    .assert_error(400, "invalid_argument");
    call(
        &app,
        "PUT",
        "/v1/placement/p/?colour=red",
        r#"{"replicas": 3}"#,
    )
    .await
    .assert_error(400, "invalid_argument");
    assert!(api.map.lock().placements.is_empty());
    // The list takes no prefix: 405 on a PUT there.
    call(&app, "PUT", "/v1/placement", r#"{"replicas": 3}"#)
        .await
        .assert_error(405, "invalid_argument");
}
