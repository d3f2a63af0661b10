//! Black-box: three real `meridian server` processes on loopback, one per region, with a
//! simulated WAN (`--wan`). Every node's probes must measure at least the table's round trip
//! between each pair of regions, `meridian cluster latency` must show it, and writes must work.

use meridian_node::ClusterView;
use meridian_tests::process::{ServerOptions, ServerProcess};
use meridian_transport::WanTable;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

/// No jitter, so every round trip is at least the table's.
const WAN: &str = "us-east:eu-west=75ms,us-east:ap-south=190ms,eu-west:ap-south=120ms,local=1ms";

/// ServerProcess puts node i in region `["us-east", "eu-west", "ap-south"][(i - 1) % 3]`.
const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];

async fn view(http: &reqwest::Client, addr: &str) -> Option<ClusterView> {
    http.get(format!("http://{addr}/v1/cluster"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_measure_the_simulated_wan_and_writes_work() {
    let dir = tempfile::tempdir().unwrap();
    let table = WanTable::parse(WAN).unwrap();
    let opts = ServerOptions {
        args: vec!["--wan".into(), WAN.into()],
        ..Default::default()
    };
    let nodes: Vec<ServerProcess> = (1..=3)
        .map(|i| {
            let d = dir.path().join(format!("node{i}"));
            ServerProcess::start_with(Path::new(BIN), i, &d, None, opts.clone()).expect("start")
        })
        .collect();
    let eps: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let out = Command::new(BIN)
        .args([
            "cluster",
            "init",
            "--endpoints",
            &eps.join(","),
            "--ranges",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // Writes go through whichever node; leaders are a WAN round trip or two away.
    for (i, ep) in eps.iter().enumerate() {
        let r = http
            .put(format!("http://{ep}/v1/kv/wan{i}"))
            .body(format!("v{i}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "put via {ep}: {}", r.status());
    }

    // Node 1 learns the whole matrix: its own row and the rows of nodes 2 and 3.
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        if let Some(v) = view(&http, &eps[0]).await
            && v.latency.len() == 6
            && v.latency.iter().all(|e| e.samples >= 2)
        {
            break v;
        }
        assert!(Instant::now() < deadline, "the matrix did not fill in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(v.nodes.iter().all(|n| n.healthy), "{:?}", v.nodes);
    for e in &v.latency {
        let (a, b) = (
            REGIONS[(e.from as usize - 1) % 3],
            REGIONS[(e.to as usize - 1) % 3],
        );
        let want = table.link(a, b).unwrap().rtt.as_secs_f64() * 1e3;
        // Lower bounds only: a loaded machine adds, never removes.
        assert!(e.ewma_ms >= want, "{a}->{b}: {e:?} < {want} ms");
        assert!(e.p99_ms >= want, "{a}->{b}: {e:?} < {want} ms");
    }

    let out = Command::new(BIN)
        .args([
            "cluster",
            "latency",
            "--endpoints",
            &eps[0],
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cell = j["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["from"] == "us-east" && c["to"] == "ap-south")
        .cloned()
        .unwrap();
    assert!(cell["mean_ewma_ms"].as_f64().unwrap() >= 190.0, "{cell}");
    let out = Command::new(BIN)
        .args(["cluster", "latency", "--endpoints", &eps[0]])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("REGIONS") && text.contains("ap-south"),
        "{text}"
    );

    // Reads see the writes, linearizably, from the farthest node.
    for i in 0..3 {
        let r: serde_json::Value = http
            .get(format!("http://{}/v1/kv/wan{i}", eps[2]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["value"], format!("v{i}"), "{r}");
    }
    drop(nodes);
}
