//! `meridian bench put|get|mixed|publish|queue` (`publish`: see `bench/publish.rs`, `queue`:
//! `bench/queue.rs`): throughput and latency percentiles against a running
//! cluster, over etcd's gRPC `KV` service (the path etcd's own benchmark tool takes, so the
//! figures compare).
//!
//! `put` writes keys 0, 1, 2, ... in order; `get` and `mixed` first write their key set (not
//! measured), then read (and for `mixed` write) uniformly random keys. Each of `--clients`
//! tasks has one request in flight at a time; the tasks share `--conns` connections.

mod keys;
mod publish;
mod queue;
mod summary;
mod worker;

use crate::kv_cmd::{Output, parse_consistency};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use keys::{check_key_space, key_of, make_value};
use meridian_client::{Client, Consistency};
use rand::SeedableRng;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use summary::{RunInfo, Summary};
use worker::{Pool, Run, RunSpec, Workload};

/// Most client tasks of one run.
const CLIENTS_MAX: usize = 10_000;
/// Most connections of one run, and the default when `--clients` is larger.
const CONNS_DEFAULT_MAX: usize = 100;
const CONNS_MAX: usize = 1_000;
/// Distinct keys of `get` and `mixed` runs unless `--keys` says otherwise.
const READ_KEYS_DEFAULT: u64 = 1_000;
/// Largest value a run may write (the server's own limit may be lower).
const VALUE_SIZE_MAX: usize = 16 << 20;
/// How often the progress bar redraws.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

#[derive(clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    op: BenchOp,
    /// Nodes to send requests to (comma-separated host:port); connections go round-robin.
    #[arg(
        long,
        env = "MERIDIAN_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// gRPC connections the clients share [default: min(clients, 100)]; `publish` with
    /// `--target-leader`: connections to each partition's leader [default: 1].
    #[arg(long)]
    conns: Option<usize>,
    /// Requests to send in all.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Key size in bytes (keys are zero-padded decimal indexes).
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 128)]
    value_size: usize,
    /// Distinct keys [default: --total for put, 1000 for get and mixed].
    #[arg(long)]
    keys: Option<u64>,
    /// Consistency of reads: linearizable, lease, bounded:<ms>, local.
    #[arg(long, value_parser = parse_consistency, default_value = "linearizable")]
    consistency: Consistency,
    /// Share of reads in a mixed run, from 0 to 1.
    #[arg(long, default_value_t = 0.9)]
    read_ratio: f64,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Send each request to the node leading its key's range (from GET /v1/cluster), saving
    /// the forwarding hop.
    #[arg(long)]
    target_leader: bool,
    /// `publish`: partitions of the stream the run creates.
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    /// `publish`: publish to this existing stream instead of creating one.
    #[arg(long)]
    stream: Option<String>,
    /// `publish`: also measure publish-to-consume latency (a follower per partition).
    #[arg(long)]
    e2e: bool,
    /// `publish`: publishes each publisher keeps in flight, pipelined over one `PublishStream`
    /// call (as a NATS client's asynchronous publishes); 1 is one unary `Publish` at a time.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// `publish`: each publish is a unary `Publish` call (an HTTP/2 stream of its own) instead
    /// of a request on its connection's shared `PublishStream` call (`meridian_client::Publisher`).
    #[arg(long)]
    unary: bool,
    /// `publish`: unmeasured publishes before the measured run.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BenchOp {
    /// Sequential writes.
    Put,
    /// Random reads of a preloaded key set.
    Get,
    /// Random reads and writes (see --read-ratio) over a preloaded key set.
    Mixed,
    /// Stream publishes (see --partitions, --e2e).
    Publish,
    /// Work queue: --clients producers send --total messages of --value-size bytes while
    /// consumers receive and ack them (see `bench/queue.rs`).
    Queue,
}

impl BenchOp {
    fn as_str(self) -> &'static str {
        match self {
            BenchOp::Put => "put",
            BenchOp::Get => "get",
            BenchOp::Mixed => "mixed",
            BenchOp::Publish => "publish",
            BenchOp::Queue => "queue",
        }
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    if args.op == BenchOp::Queue {
        return queue::run(&args).await;
    }
    let conns = args.conns.unwrap_or(args.clients.min(CONNS_DEFAULT_MAX));
    if args.op == BenchOp::Publish {
        return publish::run(publish::PublishArgs {
            endpoints: &args.endpoints,
            clients: args.clients,
            // With --target-leader, connections per partition leader (one unless given).
            conns: if args.target_leader {
                args.conns.unwrap_or(1)
            } else {
                conns
            },
            unary: args.unary,
            total: args.total,
            value_size: args.value_size,
            partitions: args.partitions,
            stream: args.stream.clone(),
            e2e: args.e2e,
            in_flight: args.in_flight,
            warmup: args.warmup,
            target_leader: args.target_leader,
            output: args.output,
        })
        .await;
    }
    let keys = args.keys.unwrap_or(match args.op {
        BenchOp::Put => args.total,
        BenchOp::Get | BenchOp::Mixed | BenchOp::Publish | BenchOp::Queue => READ_KEYS_DEFAULT,
    });
    check_key_space(keys, args.key_size)?;
    let endpoints = meridian_client::parse_endpoints(&args.endpoints)?;
    let consistency = args.consistency;
    let show_progress = args.output == Output::Text && std::io::stdout().is_terminal();
    let value = make_value(args.value_size, &mut rand::rngs::StdRng::from_os_rng());

    let mut pool_endpoints = endpoints.clone();
    let mut topology = None;
    if args.target_leader {
        let t = Client::connect(endpoints.clone())?.topology().await?;
        let leaders = t
            .leader_addrs()
            .into_iter()
            .map(meridian_client::parse_endpoint)
            .collect::<Result<Vec<_>, _>>()?;
        if leaders.is_empty() {
            eprintln!("no range has a leader yet; sending to the given endpoints");
        } else {
            pool_endpoints = leaders;
            topology = Some(t);
        }
    }
    let mut pool = Pool::new(&pool_endpoints, conns)?;
    if let Some(t) = topology {
        pool.route_to_leaders(t)?;
    }

    if args.op != BenchOp::Put {
        preload(&endpoints, &args, keys, &value, show_progress).await?;
    }

    let workload = match args.op {
        BenchOp::Put => Workload::SequentialPuts,
        BenchOp::Get => Workload::RandomGets,
        BenchOp::Mixed | BenchOp::Publish | BenchOp::Queue => Workload::Mixed {
            read_ratio: args.read_ratio,
        },
    };
    let info = RunInfo {
        op: args.op.as_str(),
        clients: args.clients,
        conns: pool.len(),
        consistency: consistency.to_string(),
        key_size: args.key_size,
        value_size: args.value_size,
        keys,
        target_leader: args.target_leader,
    };
    let spec = RunSpec {
        workload,
        total: args.total,
        keys,
        key_size: args.key_size,
        value,
        consistency,
    };
    let progress = progress_bar(args.total, args.op.as_str(), show_progress);
    let run = Arc::new(Run::new(spec, pool, progress.clone()));
    let started = Instant::now();
    let recorded = worker::drive(run, args.clients).await?;
    let elapsed = started.elapsed();
    progress.finish_and_clear();

    let summary = Summary::new(info, &recorded, elapsed)?;
    match args.output {
        Output::Text => print!("{}", summary.render_text()),
        Output::Json => println!("{}", serde_json::to_string(&summary)?),
    }
    if summary.ok == 0 {
        let codes: Vec<String> = summary
            .errors_by_code
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        bail!("every request failed ({})", codes.join(", "));
    }
    Ok(())
}

fn check_args(a: &BenchArgs) -> anyhow::Result<()> {
    if !(1..=CLIENTS_MAX).contains(&a.clients) {
        bail!("--clients must be from 1 to {CLIENTS_MAX}");
    }
    if let Some(c) = a.conns
        && !(1..=CONNS_MAX).contains(&c)
    {
        bail!("--conns must be from 1 to {CONNS_MAX}");
    }
    if a.total == 0 {
        bail!("--total must be at least 1");
    }
    if a.keys == Some(0) {
        bail!("--keys must be at least 1");
    }
    if a.value_size > VALUE_SIZE_MAX {
        bail!("--value-size must be at most {VALUE_SIZE_MAX}");
    }
    let in_flight_max = meridian_api::grpc_streams::PUBLISH_STREAM_IN_FLIGHT_MAX;
    if !(1..=in_flight_max).contains(&a.in_flight) {
        bail!("--in-flight must be from 1 to {in_flight_max}");
    }
    if a.in_flight > 1 && a.op != BenchOp::Publish {
        bail!("--in-flight applies to `bench publish` only");
    }
    if a.unary && (a.op != BenchOp::Publish || a.in_flight > 1) {
        bail!("--unary applies to `bench publish` with one publish in flight per publisher");
    }
    if !(0.0..=1.0).contains(&a.read_ratio) {
        bail!("--read-ratio must be from 0 to 1");
    }
    Ok(())
}

/// Writes keys `0..keys` before a read run, with the SDK client (which retries), not measured.
async fn preload(
    endpoints: &[String],
    args: &BenchArgs,
    keys: u64,
    value: &[u8],
    show_progress: bool,
) -> anyhow::Result<()> {
    let client = Client::connect(endpoints.to_vec())?;
    let progress = progress_bar(keys, "load", show_progress);
    let next = Arc::new(AtomicU64::new(0));
    let value: Arc<[u8]> = Arc::from(value);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args
        .clients
        .min(usize::try_from(keys).unwrap_or(usize::MAX))
    {
        let (client, next, value, progress) = (
            client.clone(),
            next.clone(),
            value.clone(),
            progress.clone(),
        );
        let key_size = args.key_size;
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys {
                    return Ok::<(), meridian_client::ClientError>(());
                }
                client.put(key_of(i, key_size), &value[..]).await?;
                progress.inc(1);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("join a loading task")?
            .map_err(|e| anyhow::anyhow!("write the key set: {e}"))?;
    }
    progress.finish_and_clear();
    if show_progress {
        eprintln!(
            "loaded {keys} keys in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn progress_bar(len: u64, label: &'static str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>5} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(label);
    bar.enable_steady_tick(PROGRESS_TICK);
    bar
}
