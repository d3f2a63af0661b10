//! Black-box: three real servers; a work queue with a dead-letter queue created, fed, drained,
//! nacked and dead-lettered with `meridian queue`, and the HTTP routes checked with plain
//! JSON (as curl would send it), and a `/v1/txn` writing a key, a stream message and a queue
//! message together.

use meridian_tests::process::start_nodes;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

fn meridian(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run meridian")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn queues_from_the_command_line_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, eps) = start_nodes(Path::new(BIN), dir.path(), 3).expect("start nodes");
    ok(&meridian(&["cluster", "init", "--endpoints", &eps]));
    let q = |args: &[&str]| {
        let mut v = vec!["queue", "--endpoints", &eps];
        v.extend_from_slice(args);
        meridian(&v)
    };
    // The cluster may still be electing: retry the first call for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = q(&["create", "dead", "--visibility-timeout", "30s"]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = ok(&q(&[
        "create",
        "jobs",
        "--visibility-timeout",
        "500ms",
        "--max-deliveries",
        "2",
        "--dead-letter",
        "dead",
    ]));
    assert!(out.contains("created queue jobs"), "{out}");
    let out = q(&["create", "bad", "--dead-letter", "missing"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("queue_not_found"));
    let list = ok(&q(&["list"]));
    assert!(list.contains("jobs") && list.contains("dead"), "{list}");

    assert!(ok(&q(&["send", "jobs", "hello", "--dedup-id", "h1"])).contains("sent message"));
    assert!(ok(&q(&["send", "jobs", "again", "--dedup-id", "h1"])).contains("duplicate"));
    ok(&q(&["send", "jobs", "poison", "--attr", "kind=bad"]));

    // Receive both as JSON, ack one, nack the other twice: it dies and moves.
    let v: Value = serde_json::from_str(&ok(&q(&[
        "receive", "jobs", "--max", "10", "--wait", "2s", "--output", "json",
    ])))
    .unwrap();
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{v}");
    assert_eq!(msgs[0]["body"], "hello");
    let hello = msgs[0]["receipt"].as_str().unwrap();
    let poison = msgs[1]["receipt"].as_str().unwrap();
    assert!(ok(&q(&["ack", "jobs", hello])).contains("acked"));
    // Acking the same delivery twice is not an error; a stale receipt is.
    assert!(ok(&q(&["ack", "jobs", hello])).contains("already gone"));
    ok(&q(&["nack", "jobs", poison, "--error", "cannot parse"]));
    let out = q(&["ack", "jobs", poison]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("stale_receipt"));
    let again = ok(&q(&["receive", "jobs", "--wait", "2s"]));
    assert!(
        again.contains("delivery 2") && again.contains("poison"),
        "{again}"
    );
    let receipt2 = again.split('\t').next().unwrap().to_string();
    ok(&q(&[
        "nack",
        "jobs",
        &receipt2,
        "--error",
        "still cannot parse",
    ]));
    let v: Value = serde_json::from_str(&ok(&q(&[
        "receive", "dead", "--wait", "10s", "--output", "json",
    ])))
    .unwrap();
    let m = &v["messages"][0];
    assert_eq!(m["body"], "poison", "{v}");
    assert_eq!(m["attributes"]["kind"], "bad");
    assert_eq!(m["attributes"]["meridian.dead_letter.deliveries"], "2");
    assert_eq!(
        m["attributes"]["meridian.dead_letter.last_error"],
        "still cannot parse"
    );
    let stats = ok(&q(&["stats", "jobs"]));
    assert!(stats.contains("dead-lettered 1"), "{stats}");

    // The HTTP routes with plain JSON, as curl would send them.
    let http = |method: &str, path: &str, body: &str| -> (u16, Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let url = format!("http://{}{path}", nodes[1].addr);
            let req = reqwest::Client::new()
                .request(method.parse().unwrap(), url)
                .header("content-type", "application/json")
                .body(body.to_string());
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        })
    };
    let (s, v) = http(
        "POST",
        "/v1/queues/jobs/messages",
        r#"{"messages":[{"body":"a","group":"g"},{"body":"/w==","encoding":"base64","group":"g"}]}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
    let (s, v) = http("POST", "/v1/queues/jobs/receive?max=10&wait_ms=1000", "");
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["messages"].as_array().unwrap().len(),
        1,
        "one per group: {v}"
    );
    let r = v["messages"][0]["receipt"].as_str().unwrap().to_string();
    let (s, v) = http(
        "POST",
        "/v1/queues/jobs/extend",
        &format!(r#"{{"receipt":"{r}","timeout_ms":60000}}"#),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = http("GET", "/v1/queues/jobs", "");
    assert_eq!(s, 200);
    assert_eq!(v["stats"]["in_flight"], 1, "{v}");
    let (s, v) = http("GET", "/v1/queues/nope/stats", "");
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("queue_not_found"))
    );
    let (s, v) = http("POST", "/v1/queues/jobs/ack", r#"{"receipts":["x"]}"#);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );

    // One transaction across a key, a stream and a queue colocated with it (the outbox).
    let (s, v) = http(
        "POST",
        "/v1/streams",
        r#"{"name":"orders","colocate":"order/"}"#,
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = http("PUT", "/v1/queues/ship", r#"{"colocate":"order/"}"#);
    assert_eq!(s, 200, "{v}");
    let txn = r#"{"compare":[{"key":"order/7","target":"version","op":"=","value":0}],
        "success":[{"put":{"key":"order/7","value":"paid"}},
                   {"publish":{"stream":"orders","key":"order/7","value":"order 7 paid"}},
                   {"send":{"queue":"ship","body":"ship order 7"}}],
        "failure":[{"get":{"key":"order/7"}}]}"#;
    let (s, v) = http("POST", "/v1/txn", txn);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["succeeded"], true, "{v}");
    let r = &v["responses"];
    assert!(r[0]["put"]["revision"].as_u64().is_some(), "{v}");
    assert_eq!(r[1]["publish"]["offset"], 0, "{v}");
    assert_eq!(r[2]["send"]["queue"], "ship", "{v}");
    let (s, v) = http("POST", "/v1/txn", txn);
    assert_eq!((s, &v["succeeded"]), (200, &Value::Bool(false)), "{v}");
    let (s, v) = http("GET", "/v1/streams/orders/partitions/0/messages", "");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["messages"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["messages"][0]["value"], "order 7 paid");
    let (s, v) = http("POST", "/v1/queues/ship/receive?max=10&wait_ms=1000", "");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["messages"][0]["body"], "ship order 7", "{v}");
    // A queue in its own range cannot join: nothing is written.
    let (s, v) = http(
        "POST",
        "/v1/txn",
        r#"{"success":[{"put":{"key":"order/8","value":"x"}},{"send":{"queue":"jobs","body":"x"}}]}"#,
    );
    assert_eq!(v["error"]["code"], "cross_range_txn", "{s} {v}");
    let (s, _) = http("GET", "/v1/kv/order/8", "");
    assert_eq!(s, 404);

    assert!(ok(&q(&["delete", "jobs"])).contains("deleted queue jobs"));

    // The gRPC service on the same port.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use meridian_proto::v1 as pb;
        let mut c = pb::queues_client::QueuesClient::connect(format!("http://{}", nodes[2].addr))
            .await
            .unwrap();
        let spec = c
            .create_queue(pb::CreateQueueRequest {
                name: "grpc".into(),
                visibility_timeout_ms: Some(5000),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(spec.config.unwrap().visibility_timeout_ms, 5000);
        let sent = c
            .send(pb::SendRequest {
                queue: "grpc".into(),
                messages: vec![pb::QueueMessage {
                    body: b"over grpc".to_vec(),
                    ..Default::default()
                }],
            })
            .await
            .unwrap()
            .into_inner();
        let got = c
            .receive(pb::ReceiveRequest {
                queue: "grpc".into(),
                max: 5,
                wait_ms: 2000,
                visibility_timeout_ms: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.messages.len(), 1);
        assert_eq!(got.messages[0].id, sent.messages[0].id);
        assert_eq!(got.messages[0].body, b"over grpc");
        let acked = c
            .ack(pb::AckRequest {
                queue: "grpc".into(),
                receipts: vec![got.messages[0].receipt.clone()],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(acked.results[0].acked);
        let e = c
            .get_queue(pb::QueueName {
                name: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
    });
    let metrics = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut all = String::new();
            for n in &nodes {
                let url = format!("http://{}/metrics", n.addr);
                all.push_str(&reqwest::get(url).await.unwrap().text().await.unwrap());
            }
            all
        })
    };
    assert!(
        metrics.contains("meridian_queue_dead_lettered_messages"),
        "queue gauges exported"
    );
}
