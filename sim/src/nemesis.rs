//! The nemesis: injects a seeded schedule of faults into a running simulation and undoes them.

use crate::run::{LATENCY_MAX, Plan, Registry, host};
use meridian_consensus::Role;
use meridian_types::GroupId;
use rand::Rng;
use rand::rngs::SmallRng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A fault in force, and how to undo it.
pub(crate) enum Active {
    Partition(Vec<String>, Vec<String>),
    OneWay(String, String),
    Flap(String, String, bool),
    Slow(String, String),
    Lossy(String, String),
    Crashed(u64),
}

pub(crate) struct Nemesis {
    pub(crate) rng: SmallRng,
    pub(crate) active: Vec<(Duration, Active)>,
    pub(crate) faults: BTreeMap<&'static str, u32>,
    pub(crate) log: Vec<String>,
}

impl Nemesis {
    fn pick_two(&mut self, n: u64) -> (u64, u64) {
        let a = self.rng.random_range(1..=n);
        let mut b = self.rng.random_range(1..=n);
        while b == a {
            b = self.rng.random_range(1..=n);
        }
        (a, b)
    }

    pub(crate) fn inject(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        plan: &Plan,
        now: Duration,
        registry: &Registry,
        offsets: &[Arc<AtomicI64>],
    ) {
        let n = plan.nodes;
        let all: Vec<String> = (1..=n).map(host).collect();
        let until = now + Duration::from_millis(self.rng.random_range(500..4000));
        let kind = self.rng.random_range(0..10);
        let name = match kind {
            0 => {
                // A minority cut off from the majority.
                let size = self.rng.random_range(1..=(n - 1) / 2);
                let mut minority = BTreeSet::new();
                while minority.len() < size as usize {
                    minority.insert(self.rng.random_range(1..=n));
                }
                let m: Vec<String> = minority.iter().map(|i| host(*i)).collect();
                let rest: Vec<String> = all.iter().filter(|h| !m.contains(h)).cloned().collect();
                for a in &m {
                    for b in &rest {
                        sim.partition(a.as_str(), b.as_str());
                    }
                }
                self.active.push((until, Active::Partition(m, rest)));
                "partition"
            }
            1 => {
                let (a, b) = self.pick_two(n);
                sim.partition_oneway(host(a).as_str(), host(b).as_str());
                self.active.push((until, Active::OneWay(host(a), host(b))));
                "one_way_partition"
            }
            2 => {
                let (a, b) = self.pick_two(n);
                self.active
                    .push((until, Active::Flap(host(a), host(b), false)));
                "flapping_link"
            }
            3 => {
                let (a, b) = self.pick_two(n);
                let d = Duration::from_millis(self.rng.random_range(50..400));
                sim.set_link_max_message_latency(host(a).as_str(), host(b).as_str(), d);
                self.active.push((until, Active::Slow(host(a), host(b))));
                "message_delay"
            }
            4 => {
                let (a, b) = self.pick_two(n);
                let p = self.rng.random_range(0.05..0.5);
                sim.set_link_fail_rate(host(a).as_str(), host(b).as_str(), p);
                self.active.push((until, Active::Lossy(host(a), host(b))));
                "message_loss"
            }
            5 | 6 => {
                // Crash one node, or (rarely) a majority at once: a power cut across them.
                let running: Vec<u64> = (1..=n)
                    .filter(|i| {
                        !self
                            .active
                            .iter()
                            .any(|(_, a)| matches!(a, Active::Crashed(c) if c == i))
                    })
                    .collect();
                let many = kind == 6 && self.rng.random_bool(0.3);
                let count = if many { (n / 2 + 1) as usize } else { 1 };
                if running.len() < count {
                    return;
                }
                let mut victims = BTreeSet::new();
                while victims.len() < count {
                    victims.insert(running[self.rng.random_range(0..running.len())]);
                }
                for v in victims {
                    registry.lock().remove(&v);
                    sim.crash(host(v).as_str());
                    self.active.push((until, Active::Crashed(v)));
                }
                if many {
                    "crash_majority"
                } else {
                    "crash_restart"
                }
            }
            7 => {
                // Isolate the leader of a random group from every other node.
                let g = GroupId(self.rng.random_range(0..=plan.ranges as u64));
                let leader = registry.lock().iter().find_map(|(id, node)| {
                    node.group(g)
                        .filter(|rg| rg.status().role == Role::Leader)
                        .map(|_| *id)
                });
                let Some(l) = leader else { return };
                let m = vec![host(l)];
                let rest: Vec<String> = all.iter().filter(|h| **h != m[0]).cloned().collect();
                for b in &rest {
                    sim.partition(m[0].as_str(), b.as_str());
                }
                self.active.push((until, Active::Partition(m, rest)));
                "isolate_leader"
            }
            9 => {
                // Power loss across the whole cluster: every node stops at once and loses
                // whatever it had not synced.
                if self
                    .active
                    .iter()
                    .any(|(_, a)| matches!(a, Active::Crashed(_)))
                {
                    return;
                }
                for v in 1..=n {
                    registry.lock().remove(&v);
                    sim.crash(host(v).as_str());
                    self.active.push((until, Active::Crashed(v)));
                }
                "power_loss_all"
            }
            _ => {
                let i = self.rng.random_range(1..=n);
                let jump = self.rng.random_range(-20_000i64..20_000);
                offsets[(i - 1) as usize].fetch_add(jump, Ordering::Relaxed);
                *self.faults.entry("clock_jump").or_default() += 1;
                self.log.push(format!(
                    "{:>6}ms clock_jump n{i} {jump:+}ms",
                    now.as_millis()
                ));
                return;
            }
        };
        *self.faults.entry(name).or_default() += 1;
        let what = match self.active.last() {
            Some((_, Active::Partition(m, rest))) => format!("{m:?} | {rest:?}"),
            Some((_, Active::OneWay(a, b))) => format!("{a} -> {b}"),
            Some((_, Active::Flap(a, b, _))) => format!("{a} <-> {b}"),
            Some((_, Active::Slow(a, b))) => format!("{a} <-> {b}"),
            Some((_, Active::Lossy(a, b))) => format!("{a} <-> {b}"),
            Some((_, Active::Crashed(i))) => format!("n{i}"),
            None => String::new(),
        };
        self.log.push(format!(
            "{:>6}ms {name} {what} until {}ms",
            now.as_millis(),
            until.as_millis()
        ));
    }

    fn undo(sim: &mut turmoil::Sim<'_>, a: Active) {
        match a {
            Active::Partition(m, rest) => {
                for x in &m {
                    for y in &rest {
                        sim.repair(x.as_str(), y.as_str());
                    }
                }
            }
            Active::OneWay(a, b) => sim.repair_oneway(a.as_str(), b.as_str()),
            Active::Flap(a, b, _) => sim.repair(a.as_str(), b.as_str()),
            Active::Slow(a, b) => {
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), LATENCY_MAX)
            }
            Active::Lossy(a, b) => {
                sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.0);
                sim.repair(a.as_str(), b.as_str());
            }
            Active::Crashed(i) => sim.bounce(host(i).as_str()),
        }
    }

    /// Ends the faults whose time is up; toggles flapping links.
    pub(crate) fn tick(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration, step: u64) {
        let mut keep = Vec::new();
        for (until, a) in std::mem::take(&mut self.active) {
            if now >= until {
                Self::undo(sim, a);
            } else if let Active::Flap(x, y, cut) = a {
                let cut = if step.is_multiple_of(150) {
                    if cut {
                        sim.repair(x.as_str(), y.as_str());
                    } else {
                        sim.partition(x.as_str(), y.as_str());
                    }
                    !cut
                } else {
                    cut
                };
                keep.push((until, Active::Flap(x, y, cut)));
            } else {
                keep.push((until, a));
            }
        }
        self.active = keep;
    }

    pub(crate) fn heal_all(&mut self, sim: &mut turmoil::Sim<'_>, n: u64) {
        for (_, a) in std::mem::take(&mut self.active) {
            Self::undo(sim, a);
        }
        for a in 1..=n {
            for b in 1..=n {
                if a != b {
                    sim.repair(host(a).as_str(), host(b).as_str());
                    sim.set_link_fail_rate(host(a).as_str(), host(b).as_str(), 0.0);
                    sim.set_link_max_message_latency(
                        host(a).as_str(),
                        host(b).as_str(),
                        LATENCY_MAX,
                    );
                }
            }
        }
    }
}
