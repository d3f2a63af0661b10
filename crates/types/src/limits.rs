//! Named limits on client input. Every one is documented in README.md ("Limits").

/// The limits a node enforces on client requests. Over a limit, the request fails with the
/// named error code and nothing is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest key in bytes (`key_too_large`).
    pub key_bytes_max: usize,
    /// Largest value in bytes (`value_too_large`).
    pub value_bytes_max: usize,
    /// Largest request body in bytes, HTTP or gRPC (`request_too_large`).
    pub request_bytes_max: usize,
    /// Most operations in one transaction, compares plus then/else ops (`too_many_txn_ops`).
    pub txn_ops_max: usize,
    /// Most keys returned by one scan page; a larger `limit` is capped to this (`limit_too_large` over HTTP).
    pub scan_page_max: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        key_bytes_max: 4 * 1024,
        value_bytes_max: 1024 * 1024,
        request_bytes_max: 3 * 1024 * 1024 / 2,
        txn_ops_max: 128,
        scan_page_max: 10_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
