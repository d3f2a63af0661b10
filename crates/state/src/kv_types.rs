//! The request and response shapes of the key-value state machine. They follow etcd v3's
//! `KV` service closely so the API layer maps them one to one.

use meridian_types::RequestId;
use serde::{Deserialize, Serialize};

/// One stored version of a key, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    /// Number of writes since the key was (re)created; 1 after the first put.
    pub version: u64,
    pub lease: i64,
}

/// A read. `range_end` follows etcd: empty means the single key `key`; `[0]` means every key
/// `>= key`; otherwise the half-open interval `[key, range_end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    /// Most keys to return; 0 means no limit (the caller caps it to the scan page limit).
    pub limit: u64,
    /// Read as of this revision; 0 means the latest.
    pub revision: u64,
    pub keys_only: bool,
    pub count_only: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// Whether more keys matched than `limit` allowed.
    pub more: bool,
    /// Number of keys that matched, ignoring `limit`.
    pub count: u64,
    /// The store's current revision when the read was served.
    pub revision: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub prev_kv: bool,
    pub lease: i64,
    /// Keep the key's current lease, ignoring `lease` (etcd's `ignore_lease`); the key must
    /// exist.
    #[serde(default)]
    pub ignore_lease: bool,
    /// Keep the key's current value, ignoring `value` (etcd's `ignore_value`); the key must
    /// exist.
    #[serde(default)]
    pub ignore_value: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    pub prev_kv: Option<KeyValue>,
    pub revision: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Same meaning as in [`RangeRequest::range_end`].
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    pub deleted: u64,
    pub prev_kvs: Vec<KeyValue>,
    pub revision: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// What a compare looks at. A missing key has value empty, version 0, create and mod revision 0
/// (etcd's rule).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    Version(u64),
    CreateRevision(u64),
    ModRevision(u64),
    Lease(i64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Empty: compare the single key. Otherwise every key in `[key, range_end)` must satisfy it.
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
}

/// An etcd transaction: if every compare holds, run `success`, else `failure`.
/// A plain put or delete is a transaction with no compares and one op.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
    pub revision: u64,
}

/// A command in a range's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    Txn(TxnRequest),
    /// Forget every version older than `revision` that a newer version supersedes.
    Compact {
        revision: u64,
    },
    /// Deletes every key attached to `lease` (one revision) and refuses any later put with it:
    /// the range's part of revoking a lease, idempotent.
    RevokeLease {
        lease: i64,
    },
    /// Moves the range's revision up to the entry's `hlc` without writing a key, so every later
    /// write gets a higher revision: how a watch over several ranges learns that an idle range
    /// has nothing more below a revision (a closed timestamp), and releases events in order.
    Advance,
}

/// One log entry of a range, stamped by the leader that proposed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// Set by clients that may retry; the same id is applied once.
    pub request_id: Option<RequestId>,
    /// The leader's hybrid-logical-clock reading when it proposed the entry. A write gets the
    /// revision `max(current_revision + 1, hlc)`, so revisions grow strictly within a range and
    /// follow causality across ranges (the leader's clock has seen the client's revisions).
    pub hlc: u64,
    pub cmd: KvCommand,
}

/// The outcome of applying a [`KvEntry`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResult {
    Txn(TxnResponse),
    Compact {
        revision: u64,
    },
    /// Keys deleted by a [`KvCommand::RevokeLease`], and the range's revision after it.
    RevokeLease {
        deleted: u64,
        revision: u64,
    },
    /// The range's revision after a [`KvCommand::Advance`].
    Advance {
        revision: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::NewMessage;

    /// Byte fields are encoded as bytes (one copy, not one call per byte), and the encoding is
    /// exactly the one written before they were: logs and snapshots on disk read the same.
    #[test]
    fn byte_fields_keep_their_encoding() {
        #[derive(Serialize)]
        struct PutBefore {
            key: Vec<u8>,
            value: Vec<u8>,
            prev_kv: bool,
            lease: i64,
            ignore_lease: bool,
            ignore_value: bool,
        }
        #[derive(Serialize)]
        struct MessageBefore {
            key: Option<Vec<u8>>,
            payload: Vec<u8>,
            headers: Vec<(String, String)>,
            dedup_id: Option<String>,
        }
        let value: Vec<u8> = (0..=255).collect();
        let put = PutRequest {
            key: b"k".to_vec(),
            value: value.clone(),
            prev_kv: true,
            lease: -3,
            ignore_lease: false,
            ignore_value: true,
        };
        let before = PutBefore {
            key: put.key.clone(),
            value: put.value.clone(),
            prev_kv: put.prev_kv,
            lease: put.lease,
            ignore_lease: put.ignore_lease,
            ignore_value: put.ignore_value,
        };
        let bytes = postcard::to_allocvec(&put).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&before).unwrap());
        assert_eq!(postcard::from_bytes::<PutRequest>(&bytes).unwrap(), put);

        for key in [None, Some(b"part".to_vec())] {
            let m = NewMessage {
                key: key.clone(),
                payload: value.clone(),
                headers: vec![("h".into(), "v".into())],
                dedup_id: Some("d".into()),
            };
            let b = MessageBefore {
                key,
                payload: value.clone(),
                headers: vec![("h".into(), "v".into())],
                dedup_id: Some("d".into()),
            };
            let bytes = postcard::to_allocvec(&m).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&b).unwrap());
            assert_eq!(postcard::from_bytes::<NewMessage>(&bytes).unwrap(), m);
        }
    }
}
