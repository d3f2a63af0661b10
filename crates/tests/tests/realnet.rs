//! Real `meridian server` processes on a real network: one network namespace per host, a
//! bridge, a delaying proxy per host, and a nemesis that partitions, cuts links, kills and
//! restarts, pauses and slows the network while clients record a Jepsen-shaped history. After
//! heal every key must be readable on every node, the replicas must agree, and the checker must
//! find every key linearizable and no acknowledged write lost. Beside them a publisher, a queue
//! sender and a consumer (`meridian_tests::msg_workload`) use a stream and a work queue: after
//! the heal every acknowledged publish is at its offset, offsets are gap-free and hold nothing
//! twice, every node reads the same log, and every acknowledged send was delivered. And a watcher
//! (`meridian_tests::watch_workload`) follows every key through random nodes, resuming after each
//! cut: joined, its pieces must equal a replay from revision 1 after the heal.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables). Without them the test is skipped with a
//! message, or fails if `MERIDIAN_REQUIRE_NETNS=1` (CI sets it).
//!
//! | variable | default | what |
//! |---|---|---|
//! | `MERIDIAN_REALNET_SECS` | 40 | seconds of faults; over 60 the schedule also stacks faults |
//! | `MERIDIAN_REALNET_SEED` | random | the nemesis's and clients' seed (printed) |
//! | `MERIDIAN_REALNET_NODES` | 3 | nodes (3 or 5) |
//! | `MERIDIAN_REALNET_FAULTS` | all | comma-separated kinds: partition, link-down, kill, pause, latency |
//! | `MERIDIAN_REALNET_KEEP` | unset | keep the run's directory (history, report, logs) |
//! | `MERIDIAN_REALNET_WAN` | unset | a `--wan` table for every server (hosts in us-east, eu-west, ap-south in turn) |
//! | `MERIDIAN_BIN` | `target/<profile>/meridian` | the server binary |
//!
//! A long run (nextest stops a test at 300 s, so use cargo test):
//! `MERIDIAN_REALNET_SECS=600 cargo test -p meridian-tests --test realnet -- --nocapture real_processes`.
//! The history and its report (`history.report.txt`, `.json`) are in the printed directory, kept
//! when the test fails or `MERIDIAN_REALNET_KEEP` is set; `meridian-check-history FILE` checks
//! any history again.

use meridian_node::ClusterView;
use meridian_tests::checker::check_file;
use meridian_tests::jepsen::{HistoryWriter, Kind, read_history};
use meridian_tests::nemesis::{Fault, Nemesis, NemesisConfig};
use meridian_tests::netns;
use meridian_tests::process::server_bin;
use meridian_tests::realcluster::{ClusterConfig, RealCluster};
use meridian_tests::workload::{self, Keys, WorkloadConfig};
use meridian_tests::{msg_workload, watch_workload};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CHECK_BIN: &str = env!("CARGO_BIN_EXE_meridian-check-history");
/// Clients doing operations at once.
const CLIENTS: usize = 6;
/// Ranges the key space is split into (each its own Raft group).
const RANGES: u32 = 3;
/// How long clients keep going after the heal, to show the cluster recovered.
const AFTER_HEAL: Duration = Duration::from_secs(5);
/// How long the healed cluster may take to answer every key on every node, and to converge.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Keeps the run's directory when the test fails (or when asked), and says where it is.
struct RunDir(Option<tempfile::TempDir>);

impl RunDir {
    fn path(&self) -> &Path {
        self.0.as_ref().expect("run dir").path()
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let keep = std::thread::panicking() || std::env::var_os("MERIDIAN_REALNET_KEEP").is_some();
        if let Some(d) = self.0.take()
            && keep
        {
            let p = d.keep();
            eprintln!("realnet: kept {} (history, report, node logs)", p.display());
        }
    }
}

async fn cluster_view(http: &reqwest::Client, ep: &str) -> Option<ClusterView> {
    http.get(format!("http://{ep}/v1/cluster"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Waits until some node reports a leader for every range.
async fn wait_for_leaders(http: &reqwest::Client, eps: &[String], deadline: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        for ep in eps {
            if let Some(v) = cluster_view(http, ep).await
                && !v.ranges.is_empty()
                && v.ranges.iter().all(|r| r.leader.is_some())
            {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn local_value(http: &reqwest::Client, ep: &str, key: &str) -> Option<Option<String>> {
    let r = http
        .get(format!("http://{ep}/v1/kv/{key}?consistency=local"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let status = r.status();
    let v: serde_json::Value = r.json().await.ok()?;
    if status.is_success() {
        Some(v["value"].as_str().map(String::from))
    } else if v["error"]["code"] == "key_not_found" {
        Some(None)
    } else {
        None
    }
}

/// Rewrites the last final read of a key so it returns a value the key had earlier: a stale read
/// the checker must catch. Returns the corrupted history's path.
fn corrupt(history: &Path, out: &Path) -> PathBuf {
    let mut entries = read_history(history).expect("read history");
    // The final reads are the last entries; find a key whose last ok read can be made stale.
    let final_start = entries
        .iter()
        .position(|e| matches!(&e.process, meridian_tests::jepsen::Process::Client(p) if *p >= FINAL_PROCESS))
        .expect("final reads recorded");
    let mut done = false;
    for i in (final_start..entries.len()).rev() {
        let e = &entries[i];
        if e.kind != Kind::Ok || e.f != "read" {
            continue;
        }
        let key = e.key.clone().unwrap_or_default();
        let now = e.value.clone();
        // An earlier final read of the same key answered the same value.
        let earlier = entries[final_start..i]
            .iter()
            .any(|x| x.kind == Kind::Ok && x.key.as_deref() == Some(&key) && x.value == now);
        // A value acknowledged earlier for the key, other than the final one.
        let stale = entries[..final_start].iter().find_map(|x| {
            (x.kind == Kind::Ok
                && x.f == "write"
                && x.key.as_deref() == Some(&key)
                && x.value != now)
                .then(|| x.value.clone())
        });
        if let (true, Some(stale)) = (earlier, stale) {
            eprintln!("realnet: corrupting the final read of {key}: {now} -> {stale}");
            entries[i].value = stale;
            done = true;
            break;
        }
    }
    assert!(done, "found no final read to corrupt");
    let text: Vec<String> = entries
        .iter()
        .map(|e| serde_json::to_string(e).expect("serialise"))
        .collect();
    std::fs::write(out, text.join("\n") + "\n").expect("write corrupted history");
    out.to_path_buf()
}

/// What a crashed run in the last slot would have left behind.
const STALE_NS: &str = "mrn199-h1";
const STALE_BRIDGE: &str = "mrb199";

/// Leaves a namespace with a process in it and a bridge, named for a slot nobody holds, as a
/// run killed with SIGKILL would; returns the process.
fn plant_leftovers() -> std::process::Child {
    netns::run(&["ip", "netns", "add", STALE_NS]).expect("plant a namespace");
    netns::run(&["ip", "link", "add", STALE_BRIDGE, "type", "bridge"]).expect("plant a bridge");
    std::process::Command::new("ip")
        .args(["netns", "exec", STALE_NS, "sleep", "600"])
        .spawn()
        .expect("plant a process")
}

/// Process numbers of the final reads (one per node and key), far above the clients'.
const FINAL_PROCESS: u64 = 1_000_000;

#[test]
fn real_processes_on_a_real_network_stay_linearizable_under_faults() {
    if let Some(why) = netns::unavailable_reason() {
        if std::env::var("MERIDIAN_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("MERIDIAN_REQUIRE_NETNS=1 but the real-network test cannot run: {why}");
        }
        println!(
            "SKIPPED real-network fault test: {why} (set MERIDIAN_REQUIRE_NETNS=1 to fail instead)"
        );
        return;
    }
    let bin = server_bin();
    assert!(
        bin.exists(),
        "no server binary at {} (build it: cargo build -p meridian, or set MERIDIAN_BIN)",
        bin.display()
    );
    let secs = env_u64("MERIDIAN_REALNET_SECS", 40);
    let n_nodes = env_u64("MERIDIAN_REALNET_NODES", 3) as usize;
    let seed = env_u64("MERIDIAN_REALNET_SEED", rand::random::<u32>() as u64);
    let kinds: Vec<Fault> = std::env::var("MERIDIAN_REALNET_FAULTS")
        .map(|s| {
            s.split(',')
                .map(|k| Fault::parse(k.trim()).unwrap_or_else(|| panic!("unknown fault {k:?}")))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "realnet: seed {seed}, {secs} s of faults, {n_nodes} nodes (replay the schedule with MERIDIAN_REALNET_SEED={seed})"
    );

    let dir = RunDir(Some(
        tempfile::Builder::new()
            .prefix("meridian-realnet-")
            .tempdir()
            .expect("temp dir"),
    ));
    let history_path = dir.path().join("history.jsonl");
    let mut planted = plant_leftovers();
    let mut cluster = RealCluster::start(&ClusterConfig {
        bin,
        dir: dir.path().to_path_buf(),
        n_nodes,
        n_ranges: RANGES,
        // E.g. the playground's table, to run the faults over a simulated WAN.
        wan: std::env::var("MERIDIAN_REALNET_WAN").ok(),
    })
    .expect("start the cluster");
    // Starting removed what a "crashed run" left: its namespace, its process, its bridge.
    assert!(
        !netns::run(&["ip", "netns", "list"])
            .unwrap()
            .contains(STALE_NS),
        "a stale namespace survived the start"
    );
    assert!(
        netns::run(&["ip", "link", "show", STALE_BRIDGE]).is_err(),
        "a stale bridge survived the start"
    );
    let reaped = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        planted.try_wait().ok().flatten().is_some()
    });
    assert!(reaped, "the stale namespace's process survived the start");
    println!(
        "realnet: network slot {}, hosts {:?}, data and logs in {}",
        cluster.net.slot,
        cluster.endpoints(),
        dir.path().display()
    );
    let eps = cluster.endpoints();
    let history = Arc::new(HistoryWriter::create(&history_path).expect("create history"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("http client");
    assert!(
        rt.block_on(wait_for_leaders(&http, &eps, RECOVERY_DEADLINE)),
        "the new cluster elected no leader for some range"
    );

    rt.block_on(msg_workload::setup(&eps))
        .expect("create the stream and the queue");

    // Safety phase: clients and nemesis together.
    let stop = Arc::new(AtomicBool::new(false));
    let messages = Arc::new(parking_lot::Mutex::new(msg_workload::MsgRecord::default()));
    let messengers = rt.spawn(msg_workload::run(
        eps.clone(),
        seed,
        messages.clone(),
        stop.clone(),
    ));
    let watched = Arc::new(parking_lot::Mutex::new(
        watch_workload::WatchRecord::default(),
    ));
    let watcher = rt.spawn(watch_workload::watcher(
        eps.clone(),
        seed,
        watched.clone(),
        stop.clone(),
    ));
    let keys = Arc::new(Keys::default());
    let clients = rt.spawn(workload::run(
        WorkloadConfig {
            endpoints: eps.clone(),
            clients: CLIENTS,
            seed,
        },
        history.clone(),
        keys.clone(),
        stop.clone(),
    ));
    std::thread::sleep(Duration::from_secs(2));
    let injected = {
        let leaders = {
            let (http, eps, handle) = (http.clone(), eps.clone(), rt.handle().clone());
            Box::new(move || {
                handle.block_on(async {
                    for ep in &eps {
                        if let Some(v) = cluster_view(&http, ep).await {
                            // Data ranges only: range 0 is the meta group.
                            return v
                                .ranges
                                .iter()
                                .filter(|r| r.id != 0)
                                .filter_map(|r| r.leader)
                                .collect();
                        }
                    }
                    Vec::new()
                })
            })
        };
        let mut nemesis = Nemesis::new(&mut cluster, &history, leaders);
        let long = secs > 60;
        nemesis
            .run(&NemesisConfig {
                seed,
                duration: Duration::from_secs(secs),
                fault_ms: 3000..6000,
                gap_ms: 1500..3000,
                stack: long,
                kinds: kinds.clone(),
            })
            .expect("nemesis");
        nemesis.injected.clone()
    };

    // Heal phase: everything is undone; clients go on a little, then stop.
    std::thread::sleep(AFTER_HEAL);
    stop.store(true, Ordering::Relaxed);
    rt.block_on(clients).expect("clients");
    rt.block_on(messengers).expect("messaging clients");
    rt.block_on(watcher).expect("watcher");
    assert!(
        rt.block_on(wait_for_leaders(&http, &eps, RECOVERY_DEADLINE)),
        "after heal some range has no leader"
    );
    let used: Vec<String> = keys.used.lock().iter().cloned().collect();
    let mut unanswered = Vec::new();
    let mut finals: std::collections::BTreeMap<String, Option<String>> = Default::default();
    rt.block_on(async {
        let mut process = FINAL_PROCESS;
        for key in &used {
            for ep in &eps {
                match workload::final_read(&http, &history, ep, process, key, RECOVERY_DEADLINE)
                    .await
                {
                    Some(v) => {
                        finals.insert(key.clone(), v);
                    }
                    None => unanswered.push(format!("{key} on {ep}")),
                }
                process += 1;
            }
        }
    });
    assert!(
        unanswered.is_empty(),
        "after heal these reads got no answer: {unanswered:?}"
    );
    // Replicas converge: every node's local copy of every key equals the final value.
    let diverged = rt.block_on(async {
        let start = Instant::now();
        loop {
            let mut diverged = Vec::new();
            for (key, want) in &finals {
                for ep in &eps {
                    let got = local_value(&http, ep, key).await;
                    if got.as_ref() != Some(want) {
                        diverged.push(format!("{key} on {ep}: {got:?}, final {want:?}"));
                    }
                }
            }
            if diverged.is_empty() || start.elapsed() > RECOVERY_DEADLINE {
                return diverged;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    assert!(
        diverged.is_empty(),
        "replicas disagree after heal: {diverged:?}"
    );

    let (msg_problems, msg_summary) = rt.block_on(msg_workload::verify(&eps, seed, &messages));
    println!("realnet: messaging: {msg_summary}");
    assert!(
        msg_problems.is_empty(),
        "messaging after the heal: {msg_problems:#?}"
    );
    let (watch_problems, watch_summary) = rt.block_on(watch_workload::verify(&eps, &watched));
    println!("realnet: watch: {watch_summary}");
    assert!(
        watch_problems.is_empty(),
        "the resumed watch after the heal: {watch_problems:#?}"
    );
    let acked_publishes = messages
        .lock()
        .publishes
        .values()
        .filter(|a| a.is_some())
        .count();
    assert!(
        acked_publishes > 10,
        "too few publishes acknowledged: {msg_summary}"
    );

    let links = &cluster.links;
    println!(
        "realnet: proxies carried {} connections, {} bytes; {} stalls, {} cuts",
        links.connections.load(Ordering::Relaxed),
        links.bytes.load(Ordering::Relaxed),
        links.stalls.load(Ordering::Relaxed),
        links.cuts.load(Ordering::Relaxed)
    );
    drop(cluster);

    let report = check_file(&history_path).expect("check the history");
    let (txt, json) = report.write_beside(&history_path).expect("write report");
    println!("{}", report.text());
    println!(
        "realnet: report in {} and {}",
        txt.display(),
        json.display()
    );
    println!(
        "realnet: {} keys, {} operations, final reads {} keys x {} nodes, faults {injected:?}",
        used.len(),
        report.ops,
        finals.len(),
        eps.len()
    );

    assert!(report.ops > 100, "too few operations to mean anything");
    assert!(report.counts.ok > 100, "too few operations succeeded");
    meridian_tests::verdict::assert_linearizable_and_nothing_lost(&report);
    for f in Fault::ALL {
        assert!(
            injected.get(f.name()).copied().unwrap_or(0) >= 1 || secs < 40 || !kinds.is_empty(),
            "fault {} never injected",
            f.name()
        );
    }

    // The same checker catches a single corrupted entry in this real history, and the command
    // says so in its exit status.
    let bad = corrupt(&history_path, &dir.path().join("corrupted.jsonl"));
    let bad_report = check_file(&bad).expect("check the corrupted history");
    assert!(
        !bad_report.valid && !bad_report.all_linearizable(),
        "the checker missed a stale read planted in the history"
    );
    let status = |p: &Path| {
        std::process::Command::new(CHECK_BIN)
            .arg(p)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run meridian-check-history")
            .code()
    };
    assert_eq!(status(&history_path), Some(0));
    assert_eq!(status(&bad), Some(1));
}

/// The checker command on hand-made histories: exit 0 for a valid one, 1 for a stale read,
/// 2 with a stable code for a malformed file; the reports land beside the history.
#[test]
fn the_checker_command_reports_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"process":0,"type":"invoke","f":"write","key":"a","value":"x","time":1}
{"process":0,"type":"ok","f":"write","key":"a","value":"x","time":2}
{"process":1,"type":"invoke","f":"read","key":"a","value":null,"time":3}
{"process":1,"type":"ok","f":"read","key":"a","value":"x","time":4}
"#;
    let stale = good.replace(r#""value":"x","time":4"#, r#""value":null,"time":4"#);
    let run = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = std::process::Command::new(CHECK_BIN)
            .arg(&p)
            .output()
            .unwrap();
        (p, out)
    };
    let (p, out) = run("good.jsonl", good);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verdict: VALID"));
    assert!(p.with_extension("report.txt").exists());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.with_extension("report.json")).unwrap()).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["keys"][0]["result"], "linearizable");

    let (_, out) = run("stale.jsonl", &stale);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not-linearizable"));

    let (_, out) = run("broken.jsonl", "{\"process\":0,\"type\":\"ok\"}\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("parse: line 1"));

    let missing = std::process::Command::new(CHECK_BIN)
        .arg(dir.path().join("nope.jsonl"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("io: read"));
}
