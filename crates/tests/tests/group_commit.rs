//! In-process cluster: a range leader keeps one write batch in flight while its quorum is close,
//! and pipelines batches once the quorum is a slow link away, with every acknowledged write kept.

use meridian_node::Consistency;
use meridian_tests::{TestCluster, wait_until};
use meridian_transport::LinkRule;
use meridian_types::{GroupId, NodeId};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
/// The probes see a slower link within `RTT_MIN_OF_LAST` (16) one-second probes.
const SEE_SLOW_LINKS: Duration = Duration::from_secs(120);
const WRITERS: usize = 32;

/// `WRITERS` concurrent writers, `rounds` puts each, through `via`; returns the keys written.
async fn write_round(c: &Arc<TestCluster>, via: NodeId, tag: &str, rounds: usize) -> Vec<String> {
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (c, tag) = (c.clone(), tag.to_string());
            tokio::spawn(async move {
                let mut keys = Vec::new();
                for r in 0..rounds {
                    let key = format!("{tag}/{w}/{r}");
                    c.put(via, &key, &key).await.unwrap();
                    keys.push(key);
                }
                keys
            })
        })
        .collect();
    let mut keys = Vec::new();
    for t in tasks {
        keys.extend(t.await.unwrap());
    }
    keys
}

/// Delays every node-to-node message by `delay`.
fn set_links(c: &TestCluster, delay: Duration) {
    for &a in &c.ids {
        for &b in &c.ids {
            if a != b {
                let rule = LinkRule {
                    delay,
                    ..Default::default()
                };
                c.set_link(a, b, rule);
            }
        }
    }
}

fn pipelined(c: &TestCluster) -> u64 {
    c.running()
        .iter()
        .map(|&id| c.node(id).metrics().group_commit_pipelined.get())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_pipeline_only_over_a_slow_quorum() {
    let c = Arc::new(TestCluster::start(3, 1).await.unwrap());
    let range = *c.groups().iter().find(|g| **g != GroupId::META).unwrap();
    let leader = c.leader_of(range).unwrap();
    // In-process links answer in microseconds, well under the 2 ms from which batches pipeline:
    // one batch at a time, however many writers. (A machine so busy that every recent probe took
    // 2 ms would make the links look slow.)
    let l = c.node(leader).latency().clone();
    wait_until("the leader to probe its peers", T, || async {
        c.ids
            .iter()
            .all(|&p| p == leader || l.rtt(p).is_some_and(|r| r.samples >= 2))
    })
    .await
    .unwrap();
    let mut keys = write_round(&c, leader, "near", 10).await;
    let near = c
        .ids
        .iter()
        .all(|&p| p == leader || l.min_rtt(p).is_some_and(|d| d < Duration::from_millis(2)));
    if near {
        assert_eq!(pipelined(&c), 0, "batches pipelined over fast links");
    } else {
        eprintln!("the machine is too busy to tell fast links: {:?}", l.all());
    }
    // 10 ms each way: the quorum is 20 ms away once the probes have seen it.
    set_links(&c, Duration::from_millis(10));
    let far = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut round = 0;
    wait_until(
        "batches to pipeline over the slow links",
        SEE_SLOW_LINKS,
        || {
            round += 1;
            let (c, far, tag) = (c.clone(), far.clone(), format!("far{round}"));
            async move {
                let leader = c.leader_of(range).unwrap_or(NodeId(1));
                let written = write_round(&c, leader, &tag, 2).await;
                far.lock().unwrap().extend(written);
                pipelined(&c) > 0
            }
        },
    )
    .await
    .unwrap();
    keys.extend(far.lock().unwrap().drain(..));
    // Every acknowledged write is there, on every replica.
    c.wait_converged(T).await.unwrap();
    for key in keys.iter().step_by(keys.len() / 40 + 1) {
        c.assert_value(NodeId(2), key, Consistency::Linearizable, Some(key))
            .await;
    }
}
