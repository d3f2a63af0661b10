//! `meridian-sim`: runs seeds of the deterministic simulation and reports each failure with the
//! command that replays it. Every seed runs in a process of its own, so no state of an earlier
//! run can leak into it: a seed fails or passes the same way alone or in a batch.

use clap::Parser;
use meridian_sim::Outcome;
use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// Wall-clock time one seed may take before it counts as hung (a seed takes 1-10 s here).
const SEED_WALL_MAX: std::time::Duration = std::time::Duration::from_secs(180);

#[derive(Parser)]
#[command(about = "Deterministic simulation of Meridian clusters under faults")]
struct Args {
    /// Run this many seeds, starting at --start.
    #[arg(long, default_value_t = 50)]
    seeds: u64,
    #[arg(long, default_value_t = 1)]
    start: u64,
    /// Run only this seed, in this process, and print its details.
    #[arg(long)]
    seed: Option<u64>,
    /// With --seed: print the outcome as one JSON line (used by batch runs).
    #[arg(long, hide = true)]
    json: bool,
    /// Seeds run at once (each in its own process); default: the number of CPUs.
    #[arg(long)]
    jobs: Option<usize>,
    /// Add a reader of `bounded:<ms>` reads checked against their reported staleness
    /// (`invariants::bounded_staleness`). Off by default: it changes every seed's schedule.
    #[arg(long)]
    bounded_reads: bool,
    /// Put the nodes in three regions and set seeded placement rules during the faults, so the
    /// placement driver moves replicas and leaders under the nemesis. Off by default: it
    /// changes every seed's schedule.
    #[arg(long)]
    placement: bool,
    /// Add a stream and a work queue used through random nodes during the faults, read back in
    /// full after the heal (`invariants::stream_log`, `invariants::queue_delivery`). Off by
    /// default: it changes every seed's schedule.
    #[arg(long)]
    messaging: bool,
    /// Log filter for the nodes (e.g. `info`, `meridian_node=debug`), with --seed.
    #[arg(long)]
    log: Option<String>,
}

/// The messaging workload's counts, when it ran.
fn messaging_summary(o: &Outcome) -> String {
    if o.published + o.queue_sent == 0 {
        return String::new();
    }
    format!(
        ", messaging: {} published ({} acked, {} read back), {} queued ({} acked), {} deliveries ({} acked), {} changes watched over {} connections",
        o.published,
        o.published_acked,
        o.stream_read,
        o.queue_sent,
        o.queue_sent_acked,
        o.queue_deliveries,
        o.queue_acked,
        o.watch_changes,
        o.watch_connections
    )
}

fn print_outcome(o: &Outcome, secs: f64) {
    println!(
        "seed {}: {} nodes, {} ops ({} answered, {} unknown), {} bounded reads ({} by followers){}, faults {:?}, {} simulated ms in {secs:.1}s, trace {:016x}{}",
        o.seed,
        o.nodes,
        o.ops,
        o.acked,
        o.unknown,
        o.bounded_reads,
        o.bounded_by_followers,
        messaging_summary(o),
        o.faults,
        o.sim_ms,
        o.trace_hash,
        if o.violations.is_empty() {
            ""
        } else {
            "  FAILED"
        }
    );
    for v in &o.violations {
        println!("  {v}");
    }
    if !o.violations.is_empty() {
        println!("  replay: {}", o.replay_command());
    }
}

fn main() {
    let args = Args::parse();
    if args.placement {
        // SAFETY: no other thread exists yet; the seeds' child processes inherit it.
        unsafe { std::env::set_var(meridian_sim::PLACEMENT_ENV, "1") };
    }
    if args.bounded_reads {
        // SAFETY: no other thread exists yet; the seeds' child processes inherit it.
        unsafe { std::env::set_var(meridian_sim::BOUNDED_READS_ENV, "1") };
    }
    if args.messaging {
        // SAFETY: no other thread exists yet; the seeds' child processes inherit it.
        unsafe { std::env::set_var(meridian_sim::MESSAGING_ENV, "1") };
    }
    if let Some(seed) = args.seed {
        if let Some(filter) = &args.log {
            tracing_subscriber::fmt()
                .with_env_filter(filter.as_str())
                .with_writer(std::io::stderr)
                .init();
        }
        let t = Instant::now();
        let o = meridian_sim::run(seed);
        if args.json {
            println!("{}", serde_json::to_string(&o).expect("outcome as JSON"));
        } else {
            print_outcome(&o, t.elapsed().as_secs_f64());
            if !o.violations.is_empty() {
                println!("faults:");
                for f in &o.fault_log {
                    println!("  {f}");
                }
            }
        }
        std::process::exit(if o.violations.is_empty() { 0 } else { 1 });
    }

    let exe = std::env::current_exe().expect("path of this program");
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut queue: VecDeque<u64> = (args.start..args.start + args.seeds).collect();
    let mut running: VecDeque<(u64, Instant, Child)> = VecDeque::new();
    let started = Instant::now();
    let (mut failed, mut ops, mut faults) = (Vec::new(), 0usize, 0u32);
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < jobs {
            let Some(seed) = queue.pop_front() else { break };
            let child = Command::new(&exe)
                .args(["--seed", &seed.to_string(), "--json"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a simulation process");
            running.push_back((seed, Instant::now(), child));
        }
        let (seed, t, mut child) = running.pop_front().expect("a running seed");
        // A seed that runs away (a livelock, an endless loop in a host) is a failure too.
        while child.try_wait().ok().flatten().is_none() && t.elapsed() < SEED_WALL_MAX {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
        }
        let out = child
            .wait_with_output()
            .expect("wait for a simulation process");
        let text = String::from_utf8_lossy(&out.stdout);
        let o: Outcome = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| Outcome {
                seed,
                violations: vec![format!(
                    "the simulation process ended without an outcome ({}); run it alone to see why",
                    out.status
                )],
                ..Outcome::default()
            });
        ops += o.ops;
        faults += o.faults.values().sum::<u32>();
        print_outcome(&o, t.elapsed().as_secs_f64());
        if !o.violations.is_empty() {
            failed.push(seed);
        }
    }
    println!(
        "{} seeds, {ops} operations checked, {faults} faults injected, {} failed {:?}, in {:.0}s",
        args.seeds,
        failed.len(),
        failed,
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
