//! Deterministic simulation of whole Meridian clusters: real node code (openraft groups, the
//! router, the HTTP and gRPC APIs, the tonic node transport) on turmoil's simulated network and
//! clock, with an in-memory disk that loses unsynced writes at a crash. One `u64` seed decides
//! the cluster, the workload and every fault, and replays the run exactly.

pub mod history;
pub mod http;
pub mod invariants;
mod kv_clients;
pub mod messaging;
pub mod nemesis;
pub mod net;
pub mod run;
pub mod store;
pub mod watching;

pub use run::{BOUNDED_READS_ENV, MESSAGING_ENV, Outcome, PLACEMENT_ENV, Plan, run, run_plan};

/// Seeds that once failed, kept as regression tests (see docs/verification.md): 17, 20 and 32
/// found a restarted leader resuming its old term after a power loss; 27 and 33 found two bugs
/// of the simulation's own checker.
pub const REGRESSION_SEEDS: &[u64] = &[17, 20, 27, 32, 33];
