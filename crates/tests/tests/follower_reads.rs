//! Follower reads in an in-process cluster: a `bounded` read is served by a follower that can
//! prove its staleness, and reports it; a follower cut off from its leader stops serving
//! bounded reads once its proof ages past the bound (the read goes to the leader, or fails —
//! never stale); session tokens (`min_revision`) give read-your-writes at followers; a follower
//! serves a linearizable read itself once it has the leader's read index, and a cut-off
//! follower never serves one.

use meridian_node::{ClientApi, Consistency, Node, RangeRead, ReadOptions};
use meridian_state::RangeRequest;
use meridian_tests::{TestCluster, wait_until};
use meridian_transport::LinkRule;
use meridian_types::{ErrorCode, GroupId, MeridianError, NodeId};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn bounded(ms: u64) -> Consistency {
    Consistency::Bounded(Duration::from_millis(ms))
}

async fn read(
    node: &Node,
    key: &str,
    consistency: Consistency,
    min_revision: u64,
) -> Result<RangeRead, MeridianError> {
    let req = RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    let opts = ReadOptions {
        consistency,
        min_revision,
    };
    node.range_read(req, opts).await
}

fn value(r: &RangeRead) -> Option<String> {
    r.resp
        .kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

/// The one user range's group, its leader and a follower.
fn roles(c: &TestCluster) -> (GroupId, NodeId, NodeId) {
    let group = c
        .groups()
        .into_iter()
        .find(|g| !g.is_meta())
        .expect("a user range");
    let leader = c.leader_of(group).expect("a leader");
    let follower = *c.ids.iter().find(|n| **n != leader).expect("a follower");
    (group, leader, follower)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bounded_read_is_served_by_a_follower_with_its_staleness() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let (_, leader, follower) = roles(&c);
    c.put(leader, "k", "v1").await.unwrap();
    let f = c.node(follower);
    // Served by the follower itself once it holds a proof covering the write: a follower
    // reports a bound of at least 1 ms (the leader reports 0).
    wait_until("a follower-served bounded read", T, || async {
        match read(&f, "k", bounded(5000), 0).await {
            Ok(r) => {
                value(&r).as_deref() == Some("v1")
                    && r.staleness_ms.is_some_and(|ms| ms > 0 && ms <= 5000)
            }
            Err(_) => false,
        }
    })
    .await
    .unwrap();
    // Linearizable and lease reads report 0, whichever node they enter by.
    for c_ in [Consistency::Linearizable, Consistency::Lease] {
        let r = read(&f, "k", c_, 0).await.unwrap();
        assert_eq!(r.staleness_ms, Some(0), "{c_:?}");
        assert_eq!(value(&r).as_deref(), Some("v1"));
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_follower_never_serves_a_stale_bounded_read() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let (group, leader, follower) = roles(&c);
    c.put(leader, "k", "old").await.unwrap();
    c.wait_converged(T).await.unwrap();
    let f = c.node(follower);
    wait_until("the follower to prove a bound", T, || async {
        f.group(group).and_then(|g| g.staleness_bound()).is_some()
    })
    .await
    .unwrap();

    c.isolate(follower);
    // The majority goes on writing.
    wait_until("a write on the majority side", T, || async {
        c.put(leader, "k", "new").await.is_ok()
    })
    .await
    .unwrap();
    // The follower's last proof ages past 1 s.
    wait_until("the follower's proof to age past 1 s", T, || async {
        f.group(group)
            .and_then(|g| g.staleness_bound())
            .is_none_or(|d| d > Duration::from_millis(1000))
    })
    .await
    .unwrap();

    for attempt in 0..2 {
        match read(&f, "k", bounded(1000), 0).await {
            Ok(r) => panic!(
                "attempt {attempt}: an isolated follower served a bounded:1000 read: {:?} \
                 (staleness {:?})",
                value(&r),
                r.staleness_ms
            ),
            Err(e) => assert!(
                matches!(
                    e.code,
                    ErrorCode::Timeout | ErrorCode::Unavailable | ErrorCode::TooStale
                ),
                "{e}"
            ),
        }
    }
    // A local read serves whatever the replica has, and says it cannot bound it tightly.
    let r = read(&f, "k", Consistency::Local, 0).await.unwrap();
    assert_eq!(value(&r).as_deref(), Some("old"));
    assert!(r.staleness_ms.is_none_or(|ms| ms > 1000), "{r:?}");

    c.heal();
    wait_until("the healed follower to serve the new value", T, || async {
        read(&f, "k", bounded(1000), 0)
            .await
            .is_ok_and(|r| value(&r).as_deref() == Some("new"))
    })
    .await
    .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_tokens_read_your_writes_at_a_lagging_follower() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let (_, leader, follower) = roles(&c);
    // The follower hears from the leader late, so it often lags the client's last write.
    c.set_link(
        leader,
        follower,
        LinkRule {
            delay: Duration::from_millis(40),
            ..Default::default()
        },
    );
    let f = c.node(follower);
    let redirected = std::sync::atomic::AtomicU64::new(0);
    for i in 0..10 {
        let v = format!("v{i}");
        let rev = c.put(leader, "k", &v).await.unwrap();
        // Every read carrying the token sees the write: at first the leader serves it (the
        // follower has not reached the token), then, once it catches up, the follower.
        wait_until("the follower to serve the client's write", T, || async {
            let mut by_follower = true;
            for consistency in [bounded(60_000), Consistency::Local] {
                let r = read(&f, "k", consistency, rev).await.unwrap();
                assert_eq!(
                    value(&r),
                    Some(v.clone()),
                    "read {i} ({consistency}) with token {rev}"
                );
                assert!(r.resp.revision >= rev);
                by_follower &= r.staleness_ms != Some(0);
            }
            if !by_follower {
                redirected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            by_follower
        })
        .await
        .unwrap();
    }
    let redirected = redirected.into_inner();
    tracing::info!(redirected, "token reads the follower sent to the leader");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_serves_linearizable_reads_itself_sharing_read_index_calls() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let (_, leader, follower) = roles(&c);
    let f = c.node(follower);
    let m = f.metrics();
    for i in 0..5 {
        // Written through the leader, read at once through the follower: linearizable means
        // the follower waits until it has applied the write.
        let v = format!("v{i}");
        c.put(leader, "k", &v).await.unwrap();
        let r = read(&f, "k", Consistency::Linearizable, 0).await.unwrap();
        assert_eq!(value(&r).as_deref(), Some(v.as_str()));
    }
    assert_eq!(m.follower_linearizable_reads.get(), 5);

    // Many reads at once share calls to the leader.
    let forwards_before = m.forwards.get();
    let reads: Vec<_> = (0..200)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { read(&f, "k", Consistency::Linearizable, 0).await })
        })
        .collect();
    for r in reads {
        let r = r.await.unwrap().unwrap();
        assert_eq!(value(&r).as_deref(), Some("v4"));
    }
    assert_eq!(m.follower_linearizable_reads.get(), 205);
    let calls = m.forwards.get() - forwards_before;
    assert!(calls < 100, "200 reads made {calls} calls to the leader");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_follower_never_serves_a_linearizable_read() {
    let c = TestCluster::start(3, 1).await.unwrap();
    let (_, leader, follower) = roles(&c);
    c.put(leader, "k", "old").await.unwrap();
    c.wait_converged(T).await.unwrap();
    let f = c.node(follower);
    c.isolate(follower);
    wait_until("a write on the majority side", T, || async {
        c.put(leader, "k", "new").await.is_ok()
    })
    .await
    .unwrap();
    match read(&f, "k", Consistency::Linearizable, 0).await {
        Ok(r) => panic!(
            "an isolated follower served a linearizable read: {:?}",
            value(&r)
        ),
        Err(e) => assert!(
            matches!(e.code, ErrorCode::Timeout | ErrorCode::Unavailable),
            "{e}"
        ),
    }
    c.heal();
    wait_until("the healed follower to serve the new value", T, || async {
        read(&f, "k", Consistency::Linearizable, 0)
            .await
            .is_ok_and(|r| value(&r).as_deref() == Some("new"))
    })
    .await
    .unwrap();
    c.shutdown().await;
}
