//! Layer: bin. The `meridian` command: `server`, `cluster`, `kv`, `placement`, `bench`,
//! `playground`, `stream`.

mod bench;
mod cluster;
mod cluster_drain;
mod cluster_latency;
mod config;
mod http_api;
mod kv_cmd;
mod lease_cmd;
mod placement_cmd;
mod playground;
mod queue_cmd;
mod serve;
mod server;
mod status_view;
mod stream_cmd;
mod watch_cmd;

use clap::{Parser, Subcommand};

// mimalloc: measurably less CPU per request than the system allocator on this workload.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "A sharded, Raft-replicated, multi-region key-value store"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node.
    Server(server::ServerArgs),
    /// Create a cluster and look at it.
    Cluster(cluster::ClusterArgs),
    /// Read, write and watch keys.
    Kv(kv_cmd::KvArgs),
    /// Leases: keys that vanish when their lease is not kept alive.
    Lease(lease_cmd::LeaseArgs),
    /// Say where each key prefix's replicas and leaders live.
    Placement(placement_cmd::PlacementArgs),
    /// Measure throughput and latency against a running cluster.
    Bench(bench::BenchArgs),
    /// Durable work queues: send, receive, ack, nack.
    Queue(queue_cmd::QueueArgs),
    /// Start a 5-node, 3-region cluster on this machine to try Meridian.
    Playground(playground::PlaygroundArgs),
    /// Event streams: create, publish, read, follow, consumer groups.
    Stream(stream_cmd::StreamArgs),
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MERIDIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Transparent huge pages off for this process. mimalloc asks for them on its arenas, and a
/// 2 MiB page is zeroed whole at its first touch even when a few KiB of it are used, and again
/// after mimalloc hands part of it back. At 256 etcd-benchmark clients, page faults took
/// 7.6–10.1 % of the three servers' CPU with them and 2.4–2.9 % without (and each node held
/// about 30 MB less).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes integers only and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// The async runtime for `workers` threads (the machine's cores when `None`). One worker is a
/// single-threaded runtime: every task runs on the thread that drives it, with none of the
/// multi-threaded scheduler's hand-offs between that thread and a worker. On 2 cores with three
/// nodes (one thread each), against a multi-threaded runtime of one worker: the leader's CPU per
/// publish 8–13 % lower and publishes one at a time mostly 6–9 % faster; with more in flight,
/// within the drift (docs/benchmarks.md, fifteenth session).
fn runtime_builder(workers: Option<usize>) -> tokio::runtime::Builder {
    match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    }
}

fn main() -> std::process::ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let workers = match &cli.cmd {
        Cmd::Server(a) => match server::worker_threads(a) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("error: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let mut builder = runtime_builder(workers);
    builder.enable_all();
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Server(a) => {
                init_tracing("info,openraft=warn,fjall=warn,lsm_tree=warn");
                // Crash points exist only in test builds (feature `failpoints`); else a no-op.
                meridian_storage::failpoints::setup().map_err(|e| anyhow::anyhow!(e))?;
                server::run(a).await
            }
            Cmd::Cluster(a) => {
                init_tracing("warn");
                cluster::run(a).await
            }
            Cmd::Kv(a) => {
                init_tracing("warn");
                kv_cmd::run(a).await
            }
            Cmd::Lease(a) => {
                init_tracing("warn");
                lease_cmd::run(a).await
            }
            Cmd::Placement(a) => {
                init_tracing("warn");
                placement_cmd::run(a).await
            }
            Cmd::Bench(a) => {
                init_tracing("warn");
                bench::run(a).await
            }
            Cmd::Queue(a) => {
                init_tracing("warn");
                queue_cmd::run(a).await
            }
            Cmd::Playground(a) => {
                init_tracing("info");
                playground::run(a).await
            }
            Cmd::Stream(a) => {
                init_tracing("warn");
                stream_cmd::run(a).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
