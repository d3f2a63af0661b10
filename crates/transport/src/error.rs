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
