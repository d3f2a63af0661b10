//! The nemesis of the real-network test: on a schedule drawn from a seed it partitions hosts
//! (nftables), cuts a host's link (`ip link set down`), kills a node with SIGKILL and restarts it
//! on the same data dir, pauses one with SIGSTOP/SIGCONT, and makes every link slow and lossy
//! (the proxies). Each fault is written to the history as a `start` and a `stop` entry.
//!
//! Targets are often the leader of a data range (read from `/v1/cluster`): 80% of partitions
//! and pauses, half of the other faults; any node otherwise. The short schedule runs every kind once, in a seeded order; longer runs draw kinds
//! at random and sometimes stack two.

use crate::jepsen::HistoryWriter;
use crate::proxy::LinkConfig;
use crate::realcluster::RealCluster;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    Partition,
    LinkDown,
    Kill,
    Pause,
    Latency,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::Partition,
        Fault::LinkDown,
        Fault::Kill,
        Fault::Pause,
        Fault::Latency,
    ];

    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::Partition => "partition",
            Fault::LinkDown => "link-down",
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Latency => "latency",
        }
    }
}

/// The links between hosts when nothing is wrong: a LAN with a little jitter and rare loss.
pub const BASE_LINK: LinkConfig = LinkConfig {
    delay_ms: 1,
    jitter_ms: 2,
    loss: 0.002,
    stall_ms: 200,
    cut: 0.0,
};

/// The links during a latency fault: a bad WAN.
pub const SLOW_LINK: LinkConfig = LinkConfig {
    delay_ms: 60,
    jitter_ms: 60,
    loss: 0.05,
    stall_ms: 200,
    cut: 0.002,
};

pub struct NemesisConfig {
    pub seed: u64,
    /// How long faults are injected.
    pub duration: Duration,
    /// How long one fault lasts, in ms.
    pub fault_ms: std::ops::Range<u64>,
    /// Quiet time between faults, in ms.
    pub gap_ms: std::ops::Range<u64>,
    /// Whether two faults may be active at once.
    pub stack: bool,
    /// The kinds to inject (all of [`Fault::ALL`] unless narrowed).
    pub kinds: Vec<Fault>,
}

/// An active fault and how to undo it.
struct Active {
    id: u64,
    fault: Fault,
    detail: String,
    target: usize,
}

pub struct Nemesis<'a> {
    pub cluster: &'a mut RealCluster,
    pub history: &'a HistoryWriter,
    /// Asks the cluster which nodes lead data ranges (for targeting); empty if unknown.
    pub leaders: Box<dyn Fn() -> Vec<u64> + 'a>,
    next_id: u64,
    pub injected: BTreeMap<&'static str, u64>,
}

impl<'a> Nemesis<'a> {
    pub fn new(
        cluster: &'a mut RealCluster,
        history: &'a HistoryWriter,
        leaders: Box<dyn Fn() -> Vec<u64> + 'a>,
    ) -> Self {
        *cluster.links.default.write() = BASE_LINK;
        Self {
            cluster,
            history,
            leaders,
            next_id: 1,
            injected: BTreeMap::new(),
        }
    }

    /// A node to hit: for partitions and pauses mostly the leader of a data range (a deposed
    /// leader that still believes it leads is where stale reads come from), else any node.
    fn target(&self, fault: Fault, rng: &mut StdRng) -> usize {
        let n = self.cluster.nodes.len();
        let p_leader = match fault {
            Fault::Partition | Fault::Pause => 0.8,
            _ => 0.5,
        };
        if rng.random_bool(p_leader) {
            let leaders = (self.leaders)();
            if !leaders.is_empty() {
                return leaders[rng.random_range(0..leaders.len())] as usize;
            }
        }
        rng.random_range(1..=n)
    }

    fn start(&mut self, fault: Fault, rng: &mut StdRng) -> anyhow::Result<Active> {
        let n = self.cluster.nodes.len();
        let target = self.target(fault, rng);
        let detail = match fault {
            Fault::Partition => {
                // The target and (with 5 nodes) maybe one more on the minority side.
                let mut minority = vec![target];
                if n >= 5 && rng.random_bool(0.5) {
                    let other = (target % n) + 1;
                    minority.push(other);
                }
                let majority: Vec<usize> = (1..=n).filter(|i| !minority.contains(i)).collect();
                self.cluster
                    .net
                    .partition(&[minority.clone(), majority.clone()])?;
                format!("{minority:?} | {majority:?}")
            }
            Fault::LinkDown => {
                self.cluster.net.set_link(target, false)?;
                format!("n{target} link down")
            }
            Fault::Kill => {
                self.cluster.kill9(target);
                format!("kill -9 n{target}")
            }
            Fault::Pause => {
                self.cluster.pause(target);
                format!("SIGSTOP n{target}")
            }
            Fault::Latency => {
                *self.cluster.links.default.write() = SLOW_LINK;
                format!(
                    "every link {}±{} ms, {}% stalls of {} ms, {}% cuts",
                    SLOW_LINK.delay_ms,
                    SLOW_LINK.jitter_ms,
                    SLOW_LINK.loss * 100.0,
                    SLOW_LINK.stall_ms,
                    SLOW_LINK.cut * 100.0
                )
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        self.history.nemesis("start", id, fault.name(), &detail);
        *self.injected.entry(fault.name()).or_default() += 1;
        eprintln!("realnet: nemesis #{id} start {}: {detail}", fault.name());
        Ok(Active {
            id,
            fault,
            detail,
            target,
        })
    }

    fn stop(&mut self, a: Active) -> anyhow::Result<()> {
        match a.fault {
            Fault::Partition => self.cluster.net.heal_partitions()?,
            Fault::LinkDown => self.cluster.net.set_link(a.target, true)?,
            Fault::Kill => self.cluster.start_node(a.target)?,
            Fault::Pause => self.cluster.resume(a.target),
            Fault::Latency => *self.cluster.links.default.write() = BASE_LINK,
        }
        self.history
            .nemesis("stop", a.id, a.fault.name(), &a.detail);
        eprintln!("realnet: nemesis #{} stop {}", a.id, a.fault.name());
        Ok(())
    }

    /// Runs the schedule for `cfg.duration`, then undoes every fault.
    pub fn run(&mut self, cfg: &NemesisConfig) -> anyhow::Result<()> {
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x6e656d);
        let kinds = if cfg.kinds.is_empty() {
            Fault::ALL.to_vec()
        } else {
            cfg.kinds.clone()
        };
        let mut order = kinds.clone();
        order.shuffle(&mut rng);
        let began = Instant::now();
        let mut round = 0usize;
        let result = (|| -> anyhow::Result<()> {
            while began.elapsed() < cfg.duration {
                let fault = if round < order.len() {
                    order[round]
                } else {
                    kinds[rng.random_range(0..kinds.len())]
                };
                round += 1;
                let mut active = vec![self.start(fault, &mut rng)?];
                if cfg.stack && rng.random_bool(0.3) {
                    let second = kinds[rng.random_range(0..kinds.len())];
                    // Two faults on one node's process would undo each other out of order.
                    let clash = matches!(
                        (fault, second),
                        (Fault::Kill | Fault::Pause, Fault::Kill | Fault::Pause)
                    ) || second == fault;
                    if !clash {
                        active.push(self.start(second, &mut rng)?);
                    }
                }
                std::thread::sleep(Duration::from_millis(
                    rng.random_range(cfg.fault_ms.clone()),
                ));
                for a in active.into_iter().rev() {
                    self.stop(a)?;
                }
                std::thread::sleep(Duration::from_millis(rng.random_range(cfg.gap_ms.clone())));
            }
            Ok(())
        })();
        // Whatever happened, leave the cluster whole.
        self.cluster.heal()?;
        *self.cluster.links.default.write() = BASE_LINK;
        result
    }
}
