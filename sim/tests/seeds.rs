//! The simulation seed set CI runs, the determinism check and the regression seeds. Each seed runs
//! in its own `meridian-sim` process. `MERIDIAN_SIM_SEEDS=N` runs N seeds instead of 100; the
//! placement, bounded-read and messaging workloads run their own (smaller) seed sets.

use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meridian-sim"))
}

fn run_batch(args: &[String]) {
    let out = sim().args(args).output().expect("run meridian-sim");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "simulation seeds failed (replay commands above):\n{}",
        text.lines()
            .filter(|l| l.contains("FAILED") || l.starts_with("  "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn seed_set() {
    let n: u64 = std::env::var("MERIDIAN_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    run_batch(&[
        "--seeds".into(),
        n.to_string(),
        "--start".into(),
        "1".into(),
    ]);
}

/// Seeds with the placement workload (`--placement`): the placement driver moves replicas and
/// leaders while the nemesis works. `MERIDIAN_SIM_PLACEMENT_SEEDS=N` runs N instead of 30.
#[test]
fn placement_seed_set() {
    let n: u64 = std::env::var("MERIDIAN_SIM_PLACEMENT_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    run_batch(&[
        "--placement".into(),
        "--seeds".into(),
        n.to_string(),
        "--start".into(),
        "1".into(),
    ]);
}

/// Seeds with the `bounded` reader (`--bounded-reads`), checked against reported staleness.
#[test]
fn bounded_read_seed_set() {
    run_batch(&[
        "--bounded-reads".into(),
        "--seeds".into(),
        "20".into(),
        "--start".into(),
        "1".into(),
    ]);
}

/// Seeds with the messaging workload (`--messaging`): a stream and a work queue used during the
/// faults and read back in full after the heal. `MERIDIAN_SIM_MESSAGING_SEEDS=N` runs N instead
/// of 15.
#[test]
fn messaging_seed_set() {
    let n: u64 = std::env::var("MERIDIAN_SIM_MESSAGING_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    run_batch(&[
        "--messaging".into(),
        "--seeds".into(),
        n.to_string(),
        "--start".into(),
        "1".into(),
    ]);
}

#[test]
fn regression_seeds() {
    for seed in meridian_sim::REGRESSION_SEEDS {
        run_batch(&[
            "--seeds".into(),
            "1".into(),
            "--start".into(),
            seed.to_string(),
        ]);
    }
}

fn trace_of(seed: u64) -> String {
    let out = sim()
        .args(["--seed", &seed.to_string(), "--json"])
        .output()
        .expect("run meridian-sim");
    let o: meridian_sim::Outcome = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("an outcome line");
    format!("{:016x} {} ops {} ms", o.trace_hash, o.ops, o.sim_ms)
}

#[test]
fn one_seed_replays_exactly() {
    for seed in [1_000_001u64, 1_000_002, 1_000_003] {
        assert_eq!(
            trace_of(seed),
            trace_of(seed),
            "seed {seed} did not replay the same run"
        );
    }
}
