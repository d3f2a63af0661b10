//! What can go wrong talking to a cluster. Every error has a stable code
//! ([`ClientError::code`]): the server's own code when the server answered with one (its gRPC
//! messages read `"<code>: <message>"`), else a code chosen here for what the client saw.

use tonic::Code;

/// etcd's exact texts, which Meridian keeps for etcd clients, and the stable codes they mean.
const ETCD_TEXTS: [(&str, &str); 4] = [
    (
        "etcdserver: mvcc: required revision has been compacted",
        "compacted",
    ),
    (
        "etcdserver: mvcc: required revision is a future revision",
        "future_revision",
    ),
    ("etcdserver: request is too large", "request_too_large"),
    ("etcdserver: requested lease not found", "lease_not_found"),
];

/// Longest prefix taken for a stable code in a server message.
const CODE_BYTES_MAX: usize = 32;

/// Stable codes after which the same request may go to another endpoint: the server did not
/// act on it (no leader reachable, not initialised yet, the range moved).
const FAILOVER_CODES: [&str; 4] = [
    "unavailable",
    "not_leader",
    "range_moved",
    "not_initialized",
];

/// Whether sending a request twice is harmless. Decides what happens after a timeout, when the
/// first try may or may not have been applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotence {
    /// Reads, and writes whose repetition leaves the same state (`put`, `delete`).
    Idempotent,
    /// Writes whose outcome depends on the state they see (`txn`, `cas`, `put` with
    /// `prev_kv`): retried only when the server surely did not act on them.
    NotIdempotent,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    /// Input refused before anything was sent: a malformed endpoint, no endpoints, ...
    #[error("invalid_argument: {0}")]
    InvalidArgument(String),
    /// The server answered with an error.
    #[error("{code}: {message}")]
    Server { code: String, message: String },
    /// The endpoint could not be reached, or the connection broke.
    #[error("unavailable: cannot reach {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    /// No answer within the per-call timeout. A write may or may not have been applied.
    #[error("timeout: {endpoint} did not answer within {timeout_ms} ms")]
    Timeout { endpoint: String, timeout_ms: u64 },
    /// The server's answer could not be understood.
    #[error("internal: malformed answer from {endpoint}: {message}")]
    MalformedResponse { endpoint: String, message: String },
    /// Every attempt failed over; this is the last failure.
    #[error("{last} (gave up after {attempts} attempts)")]
    Exhausted {
        attempts: u32,
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// The stable code: `key_not_found`, `unavailable`, `timeout`, `invalid_argument`, ...
    pub fn code(&self) -> &str {
        match self {
            ClientError::InvalidArgument(_) => "invalid_argument",
            ClientError::Server { code, .. } => code,
            ClientError::Connect { .. } => "unavailable",
            ClientError::Timeout { .. } => "timeout",
            ClientError::MalformedResponse { .. } => "internal",
            ClientError::Exhausted { last, .. } => last.code(),
        }
    }

    /// The message without the code.
    pub fn message(&self) -> String {
        let text = self.to_string();
        let code = self.code();
        match text
            .strip_prefix(code)
            .and_then(|rest| rest.strip_prefix(": "))
        {
            Some(rest) => rest.to_owned(),
            None => text,
        }
    }

    /// A gRPC status from `endpoint` as an error with a stable code.
    pub fn from_status(endpoint: &str, status: &tonic::Status) -> Self {
        let message = status.message();
        if let Some((_, code)) = ETCD_TEXTS.iter().find(|(text, _)| *text == message) {
            return ClientError::Server {
                code: (*code).to_owned(),
                message: message.to_owned(),
            };
        }
        if let Some((code, rest)) = split_code(message) {
            return ClientError::Server {
                code: code.to_owned(),
                message: rest.to_owned(),
            };
        }
        let code = match status.code() {
            // No code of the server's: the connection failed, or a proxy answered.
            Code::Unavailable | Code::Cancelled | Code::Aborted | Code::Unknown => {
                return ClientError::Connect {
                    endpoint: endpoint.to_owned(),
                    message: describe_status(status),
                };
            }
            Code::DeadlineExceeded => "timeout",
            Code::NotFound => "key_not_found",
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                "invalid_argument"
            }
            Code::Unimplemented => "unimplemented",
            _ => "internal",
        };
        ClientError::Server {
            code: code.to_owned(),
            message: describe_status(status),
        }
    }

    /// Whether the same request may be sent to another endpoint after this error.
    pub fn should_failover(&self, idempotence: Idempotence) -> bool {
        match self {
            ClientError::Connect { .. } => true,
            ClientError::Timeout { .. } => idempotence == Idempotence::Idempotent,
            ClientError::Server { code, .. } => {
                FAILOVER_CODES.contains(&code.as_str())
                    || (code == "timeout" && idempotence == Idempotence::Idempotent)
            }
            ClientError::InvalidArgument(_)
            | ClientError::MalformedResponse { .. }
            | ClientError::Exhausted { .. } => false,
        }
    }
}

/// Splits `"<code>: <message>"` where `<code>` looks like a stable code (`[a-z][a-z0-9_]*`).
pub(crate) fn split_code(message: &str) -> Option<(&str, &str)> {
    let (code, rest) = message.split_once(": ")?;
    let well_formed = !code.is_empty()
        && code.len() <= CODE_BYTES_MAX
        && code.starts_with(|c: char| c.is_ascii_lowercase())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    // etcd's own prefix is not one of ours.
    (well_formed && code != "etcdserver").then_some((code, rest))
}

/// A status's message, with its source chain when the status came from the transport.
fn describe_status(status: &tonic::Status) -> String {
    let mut text = if status.message().is_empty() {
        format!("gRPC status {:?}", status.code())
    } else {
        status.message().to_owned()
    };
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_keep_their_code() {
        let e = ClientError::from_status("e", &tonic::Status::not_found("key_not_found: no k"));
        assert_eq!(e.code(), "key_not_found");
        assert_eq!(e.message(), "no k");
        assert_eq!(e.to_string(), "key_not_found: no k");
        let e =
            ClientError::from_status("e", &tonic::Status::unavailable("not_leader: group 3: x"));
        assert_eq!(e.code(), "not_leader");
        assert_eq!(e.message(), "group 3: x");
    }

    #[test]
    fn etcd_texts_map_to_codes() {
        let s = tonic::Status::out_of_range(ETCD_TEXTS[0].0);
        assert_eq!(ClientError::from_status("e", &s).code(), "compacted");
        let s = tonic::Status::invalid_argument("etcdserver: request is too large");
        assert_eq!(
            ClientError::from_status("e", &s).code(),
            "request_too_large"
        );
        let s = tonic::Status::not_found("etcdserver: requested lease not found");
        assert_eq!(ClientError::from_status("e", &s).code(), "lease_not_found");
        // Another etcdserver text is not mistaken for a code.
        let s = tonic::Status::invalid_argument("etcdserver: key is not provided");
        assert_eq!(ClientError::from_status("e", &s).code(), "invalid_argument");
    }

    #[test]
    fn statuses_without_a_code_map_by_grpc_code() {
        let s = tonic::Status::unavailable("tcp connect error");
        let e = ClientError::from_status("http://a:1", &s);
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        assert_eq!(e.code(), "unavailable");
        let s = tonic::Status::deadline_exceeded("slow");
        assert_eq!(ClientError::from_status("e", &s).code(), "timeout");
        let s = tonic::Status::unimplemented("no such method");
        assert_eq!(ClientError::from_status("e", &s).code(), "unimplemented");
        let s = tonic::Status::internal("Broken Pipe: x");
        assert_eq!(ClientError::from_status("e", &s).code(), "internal");
    }

    #[test]
    fn split_code_wants_a_code_shape() {
        assert_eq!(split_code("range_moved: r"), Some(("range_moved", "r")));
        assert_eq!(split_code("tcp connect error: refused"), None);
        assert_eq!(split_code("Code: x"), None);
        assert_eq!(split_code(": x"), None);
        assert_eq!(split_code("no colon"), None);
        assert_eq!(split_code("a_very_long_code_that_goes_on_and_on: x"), None);
    }

    #[test]
    fn failover_depends_on_idempotence() {
        use Idempotence::*;
        let timeout = ClientError::Timeout {
            endpoint: "e".into(),
            timeout_ms: 5,
        };
        assert!(timeout.should_failover(Idempotent));
        assert!(!timeout.should_failover(NotIdempotent));
        let conn = ClientError::Connect {
            endpoint: "e".into(),
            message: "refused".into(),
        };
        assert!(conn.should_failover(NotIdempotent));
        let server = |code: &str| ClientError::Server {
            code: code.into(),
            message: "m".into(),
        };
        assert!(server("not_leader").should_failover(NotIdempotent));
        assert!(server("unavailable").should_failover(NotIdempotent));
        assert!(server("timeout").should_failover(Idempotent));
        assert!(!server("timeout").should_failover(NotIdempotent));
        assert!(!server("key_too_large").should_failover(Idempotent));
    }

    #[test]
    fn exhausted_reports_the_last_code() {
        let last = ClientError::Connect {
            endpoint: "http://a:1".into(),
            message: "refused".into(),
        };
        let e = ClientError::Exhausted {
            attempts: 3,
            last: Box::new(last),
        };
        assert_eq!(e.code(), "unavailable");
        assert_eq!(
            e.to_string(),
            "unavailable: cannot reach http://a:1: refused (gave up after 3 attempts)"
        );
    }
}
