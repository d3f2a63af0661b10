//! How fresh a read must be, as a client asks for it.

use crate::error::ClientError;

/// gRPC metadata key carrying the consistency etcd's `serializable` flag cannot say (`lease`).
/// A server that does not read it serves such a read linearizably, which is stronger.
pub const CONSISTENCY_METADATA: &str = "meridian-consistency";

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// The range leader confirms it still leads, then serves. The default.
    #[default]
    Linearizable,
    /// The range leader serves within its lease, without confirming.
    Lease,
    /// Whatever the nearest replica has (etcd's `serializable`).
    Local,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Lease => "lease",
            Consistency::Local => "local",
        }
    }

    /// etcd's `RangeRequest.serializable`.
    pub fn serializable(self) -> bool {
        self == Consistency::Local
    }
}

impl std::fmt::Display for Consistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Consistency {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linearizable" => Ok(Consistency::Linearizable),
            "lease" => Ok(Consistency::Lease),
            "local" | "serializable" => Ok(Consistency::Local),
            other => Err(ClientError::InvalidArgument(format!(
                "unknown consistency {other:?}; expected linearizable, lease or local"
            ))),
        }
    }
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
        ] {
            assert_eq!(c.as_str().parse::<Consistency>().unwrap(), c);
        }
        assert_eq!(
            "serializable".parse::<Consistency>().unwrap(),
            Consistency::Local
        );
        assert!("strong".parse::<Consistency>().is_err());
        assert!(Consistency::Local.serializable());
        assert!(!Consistency::Lease.serializable());
    }
}
