//! `meridian playground`: a whole cluster on this machine. Starts N `meridian server` child
//! processes spread over three regions, initialises them as one cluster (or, for a kept
//! `--data-dir`, waits for the existing one), prints where they are and what to try, and stops
//! them all on Ctrl-C or SIGTERM.
//!
//! Nodes run in their own process group, so a Ctrl-C in the terminal reaches only the
//! playground, which stops each node with SIGTERM, then SIGKILL after a grace period. A node
//! that exits on its own stops the playground with an error. [`Children`]'s `Drop` stops the
//! nodes on every other way out.

mod children;
mod node_process;
mod saved;
mod seed;

use anyhow::{Context, bail};
use children::Children;
use meridian_transport::WanTable;
use node_process::{NodeProcess, NodeSpec};
use saved::SavedLayout;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Regions nodes are assigned to, round-robin.
const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];

/// Zones within a region, in the order nodes fill them.
const ZONES: &str = "abc";

/// The simulated WAN between the three regions: realistic round trips (us-east↔eu-west
/// 75 ms, us-east↔ap-south 190 ms, eu-west↔ap-south 120 ms, 1–2 ms within a region).
pub const PLAYGROUND_WAN: &str =
    "us-east:eu-west=75ms,us-east:ap-south=190ms,eu-west:ap-south=120ms,local=1.5ms~0.5ms";

/// Most nodes a playground runs.
const NODES_MAX: u32 = 9;

/// How long a stopping node may take after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long an existing playground may take to elect its leaders again.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct PlaygroundArgs {
    /// Number of nodes, spread round-robin over us-east, eu-west and ap-south.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=NODES_MAX as i64))]
    nodes: u32,
    /// Keep data and logs here, and start this playground again from it later [default: a
    /// temporary directory, deleted on exit].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Listen on ports P, P+1, ... [default: free ports].
    #[arg(long)]
    base_port: Option<u16>,
    /// Split the key space into this many ranges, each its own Raft group with its own leader.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=256))]
    ranges: u32,
    /// Simulated WAN between the regions: `none`, or a table like
    /// `us-east:eu-west=75ms~5ms/1%,local=1.5ms` (round trip ~ jitter / loss).
    #[arg(long, default_value = PLAYGROUND_WAN)]
    wan: String,
}

/// SIGINT and SIGTERM, caught from the start so that no signal kills the playground before it
/// has stopped its nodes.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("catch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("catch SIGTERM")?,
        })
    }

    /// Waits for either; returns its name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

pub async fn run(args: PlaygroundArgs) -> anyhow::Result<()> {
    let mut signals = StopSignals::new()?;
    let exe = std::env::current_exe().context("find the meridian executable")?;
    // Declared before the children, so it is dropped (and the data deleted) after them.
    let (dir, _temp_dir) = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("meridian-playground-")
                .tempdir()
                .context("create a temporary directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let wan = WanTable::parse(&args.wan).context("parse --wan")?;
    let specs = node_specs(&args, &dir, &wan)?;
    let mut children = Children::default();

    let started = tokio::select! {
        r = start(&exe, specs, &mut children, args.data_dir.is_some(), &dir, args.ranges) => Some(r),
        name = signals.recv() => {
            println!("{name}: stopping");
            None
        }
    };
    match started {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            stop(&mut children).await;
            return Err(e);
        }
        None => {
            stop(&mut children).await;
            return Ok(());
        }
    }
    if let Some(addr) = children.nodes().first().map(|n| n.addr.clone()) {
        let fresh = !dir.join(seed::SEEDED_MARK).exists();
        match seed::seed(&addr, fresh).await {
            Ok(()) => {
                let _ = std::fs::write(dir.join(seed::SEEDED_MARK), b"");
            }
            Err(e) => eprintln!("could not create the demo stream and queue: {e:#}"),
        }
    }
    print_banner(&children, &dir, args.data_dir.is_none(), &wan);

    let failed = tokio::select! {
        name = signals.recv() => {
            println!("\n{name}: stopping the playground");
            None
        }
        (idx, status) = children.wait_any_exit() => {
            let n = &children.nodes()[idx];
            let status = status.map_or_else(|e| format!("unknown status: {e}"), |s| s.to_string());
            eprintln!(
                "node {} exited unexpectedly ({status}); its log ({}) ends with:\n{}",
                n.spec.id,
                n.spec.log_path.display(),
                node_process::log_tail(&n.spec.log_path)
            );
            Some(n.spec.id)
        }
    };
    stop(&mut children).await;
    if let Some(id) = failed {
        bail!("node {id} exited unexpectedly; the playground stopped");
    }
    Ok(())
}

/// Starts every node, then creates the cluster (or waits for the existing one).
async fn start(
    exe: &Path,
    specs: Vec<NodeSpec>,
    children: &mut Children,
    keep: bool,
    dir: &Path,
    ranges: u32,
) -> anyhow::Result<()> {
    println!("starting {} nodes in {}", specs.len(), dir.display());
    for spec in specs {
        children.push(NodeProcess::start(exe, spec).await?);
    }
    let endpoints: Vec<String> = children.nodes().iter().map(|n| n.addr.clone()).collect();
    if keep {
        SavedLayout {
            addrs: endpoints.clone(),
        }
        .save(dir)?;
    }
    let init = async {
        match crate::cluster::init_cluster(&endpoints, ranges).await {
            Ok(cluster_id) => {
                println!("initialised cluster {cluster_id:016x}");
                Ok(())
            }
            Err(e) if format!("{e:#}").contains("already_initialized") => {
                println!("the nodes already form a cluster; waiting for it to be ready");
                crate::cluster::wait_ready(&endpoints, READY_TIMEOUT).await
            }
            Err(e) => Err(e.context("initialise the cluster")),
        }
    };
    let exited = tokio::select! {
        r = init => return r,
        (idx, status) = children.wait_any_exit() => (idx, status),
    };
    let (idx, status) = exited;
    let n = &children.nodes()[idx];
    let status = status.map_or_else(|e| format!("unknown status: {e}"), |s| s.to_string());
    bail!(
        "node {} exited while the cluster started ({status}); its log ({}) ends with:\n{}",
        n.spec.id,
        n.spec.log_path.display(),
        node_process::log_tail(&n.spec.log_path)
    )
}

/// Stops every node and says how each ended.
async fn stop(children: &mut Children) {
    for s in children.stop_all(STOP_GRACE).await {
        println!("stopped node {} ({})", s.id, s.outcome);
    }
}

/// Ids, regions, zones, directories and listen addresses of the nodes.
fn node_specs(args: &PlaygroundArgs, dir: &Path, wan: &WanTable) -> anyhow::Result<Vec<NodeSpec>> {
    let n = args.nodes;
    let saved = match &args.data_dir {
        Some(d) => SavedLayout::load(d)?,
        None => None,
    };
    if let Some(s) = &saved
        && s.addrs.len() != n as usize
    {
        bail!(
            "{} holds a playground of {} nodes; start it with --nodes {}",
            dir.display(),
            s.addrs.len(),
            s.addrs.len()
        );
    }
    let listen: Vec<String> = match (args.base_port, &saved) {
        (Some(base), saved) => {
            let last = u32::from(base) + n - 1;
            if base == 0 || last > u32::from(u16::MAX) {
                bail!("--base-port {base} leaves no room for {n} ports");
            }
            let wanted: Vec<String> = (0..n)
                .map(|i| format!("127.0.0.1:{}", u32::from(base) + i))
                .collect();
            if let Some(s) = saved
                && s.addrs != wanted
            {
                bail!(
                    "this playground's nodes listen on {}; start it again without --base-port",
                    s.addrs.join(", ")
                );
            }
            wanted
        }
        (None, Some(s)) => s.addrs.clone(),
        (None, None) => vec!["127.0.0.1:0".to_owned(); n as usize],
    };
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let worker_threads = worker_share(cores, n as usize);
    Ok(listen
        .into_iter()
        .zip(1..=n)
        .map(|(listen, id)| {
            let (region, zone) = placement(id);
            NodeSpec {
                id,
                region,
                zone,
                listen,
                data_dir: dir.join(format!("node{id}")),
                log_path: dir.join(format!("node{id}.log")),
                wan: wan.to_string(),
                worker_threads,
            }
        })
        .collect())
}

/// Worker threads for each of `nodes` nodes on a machine of `cores` cores: its share of them, at
/// least one. Nodes that each run one worker per core wake each other's idle workers on every
/// message: on 2 cores, three nodes with one worker each published 9–32 % more messages one
/// at a time, 11–26 % more at 64 publishers on one connection, 8–18 % more with 256 in flight,
/// and the same on 64 connections (docs/benchmarks.md, fourteenth session).
fn worker_share(cores: usize, nodes: usize) -> usize {
    (cores / nodes.max(1)).max(1)
}

/// Region and zone of node `id` (1-based): regions round-robin, zones `a`, `b`, ... in turn
/// within each region.
fn placement(id: u32) -> (&'static str, String) {
    let i = (id - 1) as usize;
    let region = REGIONS[i % REGIONS.len()];
    let zone_idx = (i / REGIONS.len()) % ZONES.len();
    (region, ZONES[zone_idx..=zone_idx].to_owned())
}

/// The WAN table as the banner shows it: every pair of the regions in use.
fn wan_lines(wan: &WanTable, regions: &[&str]) -> String {
    if wan.is_none() {
        return "Simulated WAN: none (nodes talk at loopback speed)\n".into();
    }
    let mut s = format!("Simulated WAN (--wan {wan}), added round trips:\n");
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i..] {
            let link = wan
                .link(a, b)
                .map_or_else(|| "none (not in the table)".to_string(), |l| l.to_string());
            let pair = if a == b {
                format!("within {a}")
            } else {
                format!("{a} <-> {b}")
            };
            s.push_str(&format!("  {pair:<24} {link}\n"));
        }
    }
    s
}

fn print_banner(children: &Children, dir: &Path, temporary: bool, wan: &WanTable) {
    let nodes = children.nodes();
    let region_names: Vec<&str> = REGIONS
        .iter()
        .copied()
        .filter(|r| nodes.iter().any(|n| n.spec.region == *r))
        .collect();
    let regions = region_names.len();
    let mut s = String::new();
    s.push_str(&format!(
        "\nMeridian playground: {} node(s) in {regions} region(s)\n\n",
        nodes.len()
    ));
    s.push_str(&format!(
        "  {:<4} {:<10} {:<6} {}\n",
        "ID", "REGION", "ZONE", "ADDRESS"
    ));
    for n in nodes {
        s.push_str(&format!(
            "  {:<4} {:<10} {:<6} {}\n",
            n.spec.id, n.spec.region, n.spec.zone, n.addr
        ));
    }
    s.push('\n');
    s.push_str(&wan_lines(wan, &region_names));
    let addr = nodes.first().map_or("127.0.0.1:2379", |n| n.addr.as_str());
    s.push_str(&format!(
        "\nData and logs (node<i>.log) in {}{}\n",
        dir.display(),
        if temporary { ", deleted on exit" } else { "" }
    ));
    s.push_str("\nTry:\n");
    s.push_str(&format!(
        "  curl -X PUT --data-binary hello http://{addr}/v1/kv/greeting\n"
    ));
    s.push_str(&format!("  curl http://{addr}/v1/kv/greeting\n"));
    s.push_str(&format!("  meridian kv get greeting --endpoints {addr}\n"));
    s.push_str(&format!("  etcdctl --endpoints={addr} get greeting\n"));
    s.push_str(&format!("  meridian cluster status --endpoints {addr}\n"));
    s.push_str(&format!("  meridian cluster latency --endpoints {addr}\n"));
    s.push_str(&format!(
        "  meridian stream read {} --partition 0 --endpoints {addr}   (also 1, 2)\n",
        seed::DEMO_STREAM
    ));
    s.push_str(&format!(
        "  meridian stream publish {} 'order 7 shipped' --key order-7 --endpoints {addr}\n",
        seed::DEMO_STREAM
    ));
    s.push_str(&format!(
        "  meridian queue receive {} --wait 5s --endpoints {addr}   (then queue ack)\n",
        seed::DEMO_QUEUE
    ));
    s.push_str(&format!(
        "  curl -N 'http://{addr}/v1/watch?prefix=greet'   (and put a key in another shell)\n"
    ));
    s.push_str("\nPress Ctrl-C to stop.\n");
    print!("{s}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nodes: u32, base_port: Option<u16>, data_dir: Option<PathBuf>) -> PlaygroundArgs {
        PlaygroundArgs {
            nodes,
            data_dir,
            base_port,
            ranges: 3,
            wan: PLAYGROUND_WAN.into(),
        }
    }

    fn wan() -> WanTable {
        WanTable::parse(PLAYGROUND_WAN).unwrap()
    }

    #[test]
    fn each_node_gets_its_share_of_the_cores_and_at_least_one() {
        assert_eq!(worker_share(2, 3), 1);
        assert_eq!(worker_share(2, 5), 1);
        assert_eq!(worker_share(16, 5), 3);
        assert_eq!(worker_share(8, 1), 8);
        assert_eq!(worker_share(1, 9), 1);
    }

    #[test]
    fn the_default_wan_names_every_pair_of_regions() {
        let w = wan();
        for a in REGIONS {
            for b in REGIONS {
                assert!(w.link(a, b).is_some(), "{a} {b}");
            }
        }
        assert_eq!(
            w.link("us-east", "ap-south").unwrap().rtt,
            Duration::from_millis(190)
        );
        let lines = wan_lines(&w, &REGIONS);
        assert!(lines.contains("us-east <-> eu-west"), "{lines}");
        assert!(lines.contains("within ap-south"), "{lines}");
        assert!(wan_lines(&WanTable::none(), &REGIONS).contains("none"));
        let partial = WanTable::parse("us-east:eu-west=10ms").unwrap();
        assert!(wan_lines(&partial, &REGIONS).contains("not in the table"));
    }

    #[test]
    fn regions_round_robin_and_zones_fill_in_turn() {
        let got: Vec<(&str, String)> = (1..=7).map(placement).collect();
        let want = [
            ("us-east", "a"),
            ("eu-west", "a"),
            ("ap-south", "a"),
            ("us-east", "b"),
            ("eu-west", "b"),
            ("ap-south", "b"),
            ("us-east", "c"),
        ];
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0, g.1.as_str()), w);
        }
    }

    #[test]
    fn ports_come_from_the_base_or_are_free() {
        let dir = Path::new("/tmp/pg");
        let specs = node_specs(&args(3, Some(4000), None), dir, &wan()).unwrap();
        let listen: Vec<&str> = specs.iter().map(|s| s.listen.as_str()).collect();
        assert_eq!(
            listen,
            ["127.0.0.1:4000", "127.0.0.1:4001", "127.0.0.1:4002"]
        );
        assert_eq!(specs[2].data_dir, dir.join("node3"));
        assert_eq!(specs[2].log_path, dir.join("node3.log"));
        let specs = node_specs(&args(2, None, None), dir, &wan()).unwrap();
        assert!(specs.iter().all(|s| s.listen == "127.0.0.1:0"));
        assert!(node_specs(&args(3, Some(65534), None), dir, &wan()).is_err());
        assert!(node_specs(&args(1, Some(0), None), dir, &wan()).is_err());
    }

    #[test]
    fn a_kept_playground_listens_where_it_did() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        SavedLayout {
            addrs: vec!["127.0.0.1:4100".into(), "127.0.0.1:4101".into()],
        }
        .save(&d)
        .unwrap();
        let specs = node_specs(&args(2, None, Some(d.clone())), &d, &wan()).unwrap();
        assert_eq!(specs[1].listen, "127.0.0.1:4101");
        assert!(node_specs(&args(2, Some(4100), Some(d.clone())), &d, &wan()).is_ok());
        let e = node_specs(&args(3, None, Some(d.clone())), &d, &wan())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--nodes 2"), "{e}");
        assert!(node_specs(&args(2, Some(5000), Some(d.clone())), &d, &wan()).is_err());
    }
}
