//! Client errors as gRPC statuses. The stable code stays in the message (`"<code>: <message>"`),
//! except where etcd clients match etcd's exact text (compaction, future revision, size).

use meridian_types::{ErrorCode, MeridianError};
use tonic::{Code, Status};

/// etcd's text for a read below the compacted revision; clients match on it.
pub const COMPACTED_MESSAGE: &str = "etcdserver: mvcc: required revision has been compacted";
/// etcd's text for a read above the current revision.
pub const FUTURE_REVISION_MESSAGE: &str =
    "etcdserver: mvcc: required revision is a future revision";
/// etcd's text for a lease that does not exist; clients match on it.
pub const LEASE_NOT_FOUND_MESSAGE: &str = "etcdserver: requested lease not found";
/// etcd's text for a request over the size limit.
pub const REQUEST_TOO_LARGE_MESSAGE: &str = "etcdserver: request is too large";

/// The gRPC code of an error code.
pub fn grpc_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument
        | ErrorCode::KeyTooLarge
        | ErrorCode::ValueTooLarge
        | ErrorCode::RequestTooLarge
        | ErrorCode::TooManyTxnOps
        | ErrorCode::LimitTooLarge
        | ErrorCode::CrossRangeTxn
        | ErrorCode::PlacementUnsatisfiable => Code::InvalidArgument,
        ErrorCode::KeyNotFound => Code::NotFound,
        ErrorCode::Compacted | ErrorCode::FutureRevision => Code::OutOfRange,
        ErrorCode::NotLeader
        | ErrorCode::RangeMoved
        | ErrorCode::Unavailable
        | ErrorCode::TooStale
        | ErrorCode::NotInitialized => Code::Unavailable,
        ErrorCode::Timeout => Code::DeadlineExceeded,
        ErrorCode::AlreadyInitialized
        | ErrorCode::WrongCluster
        | ErrorCode::UnknownNode
        | ErrorCode::NotDrained
        | ErrorCode::UnsupportedFormat => Code::FailedPrecondition,
        ErrorCode::Corruption | ErrorCode::Internal => Code::Internal,
        ErrorCode::StreamNotFound => Code::NotFound,
        ErrorCode::LeaseNotFound => Code::NotFound,
        ErrorCode::QueueNotFound => Code::NotFound,
        ErrorCode::QueueExists => Code::AlreadyExists,
        ErrorCode::StaleReceipt | ErrorCode::StaleGeneration => Code::FailedPrecondition,
        ErrorCode::QueueFull => Code::ResourceExhausted,
    }
}

/// A [`MeridianError`] as the status an etcd client expects.
pub fn to_status(err: MeridianError) -> Status {
    let code = grpc_code(err.code);
    match err.code {
        ErrorCode::Compacted => Status::new(code, COMPACTED_MESSAGE),
        ErrorCode::FutureRevision => Status::new(code, FUTURE_REVISION_MESSAGE),
        ErrorCode::RequestTooLarge => Status::new(code, REQUEST_TOO_LARGE_MESSAGE),
        ErrorCode::LeaseNotFound => Status::new(code, LEASE_NOT_FOUND_MESSAGE),
        _ => Status::new(code, err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_code_in_the_message() {
        let s = to_status(MeridianError::invalid("key is empty"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "invalid_argument: key is empty");
        let s = to_status(MeridianError::unavailable("no quorum"));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "unavailable: no quorum");
        assert_eq!(
            to_status(MeridianError::new(ErrorCode::Timeout, "t")).code(),
            Code::DeadlineExceeded
        );
        assert_eq!(
            to_status(MeridianError::new(ErrorCode::KeyNotFound, "k")).code(),
            Code::NotFound
        );
        assert_eq!(
            to_status(MeridianError::internal("x")).code(),
            Code::Internal
        );
    }

    #[test]
    fn uses_etcds_exact_texts() {
        let s = to_status(MeridianError::new(ErrorCode::Compacted, "below 7"));
        assert_eq!(
            (s.code(), s.message()),
            (Code::OutOfRange, COMPACTED_MESSAGE)
        );
        let s = to_status(MeridianError::new(ErrorCode::FutureRevision, "above 9"));
        assert_eq!(
            (s.code(), s.message()),
            (Code::OutOfRange, FUTURE_REVISION_MESSAGE)
        );
        let s = to_status(MeridianError::new(ErrorCode::RequestTooLarge, "big"));
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, REQUEST_TOO_LARGE_MESSAGE)
        );
    }
}
