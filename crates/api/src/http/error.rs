//! Client errors as HTTP responses: `{"error":{"code":"...","message":"..."}}` with a status
//! chosen by the stable code.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use meridian_types::{ErrorCode, MeridianError};
use serde::Serialize;

/// A [`MeridianError`] on its way to an HTTP client.
#[derive(Debug)]
pub struct HttpError(pub MeridianError);

impl From<MeridianError> for HttpError {
    fn from(e: MeridianError) -> Self {
        Self(e)
    }
}

/// The HTTP status of an error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument
        | ErrorCode::KeyTooLarge
        | ErrorCode::ValueTooLarge
        | ErrorCode::TooManyTxnOps
        | ErrorCode::LimitTooLarge
        | ErrorCode::CrossRangeTxn
        | ErrorCode::FutureRevision
        | ErrorCode::PlacementUnsatisfiable => StatusCode::BAD_REQUEST,
        ErrorCode::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::KeyNotFound => StatusCode::NOT_FOUND,
        ErrorCode::Compacted => StatusCode::GONE,
        ErrorCode::NotLeader
        | ErrorCode::RangeMoved
        | ErrorCode::Unavailable
        | ErrorCode::TooStale
        | ErrorCode::NotInitialized => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::WrongCluster
        | ErrorCode::UnknownNode
        | ErrorCode::AlreadyInitialized
        | ErrorCode::NotDrained
        | ErrorCode::UnsupportedFormat => StatusCode::CONFLICT,
        ErrorCode::Corruption | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::StreamNotFound => StatusCode::NOT_FOUND,
        ErrorCode::LeaseNotFound => StatusCode::NOT_FOUND,
        ErrorCode::QueueNotFound => StatusCode::NOT_FOUND,
        ErrorCode::QueueExists | ErrorCode::StaleReceipt | ErrorCode::StaleGeneration => {
            StatusCode::CONFLICT
        }
        ErrorCode::QueueFull => StatusCode::TOO_MANY_REQUESTS,
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'static str,
    message: &'a str,
}

/// The JSON error response with an explicit status (for statuses no error code implies, such
/// as 404 for an unknown path or 503 from `/readyz`).
pub fn error_response(status: StatusCode, err: &MeridianError) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: err.code.as_str(),
            message: &err.message,
        },
    };
    (status, Json(body)).into_response()
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        error_response(status_of(self.0.code), &self.0)
    }
}

/// A request body that could not be read: too large (413 `request_too_large`) or broken.
pub fn body_error(rejection: BytesRejection, request_bytes_max: usize) -> MeridianError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        MeridianError::new(
            ErrorCode::RequestTooLarge,
            format!("request body is larger than {request_bytes_max} bytes"),
        )
    } else {
        MeridianError::invalid(format!("read request body: {}", rejection.body_text()))
    }
}

/// A query string that does not parse into the route's parameters.
pub fn query_error(rejection: QueryRejection) -> MeridianError {
    MeridianError::invalid(rejection.body_text())
}

/// A path that does not parse (for example a key that is not valid UTF-8 once decoded).
pub fn path_error(rejection: PathRejection) -> MeridianError {
    MeridianError::invalid(rejection.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_documented_status() {
        let table = [
            (ErrorCode::InvalidArgument, 400),
            (ErrorCode::KeyTooLarge, 400),
            (ErrorCode::ValueTooLarge, 400),
            (ErrorCode::TooManyTxnOps, 400),
            (ErrorCode::LimitTooLarge, 400),
            (ErrorCode::CrossRangeTxn, 400),
            (ErrorCode::RequestTooLarge, 413),
            (ErrorCode::KeyNotFound, 404),
            (ErrorCode::Compacted, 410),
            (ErrorCode::FutureRevision, 400),
            (ErrorCode::NotLeader, 503),
            (ErrorCode::RangeMoved, 503),
            (ErrorCode::Unavailable, 503),
            (ErrorCode::NotInitialized, 503),
            (ErrorCode::Timeout, 504),
            (ErrorCode::WrongCluster, 409),
            (ErrorCode::UnknownNode, 409),
            (ErrorCode::AlreadyInitialized, 409),
            (ErrorCode::NotDrained, 409),
            (ErrorCode::PlacementUnsatisfiable, 400),
            (ErrorCode::TooStale, 503),
            (ErrorCode::Corruption, 500),
            (ErrorCode::Internal, 500),
            (ErrorCode::QueueNotFound, 404),
            (ErrorCode::QueueExists, 409),
            (ErrorCode::StaleReceipt, 409),
            (ErrorCode::StaleGeneration, 409),
            (ErrorCode::UnsupportedFormat, 409),
            (ErrorCode::QueueFull, 429),
        ];
        for (code, status) in table {
            assert_eq!(status_of(code).as_u16(), status, "{code}");
        }
    }
}
