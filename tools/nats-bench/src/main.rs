//! Load generator for `scripts/bench-nats.sh`: publishes fixed-size messages to a NATS
//! JetStream stream and measures publish-to-ack latency (each publish is timed from just before
//! it is handed to the client until its JetStream PubAck arrives) and publish-to-consume latency
//! (a consumer on the same stream reads the publish time from the payload).
//!
//! Subcommands:
//!   nats-bench run   --urls U1,U2,U3 --scenario NAME --publishers P --inflight W --total N [...]
//!       Recreates the stream (file storage, R replicas), warms it up, then P publishers, each
//!       on its own connection (or sharing --conns C), publish N messages between them with at
//!       most W publishes awaiting their ack per publisher (W = 1: publish, await the ack,
//!       publish the next).
//!       Prints one JSON line on stdout and a human summary on stderr.
//!   nats-bench table FILE...
//!       Prints the JSON lines of earlier runs as one table.
//!
//! Server names are expected to be n1, n2, ... in the order of --urls (the script names them so),
//! which is how `--connect leader` finds the stream leader's client URL.

use async_nats::jetstream::{self, consumer, stream};
use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Process-wide monotonic origin; payloads carry nanoseconds since it.
static ORIGIN: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

const SUBJECT: &str = "bench.msg";
/// Marks a measured message (warm-up messages carry 0).
const MAGIC: u32 = 0x4e42_4e43;

fn usage() -> ! {
    eprintln!(
        "usage:\n  nats-bench run --urls U1,U2,U3 [--scenario NAME] [--publishers 1] [--inflight 1] \
         [--total 20000] [--size 128] [--replicas 3] [--stream BENCH] [--e2e 1] \
         [--connect leader|spread] [--conns N] [--warmup 500] [--server-pids P1,P2,P3] [--server-version V]\n  \
         nats-bench table FILE..."
    );
    std::process::exit(2)
}

fn parse_flags(args: &[String]) -> HashMap<String, String> {
    let mut m = HashMap::new();
    let mut i = 0;
    while i < args.len() {
        let Some(k) = args[i].strip_prefix("--") else {
            eprintln!("unexpected argument {}", args[i]);
            usage()
        };
        let Some(v) = args.get(i + 1) else {
            eprintln!("--{k} needs a value");
            usage()
        };
        m.insert(k.to_string(), v.clone());
        i += 2;
    }
    m
}

struct Opts {
    urls: Vec<String>,
    scenario: String,
    publishers: usize,
    inflight: usize,
    total: usize,
    size: usize,
    replicas: usize,
    stream: String,
    e2e: bool,
    connect_leader: bool,
    /// Connections the publishers share (publisher i uses connection i mod conns); 0 = one each.
    conns: usize,
    warmup: usize,
    server_pids: Vec<u32>,
    server_version: String,
}

fn opts(m: &HashMap<String, String>) -> Opts {
    let num = |k: &str, d: usize| -> usize {
        m.get(k).map_or(d, |v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("--{k}: not a number: {v}");
                usage()
            })
        })
    };
    let urls: Vec<String> = m
        .get("urls")
        .unwrap_or_else(|| usage())
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let o = Opts {
        urls,
        scenario: m.get("scenario").cloned().unwrap_or_else(|| "run".into()),
        publishers: num("publishers", 1).max(1),
        inflight: num("inflight", 1).max(1),
        total: num("total", 20_000),
        size: num("size", 128),
        replicas: num("replicas", 3),
        stream: m.get("stream").cloned().unwrap_or_else(|| "BENCH".into()),
        e2e: m.get("e2e").is_none_or(|v| v != "0" && v != "false"),
        connect_leader: match m.get("connect").map(String::as_str) {
            None | Some("leader") => true,
            Some("spread") => false,
            Some(v) => {
                eprintln!("--connect: leader or spread, not {v}");
                usage()
            }
        },
        conns: num("conns", 0),
        warmup: num("warmup", 500),
        server_pids: m
            .get("server-pids")
            .map(|s| s.split(',').filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default(),
        server_version: m.get("server-version").cloned().unwrap_or_default(),
    };
    if o.size < 16 {
        eprintln!("--size must be at least 16 (timestamp and marker)");
        usage()
    }
    if o.total < o.publishers {
        eprintln!("--total must be at least --publishers");
        usage()
    }
    o
}

/// Connects to one URL or a comma-separated list, retrying for 30 s.
async fn connect(url: &str) -> Res<async_nats::Client> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let list: Vec<&str> = url.split(',').collect();
    loop {
        match async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(list.as_slice())
            .await
        {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect {url}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(format!("connect {url}: {e}").into()),
        }
    }
}

fn js(client: async_nats::Client) -> jetstream::Context {
    jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .build(client)
}

/// Deletes and recreates the stream, retrying while JetStream is still electing its meta
/// leader, then waits until the stream has a leader and every replica is current.
async fn recreate_stream(ctx: &jetstream::Context, o: &Opts) -> Res<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let _ = ctx.delete_stream(&o.stream).await;
    let cfg = stream::Config {
        name: o.stream.clone(),
        subjects: vec!["bench.>".into()],
        storage: stream::StorageType::File,
        num_replicas: o.replicas,
        ..Default::default()
    };
    let mut s = loop {
        match ctx.create_stream(cfg.clone()).await {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("create stream {}: {e}; retrying", o.stream);
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = ctx.delete_stream(&o.stream).await;
            }
            Err(e) => return Err(format!("create stream {}: {e}", o.stream).into()),
        }
    };
    loop {
        let info = s.info().await?;
        if let Some(c) = &info.cluster {
            let leader = c.leader.clone().unwrap_or_default();
            let followers_ok =
                c.replicas.len() + 1 >= o.replicas && c.replicas.iter().all(|p| p.current);
            if !leader.is_empty() && followers_ok {
                return Ok(leader);
            }
        } else if o.replicas <= 1 {
            return Ok(String::new());
        }
        if Instant::now() > deadline {
            return Err("stream has no leader with current replicas after 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn payload(size: usize, measured: bool, seq: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64_le(now_ns());
    b.put_u32_le(if measured { MAGIC } else { 0 });
    b.put_u32_le(seq as u32);
    b.resize(size, b'x');
    b.freeze()
}

#[derive(Default)]
struct PubResult {
    lat_us: Vec<u64>,
    errors: HashMap<String, u64>,
    done_at: Option<Instant>,
}

/// One publisher: `n` messages, at most `window` awaiting their ack at any time.
async fn publisher(ctx: jetstream::Context, n: usize, window: usize, size: usize) -> PubResult {
    let mut r = PubResult {
        lat_us: Vec::with_capacity(n),
        ..Default::default()
    };
    let mut pending = FuturesUnordered::new();
    let record = |r: &mut PubResult, t0: Instant, res: Result<(), String>| match res {
        Ok(()) => r.lat_us.push(t0.elapsed().as_micros() as u64),
        Err(e) => *r.errors.entry(e).or_insert(0) += 1,
    };
    for i in 0..n {
        while pending.len() >= window {
            let (t0, res) = pending.next().await.expect("pending is not empty");
            record(&mut r, t0, res);
        }
        let t0 = Instant::now();
        match ctx.publish(SUBJECT, payload(size, true, i as u64)).await {
            Ok(ack) => pending.push(async move {
                let res = ack.await.map(|_| ()).map_err(|e| e.kind().to_string());
                (t0, res)
            }),
            Err(e) => record(&mut r, t0, Err(e.kind().to_string())),
        }
    }
    while let Some((t0, res)) = pending.next().await {
        record(&mut r, t0, res);
    }
    r.done_at = Some(Instant::now());
    r
}

fn pct(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let idx = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len()) - 1;
    sorted_us[idx] as f64 / 1000.0
}

fn summary(mut v: Vec<u64>) -> Value {
    v.sort_unstable();
    json!({
        "p50": pct(&v, 0.50), "p90": pct(&v, 0.90), "p99": pct(&v, 0.99),
        "p999": pct(&v, 0.999), "max": pct(&v, 1.0),
    })
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User plus system CPU seconds of a process (`self` or a pid), from /proc.
fn cpu_s(pid: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the ")" that closes the command name: state is field 3, utime 14, stime 15.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / clk_tck()
}

async fn run(o: Opts) -> Res<()> {
    ORIGIN.get_or_init(Instant::now);
    let admin = connect(&o.urls.join(",")).await?;
    let actx = js(admin.clone());
    let leader = recreate_stream(&actx, &o).await?;

    // Which server each publisher connects to.
    let leader_url = leader
        .strip_prefix('n')
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| o.urls.get(i.wrapping_sub(1)))
        .cloned();
    let target = |i: usize| -> String {
        match (&leader_url, o.connect_leader) {
            (Some(u), true) => u.clone(),
            _ => o.urls[i % o.urls.len()].clone(),
        }
    };

    // Warm-up: connections, the stream's first blocks, the leader's path to its followers.
    {
        let c = js(connect(&target(0)).await?);
        for i in 0..o.warmup {
            c.publish(SUBJECT, payload(o.size, false, i as u64))
                .await?
                .await?;
        }
    }

    // The consumer: an ordered push consumer (no acks, flow control) from new messages on,
    // created before the first measured publish.
    let consumer_task = if o.e2e {
        let cclient = connect(&target(0)).await?;
        let cctx = js(cclient.clone());
        let s = cctx.get_stream(&o.stream).await?;
        let cons = s
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: cclient.new_inbox(),
                deliver_policy: consumer::DeliverPolicy::New,
                ..Default::default()
            })
            .await?;
        let mut msgs = cons.messages().await?;
        let want = o.total;
        Some(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(want);
            let mut errors = 0u64;
            while lat.len() < want {
                match tokio::time::timeout(Duration::from_secs(30), msgs.next()).await {
                    Ok(Some(Ok(m))) => {
                        let p = &m.payload;
                        if p.len() >= 16
                            && u32::from_le_bytes(p[8..12].try_into().unwrap()) == MAGIC
                        {
                            let sent = u64::from_le_bytes(p[0..8].try_into().unwrap());
                            lat.push(now_ns().saturating_sub(sent) / 1000);
                        }
                    }
                    Ok(Some(Err(e))) => {
                        errors += 1;
                        eprintln!("consumer: {e}");
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            let _keep = cclient; // the subscription lives on this connection
            (lat, errors)
        }))
    } else {
        None
    };

    // Publishers, each on its own connection unless --conns makes them share.
    let conns = if o.conns == 0 {
        o.publishers
    } else {
        o.conns.min(o.publishers)
    };
    let mut shared = Vec::with_capacity(conns);
    for i in 0..conns {
        shared.push(js(connect(&target(i)).await?));
    }
    let ctxs: Vec<jetstream::Context> = (0..o.publishers)
        .map(|i| shared[i % conns].clone())
        .collect();
    let cpu0_self = cpu_s("self");
    let cpu0_srv: Vec<f64> = o
        .server_pids
        .iter()
        .map(|p| cpu_s(&p.to_string()))
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(o.publishers + 1));
    let mut handles = Vec::with_capacity(o.publishers);
    for (i, ctx) in ctxs.into_iter().enumerate() {
        let n = o.total / o.publishers + usize::from(i < o.total % o.publishers);
        let b = barrier.clone();
        let (w, sz) = (o.inflight, o.size);
        handles.push(tokio::spawn(async move {
            b.wait().await;
            publisher(ctx, n, w, sz).await
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut lat = Vec::with_capacity(o.total);
    let mut errors: HashMap<String, u64> = HashMap::new();
    let mut end = start;
    for h in handles {
        let r = h.await?;
        lat.extend_from_slice(&r.lat_us);
        for (k, v) in r.errors {
            *errors.entry(k).or_insert(0) += v;
        }
        if let Some(d) = r.done_at {
            end = end.max(d);
        }
    }
    let elapsed = end.duration_since(start).as_secs_f64();
    let client_cpu = cpu_s("self") - cpu0_self;
    let server_cpu: f64 = o
        .server_pids
        .iter()
        .zip(&cpu0_srv)
        .map(|(p, c0)| cpu_s(&p.to_string()) - c0)
        .sum();
    let ok = lat.len();
    let (e2e, consumed, consumer_errors) = match consumer_task {
        Some(t) => {
            let (l, e) = t.await?;
            let n = l.len();
            (summary(l), n, e)
        }
        None => (Value::Null, 0, 0),
    };
    let _ = actx.delete_stream(&o.stream).await;

    let out = json!({
        "system": "nats-jetstream",
        "server_version": o.server_version,
        "scenario": o.scenario,
        "publishers": o.publishers,
        "conns": conns,
        "inflight_per_publisher": o.inflight,
        "max_inflight": o.publishers * o.inflight,
        "msg_size": o.size,
        "replicas": o.replicas,
        "storage": "file",
        "connect": if o.connect_leader { "leader" } else { "spread" },
        "stream_leader": leader,
        "total": o.total,
        "ok": ok,
        "errors": errors.values().sum::<u64>(),
        "errors_by_kind": errors,
        "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
        "msgs_per_sec": if elapsed > 0.0 { (ok as f64 / elapsed).round() } else { 0.0 },
        "publish_ack_ms": summary(lat),
        "e2e_ms": e2e,
        "consumed": consumed,
        "consumer_errors": consumer_errors,
        "client_cpu_s": (client_cpu * 100.0).round() / 100.0,
        "servers_cpu_s": (server_cpu * 100.0).round() / 100.0,
        // Share of one core over the measured run (this machine has few cores: a client near
        // 100% would be the bottleneck).
        "client_cpu_pct": pct_of(client_cpu, elapsed),
        "servers_cpu_pct": pct_of(server_cpu, elapsed),
    });
    eprintln!("{}", render(std::slice::from_ref(&out)));
    println!("{out}");
    Ok(())
}

fn pct_of(cpu: f64, elapsed: f64) -> u64 {
    if elapsed > 0.0 {
        (cpu / elapsed * 100.0).round() as u64
    } else {
        0
    }
}

fn f(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    match cur {
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if x.fract() == 0.0 && x.abs() >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        }
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn render(rows: &[Value]) -> String {
    let head = [
        "scenario",
        "pubs",
        "in-flight",
        "ok",
        "err",
        "msgs/s",
        "ack p50",
        "ack p90",
        "ack p99",
        "ack max",
        "e2e p50",
        "e2e p99",
        "cli cpu%",
        "srv cpu%",
    ];
    let mut table: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        table.push(vec![
            f(r, &["scenario"]),
            f(r, &["publishers"]),
            f(r, &["max_inflight"]),
            f(r, &["ok"]),
            f(r, &["errors"]),
            f(r, &["msgs_per_sec"]),
            f(r, &["publish_ack_ms", "p50"]),
            f(r, &["publish_ack_ms", "p90"]),
            f(r, &["publish_ack_ms", "p99"]),
            f(r, &["publish_ack_ms", "max"]),
            f(r, &["e2e_ms", "p50"]),
            f(r, &["e2e_ms", "p99"]),
            f(r, &["client_cpu_pct"]),
            f(r, &["servers_cpu_pct"]),
        ]);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|c| table.iter().map(|row| row[c].len()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for (i, row) in table.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, x)| {
                if c == 0 {
                    format!("{x:<w$}", w = widths[c])
                } else {
                    format!("{x:>w$}", w = widths[c])
                }
            })
            .collect();
        s.push_str(cells.join("  ").trim_end());
        s.push('\n');
        if i == 0 {
            s.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            s.push('\n');
        }
    }
    s.push_str("latencies in ms (ack: publish to JetStream PubAck; e2e: publish to delivery to a consumer);\ncpu%: user+system CPU over the measured run as a share of one core (client: nats-bench; srv: the 3 nats-servers)\n");
    s
}

fn table(files: &[String]) -> Res<()> {
    let mut rows = Vec::new();
    for path in files {
        for line in std::fs::read_to_string(path)?.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                if v.is_object() {
                    rows.push(v);
                }
            }
        }
    }
    print!("{}", render(&rows));
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else { usage() };
    let result = match cmd.as_str() {
        "run" => {
            let o = opts(&parse_flags(&args[1..]));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(run(o))
        }
        "table" => table(&args[1..]),
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("nats-bench: {e}");
        std::process::exit(1);
    }
}
