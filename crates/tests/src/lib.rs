//! Layer: tests. An in-process cluster harness: real nodes (real openraft, real fjall in temp
//! dirs) on a simulated network that partitions, isolates, delays and drops per link, with
//! crash and restart. Also helpers for black-box tests that run the real binary.
//!
//! Architecture invariant: the harness drives nodes only through their public API
//! (`Node`, `ClientApi`) and the simulated network; it never reaches into a group's state.

pub mod cluster;
pub mod history;
pub mod process;

pub use cluster::{TestCluster, wait_until};
