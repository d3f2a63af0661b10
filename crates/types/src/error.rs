//! Client-visible errors. Each has a stable code, once shipped never renamed.

use crate::ids::{GroupId, NodeId};
use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. The string form is part of the public API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    InvalidArgument,
    KeyTooLarge,
    ValueTooLarge,
    RequestTooLarge,
    TooManyTxnOps,
    LimitTooLarge,
    CrossRangeTxn,
    KeyNotFound,
    Compacted,
    FutureRevision,
    NotLeader,
    RangeMoved,
    Unavailable,
    Timeout,
    NotInitialized,
    AlreadyInitialized,
    WrongCluster,
    UnknownNode,
    /// A placement rule the cluster's nodes, regions or zones cannot meet.
    PlacementUnsatisfiable,
    /// A node still holds replicas (drain it first).
    NotDrained,
    /// The replica asked cannot prove it is fresh enough for the read; the leader can.
    TooStale,
    Corruption,
    Internal,
    /// No stream of that name.
    StreamNotFound,
    /// A lease that does not exist (never granted, expired or revoked).
    LeaseNotFound,
    /// No queue of that name (work queues).
    QueueNotFound,
    /// A queue of that name exists with another configuration.
    QueueExists,
    /// A receipt whose delivery is over: its visibility timeout passed, or the message was
    /// delivered again since.
    StaleReceipt,
    /// A queue holds as many messages as it may.
    QueueFull,
    /// A consumer-group commit from a member whose generation is over (the group rebalanced
    /// since its last heartbeat) or that no longer holds the partition.
    StaleGeneration,
    /// A data dir written in a format this build does not read (another version of Meridian).
    UnsupportedFormat,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::KeyTooLarge => "key_too_large",
            ErrorCode::ValueTooLarge => "value_too_large",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::TooManyTxnOps => "too_many_txn_ops",
            ErrorCode::LimitTooLarge => "limit_too_large",
            ErrorCode::CrossRangeTxn => "cross_range_txn",
            ErrorCode::KeyNotFound => "key_not_found",
            ErrorCode::Compacted => "compacted",
            ErrorCode::FutureRevision => "future_revision",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::RangeMoved => "range_moved",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::NotInitialized => "not_initialized",
            ErrorCode::AlreadyInitialized => "already_initialized",
            ErrorCode::WrongCluster => "wrong_cluster",
            ErrorCode::UnknownNode => "unknown_node",
            ErrorCode::PlacementUnsatisfiable => "placement_unsatisfiable",
            ErrorCode::NotDrained => "not_drained",
            ErrorCode::TooStale => "too_stale",
            ErrorCode::Corruption => "corruption",
            ErrorCode::Internal => "internal",
            ErrorCode::StreamNotFound => "stream_not_found",
            ErrorCode::LeaseNotFound => "lease_not_found",
            ErrorCode::QueueNotFound => "queue_not_found",
            ErrorCode::QueueExists => "queue_exists",
            ErrorCode::StaleReceipt => "stale_receipt",
            ErrorCode::StaleGeneration => "stale_generation",
            ErrorCode::UnsupportedFormat => "unsupported_format",
            ErrorCode::QueueFull => "queue_full",
        }
    }

    /// Whether a client may retry the same request (possibly elsewhere) and expect progress.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader
                | ErrorCode::RangeMoved
                | ErrorCode::Unavailable
                | ErrorCode::Timeout
                | ErrorCode::TooStale
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error a client can see: a stable code, a human message, and for `not_leader` a hint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct MeridianError {
    pub code: ErrorCode,
    pub message: String,
    /// For `not_leader`: the group and the node believed to lead it, if known.
    pub leader_hint: Option<(GroupId, NodeId)>,
}

impl MeridianError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            leader_hint: None,
        }
    }

    pub fn not_leader(group: GroupId, leader: Option<NodeId>) -> Self {
        Self {
            code: ErrorCode::NotLeader,
            message: format!("this node does not lead group {group}"),
            leader_hint: leader.map(|l| (group, l)),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
}
