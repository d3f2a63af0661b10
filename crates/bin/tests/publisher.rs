//! Black-box: `meridian_client::Publisher` against three real servers. 64 tasks publish
//! concurrently over one publisher (one `PublishStream` call): every publish gets its own ack,
//! the offsets are gap-free and each task's messages are in its order; a refused publish fails
//! alone and the call goes on; when the node the publisher talks to is killed, waiting publishes
//! fail with a code instead of hanging, and after its restart the same publisher works again.

use meridian_client::Publisher;
use meridian_proto::v1 as pb;
use meridian_tests::process::start_nodes;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");
const TASKS: usize = 64;
const PER_TASK: usize = 25;

fn meridian(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run meridian");
    assert!(
        out.status.success(),
        "meridian {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn request(stream: &str, value: String) -> pb::PublishRequest {
    pb::PublishRequest {
        stream: stream.into(),
        partition: Some(0),
        messages: vec![pb::Message {
            value: value.into_bytes(),
            ..Default::default()
        }],
        request_id: String::new(),
    }
}

#[test]
fn concurrent_publishes_share_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, eps) = start_nodes(Path::new(BIN), dir.path(), 3).expect("start nodes");
    meridian(&["cluster", "init", "--endpoints", &eps]);
    meridian(&[
        "stream",
        "--endpoints",
        &nodes[0].addr,
        "create",
        "events",
        "--partitions",
        "1",
    ]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = nodes[1].addr.clone();
    let publisher = rt.block_on(async {
        let url = meridian_client::parse_endpoint(&addr).unwrap();
        let ch = meridian_client::lazy_channel(&url, Duration::from_secs(2)).unwrap();
        Publisher::new(&url, ch, Duration::from_secs(3))
    });

    // 64 tasks, each publishing its messages one at a time, all over the one publisher.
    let acked: Vec<(usize, usize, u64)> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..TASKS {
            let p = publisher.clone();
            tasks.spawn(async move {
                let mut got = Vec::new();
                for i in 0..PER_TASK {
                    let acks = p
                        .publish(request("events", format!("{t}:{i}")))
                        .await
                        .unwrap_or_else(|e| panic!("task {t} publish {i}: {e}"));
                    assert_eq!(acks.len(), 1, "one ack per message");
                    got.push((t, i, acks[0].offset));
                }
                got
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            all.extend(r.unwrap());
        }
        all
    });
    let mut offsets: Vec<u64> = acked.iter().map(|a| a.2).collect();
    offsets.sort_unstable();
    let first = offsets[0];
    assert_eq!(
        offsets,
        (first..first + (TASKS * PER_TASK) as u64).collect::<Vec<_>>(),
        "every publish took its own offset, gap-free"
    );

    // Read the partition back: each task's messages are at the offsets it was told, in its order.
    let read: BTreeMap<u64, String> = rt.block_on(async {
        let mut c = pb::streams_client::StreamsClient::connect(format!("http://{}", nodes[0].addr))
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        let mut from = first;
        while out.len() < TASKS * PER_TASK {
            let r = c
                .read(pb::ReadRequest {
                    stream: "events".into(),
                    partition: 0,
                    from: Some(pb::read_request::From::Offset(from)),
                    max: 1000,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(!r.messages.is_empty(), "read stopped at {from}");
            for m in r.messages {
                from = m.offset + 1;
                out.insert(m.offset, String::from_utf8(m.value).unwrap());
            }
        }
        out
    });
    for (t, i, offset) in &acked {
        assert_eq!(
            read[offset],
            format!("{t}:{i}"),
            "the message at offset {offset}"
        );
    }

    rt.block_on(async {
        // A refused publish fails alone, with its code; the call goes on.
        let e = publisher
            .publish(request("nope", "x".into()))
            .await
            .expect_err("no such stream");
        assert_eq!(e.code(), "stream_not_found", "{e}");
        publisher
            .publish(request("events", "after the error".into()))
            .await
            .expect("the call goes on after a refused publish");
    });

    // The node goes away: a publish fails with a code within the publish timeout.
    nodes[1].kill9();
    let started = Instant::now();
    let e = rt
        .block_on(publisher.publish(request("events", "while down".into())))
        .expect_err("the node is down");
    assert!(
        matches!(e.code(), "unavailable" | "timeout"),
        "a down node is unavailable or a timeout, not {e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");

    // Back again: the same publisher opens a new call.
    nodes[1].restart().expect("restart");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rt.block_on(publisher.publish(request("events", "after the restart".into()))) {
            Ok(acks) => {
                assert!(acks[0].offset > *offsets.last().unwrap());
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert!(
                    matches!(e.code(), "unavailable" | "timeout" | "not_initialized"),
                    "while the node comes back: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("the publisher did not recover after the restart: {e}"),
        }
    }
}
