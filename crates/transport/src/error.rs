//! Transport errors.

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached (no address, connection refused, partitioned, dropped).
    #[error("node {node} unreachable: {detail}")]
    Unreachable { node: u64, detail: String },
    /// The peer answered with an error of its own.
    #[error("remote error from node {node}: {detail}")]
    Remote { node: u64, detail: String },
    #[error("call to node {node} timed out")]
    Timeout { node: u64 },
}

/// A `--wan` table that does not parse; names the entry at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WanTableError {
    #[error("empty wan table; give `none` or entries like us-east:eu-west=75ms")]
    Empty,
    #[error("wan table entry {entry:?}: {detail}")]
    BadEntry { entry: String, detail: String },
}
