//! `meridian server`: one node serving node RPC, etcd gRPC and HTTP on one address.

use crate::config::{FileConfig, check_addr, pick};
use anyhow::{Context, bail};
use axum::serve::{Listener, ListenerExt};
use meridian_node::{Node, NodeConfig};
use meridian_transport::{
    CoalescingIo, GrpcTransport, Transport, WanTable, WanTransport, node_rpc_service,
};
use meridian_types::NodeId;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// TOML config file; flags and MERIDIAN_* variables override it.
    #[arg(long, env = "MERIDIAN_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id (a positive integer, unique in the cluster, never reused).
    #[arg(long, env = "MERIDIAN_ID")]
    id: Option<u64>,
    /// Address to listen on for everything: node RPC, etcd gRPC and HTTP [default: 127.0.0.1:2379].
    #[arg(long, env = "MERIDIAN_LISTEN")]
    listen: Option<String>,
    /// Address other nodes and clients use to reach this node [default: the listen address].
    #[arg(long, env = "MERIDIAN_ADVERTISE")]
    advertise: Option<String>,
    /// Where the node keeps its data [default: ./meridian-data-<id>].
    #[arg(long, env = "MERIDIAN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "MERIDIAN_REGION")]
    region: Option<String>,
    #[arg(long, env = "MERIDIAN_ZONE")]
    zone: Option<String>,
    /// Join an existing cluster through these members (comma-separated host:port).
    #[arg(long, env = "MERIDIAN_JOIN", value_delimiter = ',')]
    join: Option<Vec<String>>,
    /// Acknowledge writes before they are fsynced. Unsafe: for experiments only.
    /// `MERIDIAN_NO_FSYNC` takes 1/0, true/false, yes/no, on/off.
    #[arg(long, env = "MERIDIAN_NO_FSYNC", value_parser = clap::builder::BoolishValueParser::new())]
    no_fsync: bool,
    #[arg(long, env = "MERIDIAN_HEARTBEAT_INTERVAL_MS")]
    heartbeat_interval_ms: Option<u64>,
    #[arg(long, env = "MERIDIAN_ELECTION_TIMEOUT_MIN_MS")]
    election_timeout_min_ms: Option<u64>,
    #[arg(long, env = "MERIDIAN_ELECTION_TIMEOUT_MAX_MS")]
    election_timeout_max_ms: Option<u64>,
    /// Build a snapshot (and purge the log before it) after this many entries.
    #[arg(long, env = "MERIDIAN_SNAPSHOT_LOGS_MAX")]
    snapshot_logs_max: Option<u64>,
    /// Also build one once the log appended since the last snapshot is larger than this many
    /// bytes and than that snapshot [default: 67108864, 64 MiB].
    #[arg(long, env = "MERIDIAN_SNAPSHOT_LOG_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_log_bytes: Option<u64>,
    /// A node silent this long counts as dead and its replicas are replaced [default: 60].
    #[arg(long, env = "MERIDIAN_NODE_DEAD_AFTER_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    node_dead_after_secs: Option<u64>,
    /// A system range no stream or queue claimed for this long (its creator crashed) is
    /// removed [default: 60].
    #[arg(long, env = "MERIDIAN_UNCLAIMED_RANGE_GRACE_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    unclaimed_range_grace_secs: Option<u64>,
    /// Simulate a wide-area network: delay (and lose) node-to-node calls by the regions of the
    /// two nodes. `none`, or entries like `us-east:eu-west=75ms~5ms/1%,local=1.5ms` (round
    /// trip ~ jitter / loss; `local` is within a region) [default: none].
    #[arg(long, env = "MERIDIAN_WAN")]
    wan: Option<String>,
    /// Threads that run the node's async work (requests, Raft, replication); fsyncs have a
    /// thread of their own. Like GOMAXPROCS for a Go server: nodes sharing a machine can be
    /// given a share of its cores each. 1 runs everything on one single-threaded runtime
    /// [default: the machine's cores].
    #[arg(long, env = "MERIDIAN_WORKER_THREADS", value_parser = clap::value_parser!(u64).range(1..=1024))]
    worker_threads: Option<u64>,
}

/// The worker threads `a` asks for (flag, environment or config file), if any. Read before the
/// async runtime starts, so the config file is read once more here.
pub fn worker_threads(a: &ServerArgs) -> anyhow::Result<Option<usize>> {
    if let Some(n) = a.worker_threads {
        return Ok(Some(n as usize));
    }
    let file = match &a.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    match file.worker_threads {
        Some(n) if !(1..=1024).contains(&n) => {
            bail!("worker_threads in the config file must be 1 to 1024, not {n}")
        }
        n => Ok(n),
    }
}

/// How long a stopping node waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

fn node_config(a: &ServerArgs, f: FileConfig, listen: &str) -> anyhow::Result<NodeConfig> {
    let id = pick(a.id, f.id, || 0);
    if id == 0 {
        bail!("--id is required (a positive integer unique in the cluster)");
    }
    let advertise = pick(a.advertise.clone(), f.advertise.clone(), || {
        listen.to_string()
    });
    check_addr("--advertise", &advertise)?;
    if advertise.starts_with("0.0.0.0:") || advertise.starts_with("[::]:") {
        bail!(
            "--advertise must be an address others can reach, not {advertise}; set --advertise when listening on all interfaces"
        );
    }
    let data_dir = pick(a.data_dir.clone(), f.data_dir.clone(), || {
        PathBuf::from(format!("meridian-data-{id}"))
    });
    let mut cfg = NodeConfig::new(NodeId(id), advertise, data_dir);
    cfg.region = pick(a.region.clone(), f.region.clone(), || "default".into());
    cfg.zone = pick(a.zone.clone(), f.zone.clone(), || "default".into());
    cfg.join = pick(a.join.clone(), f.join.clone(), Vec::new);
    cfg.fsync = !a.no_fsync && f.fsync.unwrap_or(true);
    let d = cfg.raft.clone();
    cfg.raft.heartbeat_interval_ms = pick(a.heartbeat_interval_ms, f.heartbeat_interval_ms, || {
        d.heartbeat_interval_ms
    });
    cfg.raft.election_timeout_min_ms =
        pick(a.election_timeout_min_ms, f.election_timeout_min_ms, || {
            d.election_timeout_min_ms
        });
    cfg.raft.election_timeout_max_ms =
        pick(a.election_timeout_max_ms, f.election_timeout_max_ms, || {
            d.election_timeout_max_ms
        });
    cfg.raft.snapshot_logs_max = pick(a.snapshot_logs_max, f.snapshot_logs_max, || {
        d.snapshot_logs_max
    });
    cfg.raft.snapshot_log_bytes_min = pick(a.snapshot_log_bytes, f.snapshot_log_bytes, || {
        d.snapshot_log_bytes_min
    });
    if cfg.raft.snapshot_log_bytes_min == 0 {
        bail!("snapshot_log_bytes in the config file must be at least 1");
    }
    let secs = |s: u64| Duration::from_secs(s);
    cfg.node_dead_after = pick(
        a.node_dead_after_secs.map(secs),
        f.node_dead_after_secs.map(secs),
        || cfg.node_dead_after,
    );
    cfg.unclaimed_range_grace = pick(
        a.unclaimed_range_grace_secs.map(secs),
        f.unclaimed_range_grace_secs.map(secs),
        || cfg.unclaimed_range_grace,
    );
    if let Some(ms) = f.request_timeout_ms {
        cfg.request_timeout = Duration::from_millis(ms);
    }
    Ok(cfg)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run(a: ServerArgs) -> anyhow::Result<()> {
    let file = match &a.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let listen = pick(a.listen.clone(), file.listen.clone(), || {
        "127.0.0.1:2379".into()
    });
    check_addr("--listen", &listen)?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    let bound = listener
        .local_addr()
        .context("read the bound address")?
        .to_string();
    // With port 0 the advertised address is the one actually bound.
    let effective_listen = if listen.ends_with(":0") {
        bound.clone()
    } else {
        listen.clone()
    };
    let wan = pick(a.wan.clone(), file.wan.clone(), || "none".into());
    let wan = WanTable::parse(&wan).context("parse --wan")?;
    let timing_given = a.heartbeat_interval_ms.is_some() || file.heartbeat_interval_ms.is_some();
    let mut cfg = node_config(&a, file, &effective_listen)?;
    if a.advertise.is_none() && listen.ends_with(":0") {
        cfg.advertise_addr = bound.clone();
    }
    if !wan.is_none() && !timing_given {
        fit_raft_timing_to_wan(&mut cfg.raft, &wan);
    }
    let id = cfg.id;
    let join = cfg.join.clone();
    let grpc: Arc<dyn Transport> = Arc::new(GrpcTransport::new());
    let transport: Arc<dyn Transport> = if wan.is_none() {
        grpc
    } else {
        tracing::info!(node_id = id.0, region = %cfg.region, wan = %wan, "simulating a wide-area network");
        Arc::new(WanTransport::new(grpc, wan, cfg.region.clone()))
    };
    let node = Node::start(cfg, transport)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    // Node RPC rides on the same address as the client APIs, under its gRPC service path.
    let app = meridian_api::client_router(node.clone()).route_service(
        "/meridian.node.v1.NodeRpc/{*method}",
        node_rpc_service(node.handler()),
    );

    println!("meridian node {id} listening on {bound}");
    tracing::info!(node_id = id.0, addr = %bound, cluster_id = node.cluster_id(), "serving");

    if !join.is_empty() && node.cluster_id() == 0 {
        let n = node.clone();
        tokio::spawn(async move {
            let mut attempt = 0u32;
            loop {
                match n.join(&join).await {
                    Ok(()) => {
                        tracing::info!(cluster_id = n.cluster_id(), "joined the cluster");
                        break;
                    }
                    Err(e)
                        if e.code.is_retryable()
                            || e.code == meridian_types::ErrorCode::NotInitialized =>
                    {
                        attempt += 1;
                        tracing::warn!(attempt, error = %e, "join failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot join the cluster");
                        break;
                    }
                }
            }
        });
    }

    // Small RPCs must not wait for Nagle's algorithm (a 40 ms stall against delayed ACKs);
    // instead, responses that are ready together leave together (see `CoalescingIo`).
    let listener = Coalescing(listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "set TCP_NODELAY");
        }
    }));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        crate::serve::serve(listener, app, async move {
            let _ = stop_rx.await;
        })
        .await
    });
    shutdown_signal().await;
    tracing::info!(node_id = id.0, "shutting down");
    let _ = stop_tx.send(());
    // Peers keep long-lived connections open; give in-flight requests a moment, not forever.
    if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
        tracing::warn!("connections still open after the grace period; closing");
    }
    node.shutdown().await;
    Ok(())
}

/// A listener whose connections coalesce their writes ([`CoalescingIo`]).
struct Coalescing<L>(L);

impl<L: Listener> Listener for Coalescing<L> {
    type Io = CoalescingIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (CoalescingIo::new(io), addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// openraft gives a heartbeat its interval to come back and bases leader leases and the
/// followers' freshness proofs on heartbeats that do: on a WAN whose round trips exceed the
/// interval, every heartbeat to a far region would time out. So, unless the heartbeat interval is
/// set explicitly, it becomes 1.5 times the table's longest round trip (with jitter), and the
/// election timeouts at least 5 and 10 times that.
fn fit_raft_timing_to_wan(raft: &mut meridian_consensus::GroupConfig, wan: &WanTable) {
    let worst = wan
        .pairs()
        .map(|(_, _, l)| l.rtt + l.jitter)
        .chain(wan.local().map(|l| l.rtt + l.jitter))
        .max()
        .unwrap_or_default();
    let hb = (worst.as_millis() as u64 * 3).div_ceil(2);
    if hb > raft.heartbeat_interval_ms {
        raft.heartbeat_interval_ms = hb;
        raft.election_timeout_min_ms = raft.election_timeout_min_ms.max(hb * 5);
        raft.election_timeout_max_ms = raft.election_timeout_max_ms.max(hb * 10);
        tracing::info!(
            heartbeat_ms = hb,
            election_min_ms = raft.election_timeout_min_ms,
            "raft timing fitted to the simulated WAN"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: ServerArgs,
    }

    fn args(extra: &[&str]) -> ServerArgs {
        let mut v = vec!["meridian", "--id", "1"];
        v.extend_from_slice(extra);
        Cli::try_parse_from(v).unwrap().a
    }

    #[test]
    fn placement_timings_come_from_flags_then_file_then_defaults() {
        let file = || FileConfig {
            node_dead_after_secs: Some(9),
            unclaimed_range_grace_secs: Some(30),
            ..Default::default()
        };
        let flags = args(&["--node-dead-after-secs", "5"]);
        let cfg = node_config(&flags, file(), "127.0.0.1:1").unwrap();
        assert_eq!(cfg.node_dead_after, Duration::from_secs(5));
        assert_eq!(cfg.unclaimed_range_grace, Duration::from_secs(30));
        let cfg = node_config(&args(&[]), FileConfig::default(), "127.0.0.1:1").unwrap();
        assert_eq!(cfg.node_dead_after, meridian_node::NODE_DEAD_AFTER_DEFAULT);
        assert_eq!(
            cfg.unclaimed_range_grace,
            meridian_node::UNCLAIMED_RANGE_GRACE_DEFAULT
        );
        let zero = Cli::try_parse_from(["meridian", "--unclaimed-range-grace-secs", "0"]);
        assert!(zero.is_err());
    }

    #[test]
    fn snapshot_log_bytes_come_from_the_flag_then_the_file_and_zero_is_refused() {
        let file = |n| FileConfig {
            snapshot_log_bytes: Some(n),
            ..Default::default()
        };
        let cfg = node_config(&args(&[]), FileConfig::default(), "127.0.0.1:1").unwrap();
        assert_eq!(cfg.raft.snapshot_log_bytes_min, 64 << 20);
        let cfg = node_config(&args(&[]), file(4096), "127.0.0.1:1").unwrap();
        assert_eq!(cfg.raft.snapshot_log_bytes_min, 4096);
        let flags = args(&["--snapshot-log-bytes", "1000"]);
        let cfg = node_config(&flags, file(4096), "127.0.0.1:1").unwrap();
        assert_eq!(cfg.raft.snapshot_log_bytes_min, 1000);
        let err = node_config(&args(&[]), file(0), "127.0.0.1:1").unwrap_err();
        assert!(err.to_string().contains("snapshot_log_bytes"), "{err}");
        assert!(Cli::try_parse_from(["meridian", "--snapshot-log-bytes", "0"]).is_err());
    }

    #[test]
    fn no_fsync_takes_the_usual_spellings_of_a_boolean() {
        assert!(args(&["--no-fsync"]).no_fsync);
        assert!(!args(&[]).no_fsync);
        let from_env = |v: &str| {
            // SAFETY: nextest runs each test in its own process, and nothing else in this test
            // reads or writes the environment while it runs.
            unsafe { std::env::set_var("MERIDIAN_NO_FSYNC", v) };
            let parsed = Cli::try_parse_from(["meridian", "--id", "1"]).map(|c| c.a.no_fsync);
            unsafe { std::env::remove_var("MERIDIAN_NO_FSYNC") };
            parsed
        };
        for (v, want) in [
            ("1", true),
            ("true", true),
            ("yes", true),
            ("0", false),
            ("off", false),
        ] {
            assert_eq!(from_env(v).unwrap(), want, "MERIDIAN_NO_FSYNC={v}");
        }
        assert!(from_env("maybe").is_err());
    }

    #[test]
    fn worker_threads_come_from_the_flag_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.toml");
        std::fs::write(&file, "worker_threads = 3\n").unwrap();
        let f = file.to_str().unwrap();
        assert_eq!(worker_threads(&args(&[])).unwrap(), None);
        assert_eq!(worker_threads(&args(&["--config", f])).unwrap(), Some(3));
        let both = args(&["--config", f, "--worker-threads", "1"]);
        assert_eq!(worker_threads(&both).unwrap(), Some(1));
        std::fs::write(&file, "worker_threads = 0\n").unwrap();
        let err = worker_threads(&args(&["--config", f])).unwrap_err();
        assert!(err.to_string().contains("1 to 1024"), "{err}");
        assert!(Cli::try_parse_from(["meridian", "--worker-threads", "0"]).is_err());
    }
}
