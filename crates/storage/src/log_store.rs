//! The storage interface the consensus layer writes through.

use crate::error::StorageError;
use meridian_types::GroupId;

/// Called once the records of an append are durable (or the fsync failed).
pub type DurableCallback = Box<dyn FnOnce(Result<(), std::io::Error>) + Send>;

/// Durable, checksummed storage for the Raft groups of one node.
pub trait LogStore: Send + Sync + 'static {
    /// Buffers log records `(index, payload)` of `group` and calls `on_durable` once they are
    /// fsynced. Records at the same index are overwritten.
    fn append(
        &self,
        group: GroupId,
        records: Vec<(u64, Vec<u8>)>,
        on_durable: DurableCallback,
    ) -> Result<(), StorageError>;

    /// Log records of `group` with `start <= index < end`, in index order.
    fn read_log(
        &self,
        group: GroupId,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError>;

    /// The last log record of `group`, if any.
    fn last_log(&self, group: GroupId) -> Result<Option<(u64, Vec<u8>)>, StorageError>;

    /// Removes every log record of `group` with `index > after` (all of them when `None`).
    fn truncate_after(&self, group: GroupId, after: Option<u64>) -> Result<(), StorageError>;

    /// Removes every log record of `group` with `index <= upto`.
    fn purge_upto(&self, group: GroupId, upto: u64) -> Result<(), StorageError>;

    /// Stores a small named value of `group` (vote, committed, snapshot, ...). When `sync`, returns
    /// only after it is fsynced.
    fn put_meta(
        &self,
        group: GroupId,
        name: &str,
        value: &[u8],
        sync: bool,
    ) -> Result<(), StorageError>;

    fn get_meta(&self, group: GroupId, name: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Stores a large named value of `group` (a snapshot) durably, outside the log's journal so
    /// writing it never delays log appends: written to a temp file, fsynced, renamed.
    fn put_blob(&self, group: GroupId, name: &str, value: &[u8]) -> Result<(), StorageError>;

    fn get_blob(&self, group: GroupId, name: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Removes every record of `group` (its replica was removed from this node).
    fn remove_group(&self, group: GroupId) -> Result<(), StorageError>;

    /// Bytes used on disk.
    fn disk_bytes(&self) -> u64;
}
