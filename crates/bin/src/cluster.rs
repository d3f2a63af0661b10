//! `meridian cluster init|status|latency|drain|remove` (the status picture is drawn by
//! `status_view.rs`).

use anyhow::{Context, bail};
use meridian_node::ClusterView;
use meridian_node::layout::{initial_map, initial_map_split_at};
use meridian_node::messages::{Hello, M_HELLO, M_INIT};
use meridian_transport::{Envelope, GrpcTransport, Transport};
use meridian_types::{ClusterId, GroupId, MeridianError, NodeId};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    cmd: ClusterCmd,
}

#[derive(clap::Subcommand)]
enum ClusterCmd {
    /// Create a cluster from running nodes that have not joined one.
    Init {
        /// Every node of the new cluster (comma-separated host:port).
        #[arg(
            long,
            env = "MERIDIAN_ENDPOINTS",
            value_delimiter = ',',
            required = true
        )]
        endpoints: Vec<String>,
        /// Split the key space into this many ranges, each its own Raft group.
        #[arg(long, default_value_t = 1)]
        ranges: u32,
        /// Split the key space at these keys instead (comma-separated, sorted): range 1 is
        /// ["", k1), range 2 [k1, k2), ... A placement rule governs only ranges whose keys all
        /// begin with its prefix, and ranges do not split on their own yet: split at each prefix
        /// a rule will name and at the key after its last (`eu/` and `eu0` for the prefix `eu/`).
        #[arg(long, value_delimiter = ',', conflicts_with = "ranges")]
        split_at: Option<Vec<String>>,
    },
    /// Show nodes, ranges, leaders, terms, applied indexes and health.
    Status {
        #[arg(
            long,
            env = "MERIDIAN_ENDPOINTS",
            value_delimiter = ',',
            default_value = "127.0.0.1:2379"
        )]
        endpoints: Vec<String>,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Show the round-trip matrix: region × region and node × node.
    Latency {
        #[arg(
            long,
            env = "MERIDIAN_ENDPOINTS",
            value_delimiter = ',',
            default_value = "127.0.0.1:2379"
        )]
        endpoints: Vec<String>,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Move every replica and leadership off a node, showing progress until it holds nothing.
    Drain(crate::cluster_drain::DrainArgs),
    /// Remove a drained node from the cluster (refused with `not_drained` before).
    Remove(crate::cluster_drain::RemoveArgs),
}

pub async fn run(a: ClusterArgs) -> anyhow::Result<()> {
    match a.cmd {
        ClusterCmd::Init {
            endpoints,
            ranges,
            split_at,
        } => {
            let (presplit, n) = match split_at {
                Some(keys) => {
                    let n = keys.len() as u32 + 1;
                    let keys = keys.into_iter().map(String::into_bytes).collect();
                    (Presplit::At(keys), n)
                }
                None => (Presplit::Ranges(ranges), ranges),
            };
            let id = init_cluster_with(&endpoints, presplit).await?;
            println!(
                "initialised cluster {id:016x}: {} nodes, {n} range(s)",
                endpoints.len()
            );
            Ok(())
        }
        ClusterCmd::Status { endpoints, output } => {
            let view = fetch_view(&endpoints).await?;
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", crate::status_view::render(&view));
            }
            Ok(())
        }
        ClusterCmd::Latency { endpoints, output } => {
            let view = fetch_view(&endpoints).await?;
            if output == "json" {
                println!("{}", crate::cluster_latency::render_json(&view)?);
            } else {
                print!("{}", crate::cluster_latency::render(&view));
            }
            Ok(())
        }
        ClusterCmd::Drain(a) => crate::cluster_drain::drain(a).await,
        ClusterCmd::Remove(a) => crate::cluster_drain::remove(a).await,
    }
}

fn envelope(method: &str, payload: Vec<u8>) -> Envelope {
    Envelope {
        cluster_id: ClusterId(0),
        from: NodeId(0),
        to: NodeId(0),
        group: GroupId::META,
        method: method.into(),
        payload,
        timeout: Duration::from_secs(5),
    }
}

/// How `cluster init` splits the key space.
pub enum Presplit {
    /// This many ranges over printable ASCII.
    Ranges(u32),
    /// A range boundary at each of these keys (sorted, distinct, non-empty).
    At(Vec<Vec<u8>>),
}

/// Initialises a cluster of the nodes at `endpoints`, then waits until every range has a leader.
pub async fn init_cluster(endpoints: &[String], ranges: u32) -> anyhow::Result<u64> {
    init_cluster_with(endpoints, Presplit::Ranges(ranges)).await
}

/// [`init_cluster`] with the key space split as `presplit` says.
pub async fn init_cluster_with(endpoints: &[String], presplit: Presplit) -> anyhow::Result<u64> {
    if endpoints.is_empty() {
        bail!("no endpoints given");
    }
    let t = GrpcTransport::new();
    let mut hellos = Vec::new();
    for ep in endpoints {
        let bytes = t
            .call_addr(ep, envelope(M_HELLO, Vec::new()))
            .await
            .with_context(|| format!("reach node at {ep}"))?;
        let h: Hello =
            postcard::from_bytes(&bytes).with_context(|| format!("decode the answer of {ep}"))?;
        hellos.push(h);
    }
    let cluster_id = ClusterId(rand::random::<u64>() | 1);
    let map = match &presplit {
        Presplit::Ranges(n) => initial_map(cluster_id, &hellos, *n),
        Presplit::At(keys) => initial_map_split_at(cluster_id, &hellos, keys),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let payload = postcard::to_allocvec(&map)?;
    for h in &hellos {
        let bytes = t
            .call_addr(&h.addr, envelope(M_INIT, payload.clone()))
            .await
            .with_context(|| format!("initialise node {}", h.node_id))?;
        let r: Result<(), MeridianError> = postcard::from_bytes(&bytes)?;
        r.map_err(|e| anyhow::anyhow!("node {} refused init: {e}", h.node_id))?;
    }
    wait_ready(endpoints, Duration::from_secs(60)).await?;
    Ok(cluster_id.0)
}

/// GET /v1/cluster from the first endpoint that answers.
pub async fn fetch_view(endpoints: &[String]) -> anyhow::Result<ClusterView> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut last = None;
    for ep in endpoints {
        let url = if ep.starts_with("http") {
            format!("{ep}/v1/cluster")
        } else {
            format!("http://{ep}/v1/cluster")
        };
        match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => return Ok(r.json::<ClusterView>().await?),
            Ok(r) => {
                let status = r.status();
                last = Some(anyhow::anyhow!(
                    "{ep}: {status}: {}",
                    r.text().await.unwrap_or_default()
                ))
            }
            Err(e) => last = Some(anyhow::anyhow!("{ep}: {e}")),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no endpoints given")))
}

/// Waits until the cluster map is known and every range (and the meta group) has a leader.
pub async fn wait_ready(endpoints: &[String], timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + timeout;
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    loop {
        let last = match fetch_view(endpoints).await {
            Ok(v) if !v.ranges.is_empty() && v.ranges.iter().all(|r| r.leader.is_some()) => {
                spinner.finish_and_clear();
                return Ok(());
            }
            Ok(v) => {
                let missing: Vec<String> = v
                    .ranges
                    .iter()
                    .filter(|r| r.leader.is_none())
                    .map(|r| r.id.to_string())
                    .collect();
                let led = v.ranges.len() - missing.len();
                spinner.set_message(format!(
                    "waiting for leaders: {led} of {} groups elected",
                    v.ranges.len()
                ));
                format!("ranges without a leader: {}", missing.join(", "))
            }
            Err(e) => {
                spinner.set_message("waiting for the cluster map");
                e.to_string()
            }
        };
        if started.elapsed() > Duration::from_millis(500) {
            spinner.tick();
        }
        if Instant::now() >= deadline {
            spinner.finish_and_clear();
            bail!("cluster not ready after {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
