//! Losing a whole region. Six real `meridian server` processes in three regions (two each) talk
//! over the simulated WAN (`--wan`: us-east↔eu-west 75 ms, us-east↔ap-south 190 ms,
//! eu-west↔ap-south 120 ms). Every range keeps one replica per region (region survival) and
//! its leader in us-east (the home region), eu-west next. While clients record a Jepsen-shaped
//! history, both us-east nodes are killed with SIGKILL; writes must resume through the other
//! regions, and when us-east comes back the leaders must return to it. Then the history must be
//! linearizable per key with no acknowledged write lost.
//!
//! The test prints the figures (how long writes stopped, how long failback took); it asserts
//! only generous functional bounds (`RESUME_DEADLINE`, `FAILBACK_DEADLINE`), never speed.
//!
//! | variable | default | what |
//! |---|---|---|
//! | `MERIDIAN_BIN` | `target/<profile>/meridian` | the server binary |
//! | `MERIDIAN_REGION_LOSS_KEEP` | unset | keep the run's directory (history, report, logs) |

use meridian_node::ClusterView;
use meridian_tests::checker::check_file;
use meridian_tests::jepsen::HistoryWriter;
use meridian_tests::process::{ServerOptions, ServerProcess, server_bin};
use meridian_tests::workload::{self, Keys, WorkloadConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The WAN: round trips between regions, 1–2 ms within one.
const WAN: &str =
    "us-east:eu-west=75ms,us-east:ap-south=190ms,eu-west:ap-south=120ms,local=1.5ms~0.5ms";
const HOME: &str = "us-east";
/// Nodes 1..=6; `ServerProcess` puts node `i` in region `(i - 1) % 3`.
const NODES: u64 = 6;
const RANGES: u32 = 2;
const CLIENTS: usize = 4;
/// Functional bounds only (the figures are printed): writes must come back, leaders must return.
const RESUME_DEADLINE: Duration = Duration::from_secs(30);
const FAILBACK_DEADLINE: Duration = Duration::from_secs(60);
/// How long the region stays down.
const OUTAGE: Duration = Duration::from_secs(10);

fn region_of(id: u64) -> &'static str {
    ["us-east", "eu-west", "ap-south"][(id as usize - 1) % 3]
}

async fn view(http: &reqwest::Client, ep: &str) -> Option<ClusterView> {
    http.get(format!("http://{ep}/v1/cluster"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Whether every data range has a leader in `region`, as some node among `eps` sees it.
async fn leaders_in(http: &reqwest::Client, eps: &[String], region: &str) -> bool {
    for ep in eps {
        if let Some(v) = view(http, ep).await {
            let data: Vec<_> = v.ranges.iter().filter(|r| r.id != 0).collect();
            return !data.is_empty()
                && data
                    .iter()
                    .all(|r| r.leader.is_some_and(|l| region_of(l) == region));
        }
    }
    false
}

async fn wait_until<F, Fut>(deadline: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < deadline {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// One put through `ep` with a short timeout; true if acknowledged.
async fn put_once(http: &reqwest::Client, ep: &str, key: &str, value: &str) -> bool {
    http.put(format!("http://{ep}/v1/kv/{key}"))
        .body(value.to_string())
        .timeout(Duration::from_millis(1500))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[test]
fn losing_a_region_loses_no_write_and_leaders_come_home() {
    let bin = server_bin();
    assert!(bin.exists(), "no server binary at {}", bin.display());
    let tmp = tempfile::Builder::new()
        .prefix("meridian-region-loss-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path().to_path_buf();
    let keep = Keep(Some(tmp));
    let opts = ServerOptions {
        args: vec!["--wan".into(), WAN.into()],
        ..Default::default()
    };
    let mut nodes: Vec<ServerProcess> = (1..=NODES)
        .map(|i| {
            ServerProcess::start_with(&bin, i, &dir.join(format!("node{i}")), None, opts.clone())
                .expect("start a node")
        })
        .collect();
    let eps: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let out = std::process::Command::new(&bin)
        .args(["cluster", "init", "--endpoints", &eps.join(",")])
        .args(["--ranges", &RANGES.to_string()])
        .output()
        .expect("run cluster init");
    assert!(
        out.status.success(),
        "cluster init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One replica per region, leaders at home, eu-west next.
    let out = std::process::Command::new(&bin)
        .args(["placement", "set", "", "--endpoints", &eps[1]])
        .args(["--replicas", "3", "--survival", "region"])
        .args(["--leader-regions", "us-east,eu-west"])
        .output()
        .expect("run placement set");
    assert!(
        out.status.success(),
        "placement set: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("http client");
    let settled = rt.block_on(wait_until(Duration::from_secs(60), || {
        leaders_in(&http, &eps, HOME)
    }));
    assert!(settled.is_some(), "leaders never settled in {HOME}");
    println!("region-loss: leaders in {HOME} after {settled:?}");

    let history_path = dir.join("history.jsonl");
    let history = Arc::new(HistoryWriter::create(&history_path).expect("history"));
    let stop = Arc::new(AtomicBool::new(false));
    let keys = Arc::new(Keys::default());
    let clients = rt.spawn(workload::run(
        WorkloadConfig {
            endpoints: eps.clone(),
            clients: CLIENTS,
            seed: rand::random::<u32>() as u64,
        },
        history.clone(),
        keys.clone(),
        stop.clone(),
    ));
    std::thread::sleep(Duration::from_secs(3));

    // Lose us-east.
    let home_ids: Vec<u64> = (1..=NODES).filter(|i| region_of(*i) == HOME).collect();
    let others: Vec<String> = (1..=NODES)
        .filter(|i| region_of(*i) != HOME)
        .map(|i| eps[i as usize - 1].clone())
        .collect();
    history.nemesis("start", 1, "region-loss", HOME);
    let lost_at = Instant::now();
    for &i in &home_ids {
        nodes[i as usize - 1].kill9();
    }
    // A key in each range: range 1 holds keys below the first split point, range 2 the rest.
    let probe_keys = ["Aprobe", "zprobe"];
    // Time from the loss to the first acknowledged write, per range.
    let resumed: Vec<(&str, Duration)> = rt.block_on(async {
        let mut per_key = Vec::new();
        for key in probe_keys {
            let mut n = 0u64;
            loop {
                n += 1;
                if put_once(&http, &others[0], key, &format!("v{n}")).await {
                    per_key.push((key, lost_at.elapsed()));
                    break;
                }
                assert!(
                    lost_at.elapsed() < RESUME_DEADLINE,
                    "writes to {key} never resumed without {HOME}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        per_key
    });
    let resume = resumed.iter().map(|(_, t)| *t).max().unwrap_or_default();
    println!("region-loss: writes resumed {resume:?} after {HOME} was lost ({resumed:?})");

    std::thread::sleep(OUTAGE.saturating_sub(lost_at.elapsed()));
    for &i in &home_ids {
        nodes[i as usize - 1].restart().expect("restart a node");
    }
    history.nemesis("stop", 1, "region-loss", HOME);
    let back_at = Instant::now();
    let failback = rt.block_on(wait_until(FAILBACK_DEADLINE, || {
        leaders_in(&http, &eps, HOME)
    }));
    let failback = failback.unwrap_or_else(|| {
        panic!("leaders did not return to {HOME} within {FAILBACK_DEADLINE:?} after it recovered")
    });
    println!(
        "region-loss: leaders back in {HOME} {failback:?} after its nodes restarted ({:?} since)",
        back_at.elapsed()
    );

    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    rt.block_on(clients).expect("clients");
    // Final reads on every node.
    let used: Vec<String> = keys.used.lock().iter().cloned().collect();
    rt.block_on(async {
        let mut process = 1_000_000;
        for key in &used {
            for ep in &eps {
                let r = workload::final_read(
                    &http,
                    &history,
                    ep,
                    process,
                    key,
                    Duration::from_secs(30),
                )
                .await;
                assert!(r.is_some(), "no answer for {key} on {ep} after recovery");
                process += 1;
            }
        }
    });
    for n in &mut nodes {
        let _ = n.terminate();
    }
    let report = check_file(&history_path).expect("check the history");
    let _ = report.write_beside(&history_path);
    println!("{}", report.text());
    assert!(report.counts.ok > 50, "too few operations succeeded");
    meridian_tests::verdict::assert_linearizable_and_nothing_lost(&report);
    drop(keep);
}

/// Keeps the run's directory when the test fails (or when asked).
struct Keep(Option<tempfile::TempDir>);

impl Drop for Keep {
    fn drop(&mut self) {
        let keep =
            std::thread::panicking() || std::env::var_os("MERIDIAN_REGION_LOSS_KEEP").is_some();
        if let Some(d) = self.0.take()
            && keep
        {
            eprintln!("region-loss: kept {}", d.keep().display());
        }
    }
}
