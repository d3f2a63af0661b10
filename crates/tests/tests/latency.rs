//! In-process cluster: the prober fills every node's round-trip matrix (its own row and the rows
//! its peers report), `cluster_view` shows it with per-node health, the metrics carry it, and a
//! cut-off peer turns unhealthy.

use meridian_node::ClientApi;
use meridian_node::probe::PEER_LIVE_WITHIN;
use meridian_tests::{TestCluster, wait_until};
use meridian_transport::LinkRule;
use meridian_types::NodeId;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probes_fill_the_matrix_and_health() {
    let c = TestCluster::start(3, 1).await.unwrap();
    // 20 ms each way between nodes 1 and 3: a round trip of at least 40 ms.
    let slow = LinkRule {
        delay: Duration::from_millis(20),
        ..Default::default()
    };
    c.set_link(NodeId(1), NodeId(3), slow.clone());
    c.set_link(NodeId(3), NodeId(1), slow);
    let n1 = c.node(NodeId(1));
    // Every ordered pair, as node 1 knows it, with a few samples taken after the delay was set.
    wait_until("node 1 knows the whole matrix", T, || async {
        let v = n1.cluster_view().await.unwrap();
        let full = v.latency.len() == 6 && v.latency.iter().all(|e| e.samples >= 3);
        full && v
            .latency
            .iter()
            .all(|e| e.from != 1 || e.to != 3 || e.ewma_ms >= 30.0)
    })
    .await
    .unwrap();
    let v = n1.cluster_view().await.unwrap();
    assert!(v.nodes.iter().all(|n| n.healthy), "{:?}", v.nodes);
    for e in &v.latency {
        assert_ne!(e.from, e.to);
        if e.from == 1 {
            assert_eq!(e.age_ms, 0, "node 1's own row is current");
        }
        let far = (e.from == 1 && e.to == 3) || (e.from == 3 && e.to == 1);
        // The p99 holds the largest recent sample: every probe on the slow link took ≥ 40 ms.
        if far && e.from == 1 {
            assert!(e.p99_ms >= 40.0, "{e:?}");
        }
        if !far {
            assert!(e.ewma_ms < 40.0, "{e:?}");
        }
    }
    let m = n1.metrics().encode();
    assert!(m.contains("meridian_peer_rtt_seconds{peer=\"3\"}"), "{m}");
    assert!(
        m.contains("meridian_peer_rtt_p99_seconds{peer=\"2\"}"),
        "{m}"
    );

    // Cut node 3 off: node 1 stops hearing from it, counts failed probes, marks it unhealthy.
    c.isolate(NodeId(3));
    wait_until("node 3 unhealthy", PEER_LIVE_WITHIN + T, || async {
        let v = n1.cluster_view().await.unwrap();
        v.nodes.iter().any(|n| n.id == 3 && !n.healthy)
    })
    .await
    .unwrap();
    let v = n1.cluster_view().await.unwrap();
    assert!(
        v.nodes.iter().all(|n| n.healthy == (n.id != 3)),
        "{:?}",
        v.nodes
    );
    assert!(n1.latency().failures_in_row(NodeId(3)) > 0);
    assert!(
        n1.metrics()
            .encode()
            .contains("meridian_peer_probe_failures_total{peer=\"3\"}")
    );
    c.heal();
    c.shutdown().await;
}
