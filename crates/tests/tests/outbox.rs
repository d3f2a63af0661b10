//! One transaction across keys and messages (issue 5 item 5) on an in-process cluster: a
//! stream and a queue colocated with the keys change with them, all or nothing; the failure
//! branch's messages go out when the compares fail; a queue in another range is refused with
//! `cross_range_txn`; and under a crash of the range's leader every acknowledged transaction
//! has its key, its one stream message and its one queue message, and none is half-applied.

use meridian_node::outbox::{OutboxMessage, OutboxRequest};
use meridian_node::stream::{CreateStreamRequest, PartitionReadRequest};
use meridian_node::{ClientApi, Node, WriteOptions};
use meridian_state::queue::{QueueConfig, SendMessage};
use meridian_state::stream::{NewMessage, ReadFrom, Retention};
use meridian_state::{
    Compare, CompareOp, CompareTarget, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use meridian_tests::TestCluster;
use meridian_types::{ErrorCode, NodeId, RequestId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn put(k: &str, v: &str) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
        prev_kv: false,
        lease: 0,
        ignore_lease: false,
        ignore_value: false,
    })
}

fn publish(v: &str) -> OutboxMessage {
    OutboxMessage::Publish {
        stream: "orders".into(),
        partition: Some(0),
        message: NewMessage {
            payload: v.as_bytes().to_vec(),
            ..Default::default()
        },
    }
}

fn send(queue: &str, v: &str) -> OutboxMessage {
    OutboxMessage::Send {
        queue: queue.into(),
        message: SendMessage {
            body: v.as_bytes().to_vec(),
            ..Default::default()
        },
    }
}

/// "Create `key` = `v` if it does not exist, and announce it".
fn create_and_announce(key: &str, v: &str) -> OutboxRequest {
    OutboxRequest {
        txn: TxnRequest {
            compare: vec![Compare {
                key: key.as_bytes().to_vec(),
                range_end: Vec::new(),
                op: CompareOp::Equal,
                target: CompareTarget::Version(0),
            }],
            success: vec![put(key, v)],
            failure: vec![],
        },
        success: vec![publish(key), send("ship", key)],
        failure: vec![send("ship", &format!("{key} again"))],
    }
}

async fn setup(n: &Node) {
    n.streams()
        .create(CreateStreamRequest {
            name: "orders".into(),
            partitions: 1,
            retention: Retention::default(),
            placement: None,
            colocate: Some(b"order/".to_vec()),
        })
        .await
        .unwrap();
    n.create_queue("ship", QueueConfig::default(), Some(b"order/"))
        .await
        .unwrap();
    n.create_queue("elsewhere", QueueConfig::default(), None)
        .await
        .unwrap();
}

async fn stream_values(n: &Node) -> Vec<String> {
    let r = n
        .streams()
        .read(PartitionReadRequest {
            stream: "orders".into(),
            partition: 0,
            from: ReadFrom::Earliest,
            group: None,
            max_count: 10_000,
            max_bytes: 1 << 22,
            wait_ms: 0,
        })
        .await
        .unwrap();
    r.messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

/// Every message of queue `ship`, received and acked.
async fn drain_queue(n: &Node) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let got = n
            .receive_messages("ship", 100, Duration::from_millis(200), None)
            .await
            .unwrap();
        if got.is_empty() {
            return out;
        }
        let receipts = got.iter().map(|d| d.receipt).collect();
        n.ack_messages("ship", receipts).await.unwrap();
        out.extend(
            got.iter()
                .map(|d| String::from_utf8_lossy(&d.body).into_owned()),
        );
    }
}

async fn keys(n: &Node, prefix: &str) -> BTreeMap<String, String> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let r = n
        .range(
            RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: end,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    r.kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_and_messages_commit_together() {
    let c = TestCluster::start(3, 2).await.unwrap();
    let (n1, n2) = (c.node(NodeId(1)), c.node(NodeId(2)));
    setup(&n1).await;

    let r = n2
        .txn_with_messages(
            create_and_announce("order/1", "paid"),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(r.txn.succeeded);
    assert_eq!(r.messages.len(), 2);
    // Again: the key exists, so only the failure branch's message goes out.
    let r = n1
        .txn_with_messages(
            create_and_announce("order/1", "paid"),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(!r.txn.succeeded);
    assert_eq!(stream_values(&n2).await, vec!["order/1"]);
    let mut q = drain_queue(&n1).await;
    q.sort();
    assert_eq!(q, vec!["order/1", "order/1 again"]);

    // A bad part (a message to a queue that does not exist) writes nothing at all.
    let mut bad = create_and_announce("order/2", "paid");
    bad.success.push(send("nope", "x"));
    let e = n1
        .txn_with_messages(bad, WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::QueueNotFound, "{e}");
    // A queue in its own range cannot join the keys' transaction.
    let mut cross = create_and_announce("order/2", "paid");
    cross.success.push(send("elsewhere", "x"));
    let e = n1
        .txn_with_messages(cross, WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::CrossRangeTxn, "{e}");
    assert!(e.message.contains("colocate"), "{e}");
    assert!(!keys(&n1, "order/").await.contains_key("order/2"));
    assert_eq!(stream_values(&n1).await.len(), 1);
    assert!(drain_queue(&n2).await.is_empty());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_crash_leaves_no_half_transaction() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let group = {
        let n1 = c.node(NodeId(1));
        setup(&n1).await;
        n1.cluster_map().unwrap().queues["ship"].range.group()
    };

    let leader = c.leader_of(group).expect("a leader");
    // Writers on the other nodes (a crashed node's handle must not outlive it), each
    // transaction retried with its request id until answered.
    let mut tasks = Vec::new();
    for w in (1..=3u64).filter(|w| NodeId(*w) != leader) {
        let n = c.node(NodeId(w));
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..25u64 {
                let key = format!("order/{w}-{i}");
                let opts = WriteOptions {
                    request_id: Some(RequestId(u128::from(w) << 64 | u128::from(i))),
                };
                for _ in 0..40 {
                    match n
                        .txn_with_messages(create_and_announce(&key, "paid"), opts)
                        .await
                    {
                        Ok(r) => {
                            assert!(r.txn.succeeded, "{key}: a retry ran again");
                            acked.push(key.clone());
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.crash(leader).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.restart(leader).await.unwrap();
    let mut acked = BTreeSet::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(!acked.is_empty());
    c.wait_converged(Duration::from_secs(30)).await.unwrap();

    let n = c.node(leader);
    let kv = keys(&n, "order/").await;
    let stream = stream_values(&n).await;
    let queue = drain_queue(&n).await;
    let stream_set: BTreeSet<&String> = stream.iter().collect();
    let queue_set: BTreeSet<&String> = queue.iter().collect();
    assert_eq!(stream.len(), stream_set.len(), "a message published twice");
    assert_eq!(queue.len(), queue_set.len(), "a message sent twice");
    // Whatever committed committed whole: the same orders in the keys, the stream and the queue.
    let kv_set: BTreeSet<&String> = kv.keys().collect();
    assert_eq!(kv_set, stream_set);
    assert_eq!(kv_set, queue_set);
    for k in &acked {
        assert!(kv.contains_key(k), "acknowledged {k} is lost");
    }
    c.shutdown().await;
}
