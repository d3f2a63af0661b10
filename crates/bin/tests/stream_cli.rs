//! Black-box: three real servers; a stream created, published to (an argument, stdin lines, a
//! dedup id) and read with `meridian stream`, from another node; a long poll and the
//! server-sent-event follow over plain HTTP; a consumer group's commit shown by `stream groups`;
//! gRPC publish and follow; `cluster status` naming the stream's ranges.

use meridian_tests::process::start_nodes;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

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
fn streams_from_the_command_line_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, eps) = start_nodes(Path::new(BIN), dir.path(), 3).expect("start nodes");
    let (a, b) = (nodes[0].addr.clone(), nodes[1].addr.clone());
    ok(&meridian(&["cluster", "init", "--endpoints", &eps]));

    let s = |ep: &str, extra: &[&str]| {
        let mut args = vec!["stream", "--endpoints", ep];
        args.extend_from_slice(extra);
        meridian(&args)
    };
    let out = ok(&s(
        &a,
        &[
            "create",
            "orders",
            "--partitions",
            "2",
            "--retention",
            "1h,1M-msgs",
        ],
    ));
    assert!(
        out.contains("created stream orders with 2 partition(s)"),
        "{out}"
    );
    let out = s(&a, &["create", "bad name", "--partitions", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_argument"));
    let list = ok(&s(&b, &["list"]));
    assert!(list.lines().any(|l| l.starts_with("orders")), "{list}");

    // One message with a key, then three lines of stdin to partition 1.
    let out = ok(&s(&a, &["publish", "orders", "hello", "--key", "user-1"]));
    assert!(out.starts_with("partition "), "{out}");
    let mut child = Command::new(BIN)
        .args([
            "stream",
            "--endpoints",
            &a,
            "publish",
            "orders",
            "--partition",
            "1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\ntwo\nthree\n")
        .unwrap();
    let out = ok(&child.wait_with_output().unwrap());
    assert_eq!(out.lines().count(), 3, "{out}");
    // A dedup id: the repeat answers the first offset.
    let first = ok(&s(
        &a,
        &[
            "publish",
            "orders",
            "x",
            "--partition",
            "0",
            "--dedup-id",
            "d1",
        ],
    ));
    let again = ok(&s(
        &a,
        &[
            "publish",
            "orders",
            "x",
            "--partition",
            "0",
            "--dedup-id",
            "d1",
        ],
    ));
    assert_eq!(again.trim(), format!("{} (duplicate)", first.trim()));

    // Read partition 1 through another node.
    let out = ok(&s(&b, &["read", "orders", "--partition", "1"]));
    let values: Vec<&str> = out.lines().filter_map(|l| l.split('\t').nth(3)).collect();
    for v in ["one", "two", "three"] {
        assert!(values.contains(&v), "{out}");
    }
    let out = ok(&s(
        &b,
        &["read", "orders", "--partition", "1", "--from", "latest"],
    ));
    assert!(out.is_empty(), "{out}");

    // Plain HTTP: a long poll wakes up on a publish; the SSE follow streams it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let poll = http
            .get(format!(
                "http://{b}/v1/streams/orders/partitions/0/messages?from=latest&wait_ms=10000"
            ))
            .send();
        let mut sse = http
            .get(format!(
                "http://{b}/v1/streams/orders/partitions/0/follow?from=latest"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(
            sse.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let publish = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            http.post(format!("http://{a}/v1/streams/orders/messages?partition=0"))
                .body(r#"{"value":"ping","headers":{"h":"1"}}"#)
                .header("content-type", "application/json")
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        };
        let (polled, acked) = tokio::join!(poll, publish);
        let polled: Value = polled.unwrap().json().await.unwrap();
        let offset = acked["acks"][0]["offset"].clone();
        assert_eq!(polled["messages"][0]["value"], "ping");
        assert_eq!(polled["messages"][0]["offset"], offset);
        assert_eq!(polled["messages"][0]["headers"]["h"], "1");
        let mut seen = String::new();
        while !seen.contains("ping") {
            let chunk = tokio::time::timeout(Duration::from_secs(10), sse.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream goes on");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(seen.contains(&format!("id: {offset}")), "{seen}");

        // A consumer group joins and commits.
        let hb: Value = http
            .post(format!("http://{a}/v1/streams/orders/groups/g1/heartbeat"))
            .body(r#"{"member":"m1"}"#)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(hb["partitions"].as_array().unwrap().len(), 2, "{hb}");
        let generation = hb["generation"].as_u64().unwrap();
        let commit = |body: String| {
            http.post(format!("http://{a}/v1/streams/orders/groups/g1/commit"))
                .body(body)
                .header("content-type", "application/json")
                .send()
        };
        let r = commit(format!(
            r#"{{"partition":1,"offset":2,"member":"m1","generation":{generation}}}"#
        ))
        .await
        .unwrap();
        assert!(r.status().is_success());
        // A commit in a generation that is over is refused with a stable code.
        let r = commit(format!(
            r#"{{"partition":1,"offset":1,"member":"m1","generation":{}}}"#,
            generation + 1
        ))
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 409);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "stale_generation", "{e}");
        // gRPC: publish through one node, follow through another from that offset.
        use meridian_proto::v1 as pb;
        let mut ga = pb::streams_client::StreamsClient::connect(format!("http://{a}"))
            .await
            .unwrap();
        let mut gb = pb::streams_client::StreamsClient::connect(format!("http://{b}"))
            .await
            .unwrap();
        let acks = ga
            .publish(pb::PublishRequest {
                stream: "orders".into(),
                partition: Some(1),
                messages: vec![pb::Message {
                    value: b"over grpc".to_vec(),
                    ..Default::default()
                }],
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .acks;
        let mut follow = gb
            .follow(pb::ReadRequest {
                stream: "orders".into(),
                partition: 1,
                from: Some(pb::read_request::From::Offset(acks[0].offset)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let m = tokio::time::timeout(Duration::from_secs(10), follow.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.offset, m.value.as_slice()),
            (acks[0].offset, &b"over grpc"[..])
        );
        // gRPC PublishStream through the other node: 200 publishes pipelined over one call,
        // one of them to a stream that does not exist. Every request is answered in order, the
        // bad one with its error and the call goes on; the others land once each, gap-free
        // (their order between them is not promised through a forwarding node).
        let reqs: Vec<pb::PublishRequest> = (0..200u32)
            .map(|i| pb::PublishRequest {
                stream: if i == 100 { "nope" } else { "orders" }.into(),
                partition: Some(0),
                messages: vec![pb::Message {
                    value: format!("piped {i}").into_bytes(),
                    ..Default::default()
                }],
                request_id: String::new(),
            })
            .collect();
        let mut answers = gb
            .publish_stream(futures::stream::iter(reqs))
            .await
            .unwrap()
            .into_inner();
        let mut offsets = Vec::new();
        let mut seq = 0u64;
        while let Some(a) = answers.message().await.unwrap() {
            assert_eq!(a.seq, seq, "answers come in order");
            if seq == 100 {
                let e = a.error.expect("the publish to a missing stream fails");
                assert_eq!(e.code, "stream_not_found", "{e:?}");
            } else {
                assert!(a.error.is_none(), "{a:?}");
                offsets.push(a.acks[0].offset);
            }
            seq += 1;
        }
        assert_eq!(seq, 200, "every request is answered");
        offsets.sort_unstable();
        assert!(
            offsets.windows(2).all(|w| w[1] == w[0] + 1),
            "pipelined publishes take consecutive offsets: {offsets:?}"
        );
        let read = ga
            .read(pb::ReadRequest {
                stream: "orders".into(),
                partition: 0,
                from: Some(pb::read_request::From::Offset(offsets[0])),
                max: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut got: Vec<String> = read
            .messages
            .iter()
            .map(|m| String::from_utf8_lossy(&m.value).into_owned())
            .collect();
        let mut want: Vec<String> = (0..200u32)
            .filter(|i| *i != 100)
            .map(|i| format!("piped {i}"))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let missing = http
            .get(format!("http://{a}/v1/streams/nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
    });
    let out = ok(&s(&b, &["groups", "orders", "g1"]));
    assert!(out.contains("member m1: partitions [0,1]"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "2", "4", "2"]),
        "{out}"
    );

    let status = ok(&meridian(&["cluster", "status", "--endpoints", &eps]));
    assert!(status.contains("stream orders/0"), "{status}");
    assert!(status.contains("stream orders/1"), "{status}");

    assert_eq!(ok(&s(&b, &["delete", "orders"])).trim(), "deleted");
    let out = s(&a, &["read", "orders"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("stream_not_found"));
}
