//! The plain answers of [`crate::Client`]'s calls, and the options of a scan.

use crate::consistency::Consistency;
use crate::key_value::KeyValue;
use serde::Serialize;

/// A read of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResult {
    /// `None` when the key does not exist.
    pub kv: Option<KeyValue>,
    /// The revision the read saw.
    pub revision: u64,
    /// The most the answer may miss, in milliseconds, as the server reported it (0 when the
    /// leader served it; `None` when not reported, e.g. a `local` read without a bound).
    pub staleness_ms: Option<u64>,
}

/// A write of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PutResult {
    /// The revision of the write.
    pub revision: u64,
    /// The key as it was before, when asked for and it existed.
    pub prev_kv: Option<KeyValue>,
}

/// A delete of a key or a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DeleteResult {
    /// How many keys were deleted.
    pub deleted: u64,
    pub revision: u64,
}

/// A compare-and-set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CasResult {
    /// Whether the comparison held and the value was written.
    pub succeeded: bool,
    pub revision: u64,
}

/// One page of a scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScanPage {
    pub kvs: Vec<KeyValue>,
    /// Whether more keys match past the last one returned.
    pub more: bool,
    /// How many keys match from the start of the page on, including those not returned.
    pub count: u64,
    pub revision: u64,
    /// As in [`GetResult::staleness_ms`].
    pub staleness_ms: Option<u64>,
}

/// What a scan reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// Keys that start with this; empty for every key.
    pub prefix: Vec<u8>,
    /// At most this many keys; 0 for the server's page size limit.
    pub limit: u64,
    /// Only keys after this one (exclusive), to continue from a previous page.
    pub after: Option<Vec<u8>>,
    /// Read at this revision; 0 for the latest. Pin it to the first page's revision to page
    /// through one snapshot.
    pub revision: u64,
    pub consistency: Consistency,
}
