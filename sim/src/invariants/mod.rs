//! The invariants every run must keep, one per file.

pub mod bounded_staleness;
pub mod election_safety;
pub mod linearizability;
pub mod log_matching;
pub mod no_lost_writes;
pub mod queue_delivery;
pub mod replica_convergence;
pub mod revisions;
pub mod stream_log;
pub mod watch_resume;
