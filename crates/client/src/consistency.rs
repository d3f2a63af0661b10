//! How fresh a read must be, as a client asks for it.

use crate::error::ClientError;
use std::time::Duration;

/// gRPC metadata key carrying the consistency etcd's `serializable` flag cannot say (`lease`,
/// `bounded:<ms>`). A server that does not read it serves such a read linearizably, which is
/// stronger.
pub const CONSISTENCY_METADATA: &str = "meridian-consistency";

/// gRPC metadata key carrying a session token: the lowest revision of the key's range a replica
/// other than the leader may answer at.
pub const MIN_REVISION_METADATA: &str = "meridian-min-revision";

/// Response metadata key: the most a read's answer may miss, in milliseconds.
pub const STALENESS_METADATA: &str = "meridian-staleness-ms";

/// The forms [`Consistency`] parses from, for error messages.
const FORMS: &str =
    "linearizable, lease, bounded:<ms> (or bounded:<n>ms, bounded:<n>s), local or serializable";

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// The range leader confirms it still leads, then serves. The default.
    #[default]
    Linearizable,
    /// The range leader serves within its lease, without confirming.
    Lease,
    /// The nearest replica that can prove it misses no write acknowledged more than this long
    /// ago serves; otherwise the leader. The client sends it to the nearest replica's node.
    Bounded(Duration),
    /// Whatever the nearest replica has (etcd's `serializable`).
    Local,
}

impl Consistency {
    /// etcd's `RangeRequest.serializable`.
    pub fn serializable(self) -> bool {
        self == Consistency::Local
    }

    /// Whether a replica other than the leader may serve the read (so the client sends it to
    /// the nearest replica, with its session token).
    pub fn follower_may_serve(self) -> bool {
        matches!(self, Consistency::Local | Consistency::Bounded(_))
    }

    /// The `meridian-consistency` metadata value, for what etcd's protocol cannot say.
    pub fn metadata(self) -> Option<String> {
        match self {
            Consistency::Lease | Consistency::Bounded(_) => Some(self.to_string()),
            Consistency::Linearizable | Consistency::Local => None,
        }
    }
}

impl std::fmt::Display for Consistency {
    /// The form the server and [`str::parse`] read back: `bounded:<ms>` for bounded reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Consistency::Linearizable => f.write_str("linearizable"),
            Consistency::Lease => f.write_str("lease"),
            Consistency::Bounded(d) => write!(f, "bounded:{}", d.as_millis()),
            Consistency::Local => f.write_str("local"),
        }
    }
}

impl std::str::FromStr for Consistency {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linearizable" => Ok(Consistency::Linearizable),
            "lease" => Ok(Consistency::Lease),
            "local" | "serializable" => Ok(Consistency::Local),
            other => match other.strip_prefix("bounded:") {
                Some(b) => parse_bound(b).map(Consistency::Bounded).ok_or_else(|| {
                    ClientError::InvalidArgument(format!(
                        "bad staleness bound in {other:?}; expected {FORMS}"
                    ))
                }),
                None => Err(ClientError::InvalidArgument(format!(
                    "unknown consistency {other:?}; expected {FORMS}"
                ))),
            },
        }
    }
}

/// `500`, `500ms` or `5s`; at most a day, like the server.
fn parse_bound(s: &str) -> Option<Duration> {
    let (digits, scale_ms) = match (s.strip_suffix("ms"), s.strip_suffix('s')) {
        (Some(d), _) => (d, 1),
        (None, Some(d)) => (d, 1000),
        (None, None) => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms = digits.parse::<u64>().ok()?.checked_mul(scale_ms)?;
    (ms <= 86_400_000).then(|| Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for c in [
            Consistency::Linearizable,
            Consistency::Lease,
            Consistency::Local,
            Consistency::Bounded(Duration::from_millis(1500)),
        ] {
            assert_eq!(c.to_string().parse::<Consistency>().unwrap(), c);
        }
        assert_eq!(
            "serializable".parse::<Consistency>().unwrap(),
            Consistency::Local
        );
        assert_eq!(
            "bounded:5s".parse::<Consistency>().unwrap(),
            Consistency::Bounded(Duration::from_secs(5))
        );
        assert_eq!(
            "bounded:250ms".parse::<Consistency>().unwrap(),
            Consistency::Bounded(Duration::from_millis(250))
        );
        for bad in [
            "strong",
            "bounded",
            "bounded:",
            "bounded:1.5s",
            "bounded:-1",
            "bounded:9m",
        ] {
            let e = bad.parse::<Consistency>().expect_err(bad);
            assert!(e.to_string().contains("bounded:<ms>"), "{bad}: {e}");
        }
        assert!(Consistency::Local.serializable());
        assert!(!Consistency::Lease.serializable());
        assert_eq!(
            Consistency::Bounded(Duration::from_secs(1))
                .metadata()
                .as_deref(),
            Some("bounded:1000")
        );
        assert_eq!(Consistency::Local.metadata(), None);
    }
}
