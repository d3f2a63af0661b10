//! One simulated run: a cluster of real Meridian nodes on turmoil's network, clients using the
//! public HTTP API, and a nemesis, all decided by one seed.

use crate::history::{Event, History};
use crate::invariants;
use crate::kv_clients::{bounded_reader, client, final_reader, placer};
use crate::messaging::{MessageLog, Record};
use crate::nemesis::Nemesis;
use crate::net::{self, PORT};
use crate::store::MemStore;
use meridian_consensus::{GroupConfig, Role};
use meridian_node::layout::initial_map;
use meridian_node::messages::{Hello, M_HELLO, M_INIT};
use meridian_node::{Metrics, Node, NodeConfig, WallClock};
use meridian_state::ClusterMap;
use meridian_transport::{Envelope, GrpcTransport, Transport, node_rpc_service};
use meridian_types::{ClusterId, GroupId, MeridianError, NodeId};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

/// Normal one-way message latency bound between any two hosts.
pub(crate) const LATENCY_MAX: Duration = Duration::from_millis(8);
/// How long the clients wait for the cluster to form before the first operation.
pub(crate) const WARMUP: Duration = Duration::from_secs(3);
/// How long after the heal the cluster has to answer every key on every node and converge.
const RECOVERY_MAX: Duration = Duration::from_secs(60);

/// Set (by `--bounded-reads`) to add the `bounded` reader to every run. Off by default, so the
/// default workload — and every seed's trace — stays as it was.
pub const BOUNDED_READS_ENV: &str = "MERIDIAN_SIM_BOUNDED_READS";

/// Set (by `--placement`) to put the nodes in three regions and add the `placer`, which sets
/// seeded placement rules during the faults: the placement driver then moves replicas and
/// leaders (learner, catch-up, joint-consensus voter change, removal, leader transfer) while the
/// nemesis works, and nodes down longer than `PLACEMENT_DEAD_AFTER` get their replicas replaced.
/// Off by default, so the default workload and every seed's trace stay as they were.
pub const PLACEMENT_ENV: &str = "MERIDIAN_SIM_PLACEMENT";
/// `node_dead_after` in placement runs: shorter than the longest crash, so some crashed nodes'
/// replicas are replaced while they are down.
const PLACEMENT_DEAD_AFTER: Duration = Duration::from_secs(3);

/// Set (by `--messaging`) to add the messaging workload (`crate::messaging`): a stream and a
/// work queue used during the faults and read back in full after the heal, checked by
/// `invariants::stream_log` and `invariants::queue_delivery`. Off by default, so the default
/// workload and every seed's trace stay as they were.
pub const MESSAGING_ENV: &str = "MERIDIAN_SIM_MESSAGING";

/// The opt-in workloads: each one's environment variable and the flag that sets it.
const WORKLOAD_FLAGS: [(&str, &str); 3] = [
    (PLACEMENT_ENV, "--placement"),
    (BOUNDED_READS_ENV, "--bounded-reads"),
    (MESSAGING_ENV, "--messaging"),
];

/// What a seed decides.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub nodes: u64,
    pub ranges: u32,
    pub clients: u64,
    pub keys: u64,
    /// Length of the phase with faults.
    pub safety: Duration,
}

impl Plan {
    pub fn from_seed(seed: u64) -> Self {
        let mut r = SmallRng::seed_from_u64(seed);
        Plan {
            seed,
            nodes: if r.random_bool(0.5) { 3 } else { 5 },
            ranges: r.random_range(1..=2),
            clients: r.random_range(2..=4),
            keys: r.random_range(3..=6),
            safety: Duration::from_secs(r.random_range(15..=25)),
        }
    }
}

/// What a run did and found.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub seed: u64,
    pub nodes: u64,
    pub ops: usize,
    pub acked: usize,
    pub unknown: usize,
    pub faults: BTreeMap<String, u32>,
    /// Hash of everything observable (history with times, leaders, final state): equal for
    /// two runs of one seed.
    pub trace_hash: u64,
    pub violations: Vec<String>,
    pub sim_ms: u64,
    pub syncs: u64,
    /// Every fault with its simulated time, for reading a failure.
    pub fault_log: Vec<String>,
    /// `bounded` reads answered, and how many of them a follower served (staleness > 0).
    pub bounded_reads: usize,
    pub bounded_by_followers: usize,
    /// Messaging workload (zero without it): stream messages published, of them acknowledged,
    /// and found in the stream after the heal (read through one node).
    #[serde(default)]
    pub published: usize,
    #[serde(default)]
    pub published_acked: usize,
    #[serde(default)]
    pub stream_read: usize,
    /// Queue messages sent and of them acknowledged, deliveries, and deliveries acked.
    #[serde(default)]
    pub queue_sent: usize,
    #[serde(default)]
    pub queue_sent_acked: usize,
    #[serde(default)]
    pub queue_deliveries: usize,
    #[serde(default)]
    pub queue_acked: usize,
    /// The watcher (messaging workload): changes it got, over how many connections.
    #[serde(default)]
    pub watch_changes: usize,
    #[serde(default)]
    pub watch_connections: usize,
}

impl Outcome {
    /// The command that replays this seed, with the opt-in workloads of this process.
    pub fn replay_command(&self) -> String {
        let flags: String = WORKLOAD_FLAGS
            .iter()
            .filter(|(env, _)| std::env::var_os(env).is_some())
            .map(|(_, flag)| format!("{flag} "))
            .collect();
        format!(
            "cargo run --release --manifest-path sim/Cargo.toml -- {flags}--seed {}",
            self.seed
        )
    }
}

pub(crate) fn host(i: u64) -> String {
    format!("n{i}")
}

fn envelope(method: &str, payload: Vec<u8>) -> Envelope {
    Envelope {
        cluster_id: ClusterId(0),
        from: NodeId(0),
        to: NodeId(0),
        group: GroupId::META,
        method: method.into(),
        payload,
        timeout: Duration::from_secs(2),
    }
}

pub type Registry = Arc<Mutex<BTreeMap<u64, Node>>>;

fn start_host(
    sim: &mut turmoil::Sim<'_>,
    i: u64,
    store: MemStore,
    offset: Arc<AtomicI64>,
    registry: Registry,
) {
    sim.host(host(i), move || {
        let store = store.clone();
        let offset = offset.clone();
        let registry = registry.clone();
        async move {
            // Whatever was not synced before the last crash is gone.
            store.crash();
            let mut cfg = NodeConfig::new(NodeId(i), format!("{}:{PORT}", host(i)), "/sim");
            cfg.clock = WallClock::from_fn(move || {
                let t = turmoil::since_epoch().unwrap_or_default().as_millis() as i64;
                (t + offset.load(Ordering::Relaxed)).max(0) as u64
            });
            // Small snapshot thresholds, so runs cross snapshots and installs.
            cfg.raft = GroupConfig {
                snapshot_logs_max: 200,
                logs_kept_after_snapshot: 20,
                // No blocking pool here: a real thread would make runs unrepeatable.
                snapshot_io_off_runtime: false,
                ..GroupConfig::default()
            };
            cfg.request_timeout = Duration::from_secs(4);
            if std::env::var_os(PLACEMENT_ENV).is_some() {
                cfg.region = format!("r{}", (i - 1) % 3 + 1);
                cfg.zone = "a".into();
                cfg.node_dead_after = PLACEMENT_DEAD_AFTER;
            }
            let transport = Arc::new(GrpcTransport::with_connector(net::connector()));
            let node =
                Node::start_with_store(cfg, Arc::new(store), transport, Arc::new(Metrics::new()))
                    .await
                    .map_err(|e| e.to_string())?;
            registry.lock().insert(i, node.clone());
            let app = meridian_api::client_router(node.clone()).route_service(
                "/meridian.node.v1.NodeRpc/{*method}",
                node_rpc_service(node.handler()),
            );
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
            axum::serve(net::Listener(listener), app).await?;
            Ok(())
        }
    });
}

/// Initialises the cluster over node RPC, as `meridian cluster init` does.
async fn init_cluster(nodes: u64, ranges: u32, cluster_id: u64) -> Result<(), String> {
    let t = GrpcTransport::with_connector(net::connector());
    let mut hellos = Vec::new();
    for i in 1..=nodes {
        let addr = format!("{}:{PORT}", host(i));
        let h: Hello = loop {
            match t.call_addr(&addr, envelope(M_HELLO, Vec::new())).await {
                Ok(b) => break postcard::from_bytes(&b).map_err(|e| e.to_string())?,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        hellos.push(h);
    }
    let map = initial_map(ClusterId(cluster_id), &hellos, ranges).map_err(|e| e.to_string())?;
    let payload = postcard::to_allocvec(&map).map_err(|e| e.to_string())?;
    for h in &hellos {
        let b = t
            .call_addr(&h.addr, envelope(M_INIT, payload.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let r: Result<(), MeridianError> = postcard::from_bytes(&b).map_err(|e| e.to_string())?;
        r.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Checks what the messaging workload saw and counts it into `out`.
fn check_messaging(rec: &Record, out: &mut Outcome) {
    out.violations
        .extend(rec.malformed.iter().map(|m| format!("messaging: {m}")));
    out.violations.extend(invariants::stream_log::check(rec));
    out.violations
        .extend(invariants::queue_delivery::check(rec));
    out.published = rec.publishes.len();
    out.published_acked = rec.publishes.iter().filter(|p| p.acked.is_some()).count();
    out.stream_read = rec
        .reads
        .iter()
        .filter(|r| r.node == 1)
        .map(|r| r.messages.len())
        .sum();
    out.queue_sent = rec.sends.len();
    out.queue_sent_acked = rec.sends.iter().filter(|s| s.acked.is_some()).count();
    out.queue_deliveries = rec.deliveries.len();
    out.queue_acked = rec.acks.iter().filter(|a| a.acked).count();
}

/// Runs the simulation of one seed and checks every invariant. Each run gets a fresh thread, so
/// nothing thread-local (random generators, runtime context) carries over from an earlier run.
pub fn run(seed: u64) -> Outcome {
    std::thread::Builder::new()
        .name(format!("sim-seed-{seed}"))
        .stack_size(64 << 20)
        .spawn(move || run_plan(Plan::from_seed(seed)))
        .expect("spawn the simulation thread")
        .join()
        .unwrap_or_else(|_| Outcome {
            seed,
            violations: vec![format!("seed {seed}: the simulation panicked (see above)")],
            ..Outcome::default()
        })
}

pub fn run_plan(plan: Plan) -> Outcome {
    meridian_types::rng::reseed(plan.seed ^ 0x6d65_7269_6469_616e);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(600))
        .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .rng_seed(plan.seed)
        .max_message_latency(LATENCY_MAX)
        .tcp_capacity(4096)
        .build();

    let stores: Vec<MemStore> = (0..plan.nodes).map(|_| MemStore::new()).collect();
    let offsets: Vec<Arc<AtomicI64>> = (0..plan.nodes)
        .map(|_| Arc::new(AtomicI64::new(0)))
        .collect();
    let registry: Registry = Arc::new(Mutex::new(BTreeMap::new()));
    for i in 1..=plan.nodes {
        start_host(
            &mut sim,
            i,
            stores[(i - 1) as usize].clone(),
            offsets[(i - 1) as usize].clone(),
            registry.clone(),
        );
    }
    let (n, ranges, cid) = (plan.nodes, plan.ranges, plan.seed | 1);
    sim.client("ctl", async move {
        init_cluster(n, ranges, cid).await?;
        Ok(())
    });
    let history = History::default();
    let safety_end = WARMUP + plan.safety;
    for j in 1..=plan.clients {
        let (p, h) = (plan.clone(), history.clone());
        sim.client(format!("c{j}"), client(p, j, h, safety_end));
    }
    if std::env::var_os(BOUNDED_READS_ENV).is_some() {
        let (p, h) = (plan.clone(), history.clone());
        sim.client("bounded", bounded_reader(p, h, safety_end));
    }
    if std::env::var_os(PLACEMENT_ENV).is_some() {
        sim.client("placer", placer(plan.clone(), safety_end));
    }
    let messaging = std::env::var_os(MESSAGING_ENV).is_some();
    let messages = MessageLog::default();
    let watches = crate::watching::WatchLog::default();
    if messaging {
        let (p, m) = (plan.clone(), messages.clone());
        sim.client("messenger", crate::messaging::messenger(p, m, safety_end));
        let (p, m) = (plan.clone(), messages.clone());
        sim.client("consumer", crate::messaging::consumer(p, m, safety_end));
        let (p, w) = (plan.clone(), watches.clone());
        sim.client("watcher", crate::watching::watcher(p, w, safety_end));
    }

    let mut out = Outcome {
        seed: plan.seed,
        nodes: plan.nodes,
        ..Outcome::default()
    };
    let mut nemesis = Nemesis {
        rng: SmallRng::seed_from_u64(plan.seed ^ 0xfa17),
        active: Vec::new(),
        faults: BTreeMap::new(),
        log: Vec::new(),
    };
    let mut leaders = invariants::election_safety::Observer::default();
    let mut next_fault = WARMUP + Duration::from_millis(500);
    let mut healed = false;
    let mut step = 0u64;
    let mut trace = std::hash::DefaultHasher::new();
    loop {
        step += 1;
        let done = match sim.step() {
            Ok(d) => d,
            Err(e) => {
                out.violations.push(format!("a host failed: {e}"));
                break;
            }
        };
        let now = sim.elapsed();
        if step.is_multiple_of(10) {
            for (id, node) in registry.lock().iter() {
                for rg in node.hosted_groups() {
                    let s = rg.status();
                    if s.role == Role::Leader {
                        if let Some(v) = leaders.saw_leader(s.group.0, s.term, *id) {
                            out.violations.push(v);
                        }
                        (s.group.0, s.term, *id).hash(&mut trace);
                    }
                }
            }
        }
        if !healed {
            nemesis.tick(&mut sim, now, step);
            if now >= next_fault && now < safety_end {
                nemesis.inject(&mut sim, &plan, now, &registry, &offsets);
                next_fault = now + Duration::from_millis(nemesis.rng.random_range(300..2500));
            }
            if now >= safety_end {
                nemesis.heal_all(&mut sim, plan.nodes);
                healed = true;
                let (p, h) = (plan.clone(), history.clone());
                sim.client("final", final_reader(p, h, now + RECOVERY_MAX));
                if messaging {
                    let (p, m) = (plan.clone(), messages.clone());
                    sim.client("drain", crate::messaging::drainer(p, m, now + RECOVERY_MAX));
                    let (p, w) = (plan.clone(), watches.clone());
                    let replay = crate::watching::replayer(p, w, now + RECOVERY_MAX);
                    sim.client("replay", replay);
                }
            }
        }
        if healed && done {
            break;
        }
        if now > safety_end + RECOVERY_MAX + Duration::from_secs(10) {
            out.violations
                .push("the run did not finish after the heal".into());
            break;
        }
    }
    out.fault_log = std::mem::take(&mut nemesis.log);
    out.faults = nemesis
        .faults
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();

    // Replicas converge: wait (in simulated time) until every replica of every group has
    // applied the same index, then compare their state.
    let converged = invariants::replica_convergence::wait_and_check(
        &mut sim,
        &registry,
        Duration::from_secs(30),
    );
    match converged {
        Ok(digests) => digests.hash(&mut trace),
        Err(v) => out.violations.push(v),
    }
    let map: Option<ClusterMap> = invariants::replica_convergence::newest_map(
        registry.lock().values().filter_map(|n| n.cluster_map()),
    );
    out.violations.extend(invariants::log_matching::check(
        &registry,
        &stores,
        map.as_ref(),
    ));

    let events = history.events();
    out.ops = events
        .iter()
        .filter(|e| matches!(e, Event::Invoke { .. }))
        .count();
    out.acked = events
        .iter()
        .filter(|e| matches!(e, Event::Ok { .. }))
        .count();
    out.unknown = events
        .iter()
        .filter(|e| matches!(e, Event::Unknown { .. }))
        .count();
    out.violations
        .extend(invariants::linearizability::check(&events));
    out.violations
        .extend(invariants::no_lost_writes::check(&events));
    out.violations
        .extend(invariants::revisions::check(&events, map.as_ref()));
    let bounded = history.bounded_reads();
    out.violations
        .extend(invariants::bounded_staleness::check(&events, &bounded));
    out.bounded_reads = bounded.len();
    out.bounded_by_followers = bounded.iter().filter(|r| r.staleness_ms > 0).count();
    format!("{bounded:?}").hash(&mut trace);
    let record = messaging.then(|| messages.record());
    if let Some(rec) = &record {
        check_messaging(rec, &mut out);
        format!("{rec:?}").hash(&mut trace);
    }
    let watched = messaging.then(|| watches.record());
    if let Some(w) = &watched {
        out.violations
            .extend(invariants::watch_resume::check(w, &events));
        out.watch_changes = w.segments.iter().map(|s| s.changes.len()).sum();
        out.watch_connections = w.segments.len();
        format!("{w:?}").hash(&mut trace);
    }
    format!("{events:?}").hash(&mut trace);
    if let Ok(path) = std::env::var("MERIDIAN_SIM_DUMP") {
        let text: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
        let _ = std::fs::write(&path, text.join("\n"));
        // The messaging workload's record beside it, as JSON.
        if let Some(rec) = &record
            && let Ok(json) = serde_json::to_string_pretty(rec)
        {
            let _ = std::fs::write(format!("{path}.messages.json"), json);
        }
        if let Some(w) = &watched
            && let Ok(json) = serde_json::to_string_pretty(w)
        {
            let _ = std::fs::write(format!("{path}.watch.json"), json);
        }
    }
    out.trace_hash = trace.finish();
    out.sim_ms = sim.elapsed().as_millis() as u64;
    out.syncs = stores.iter().map(|s| s.syncs()).sum();
    // Drop the hosts' runtimes before the registry's nodes.
    drop(sim);
    registry.lock().clear();
    out
}
