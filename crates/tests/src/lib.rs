//! Layer: tests. An in-process cluster harness: real nodes (real openraft, real fjall in temp
//! dirs) on a simulated network that partitions, isolates, delays and drops per link, with
//! crash and restart. Also helpers for black-box tests that run the real binary, and the
//! real-network fault test's parts: namespaces (`netns`), delaying proxies (`proxy`), node
//! processes (`realcluster`), clients (`workload`), the nemesis, Jepsen-shaped histories
//! (`jepsen`) and their checker (`checker`, `wgl`).
//!
//! Architecture invariant: the harness drives nodes only through their public API
//! (`Node`, `ClientApi`) and the simulated network; it never reaches into a group's state.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod jepsen;
pub mod msg_workload;
pub mod nemesis;
pub mod netns;
pub mod process;
pub mod proxy;
pub mod realcluster;
pub mod verdict;
pub mod watch_workload;
pub mod wgl;
pub mod workload;

pub use cluster::{TestCluster, wait_until};
