//! Newtype identifiers shared by every layer.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident, $inner:ty) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                Self(v)
            }
        }
    };
}

id_type!(
    /// One `meridian server` process.
    NodeId, u64
);
id_type!(
    /// One Raft group. Group 0 is the meta group; range `r` is replicated by group `r`.
    GroupId, u64
);
id_type!(
    /// One contiguous slice of the key space. Range ids start at 1; group id == range id.
    RangeId, u64
);
id_type!(
    /// A cluster, chosen once by `cluster init`.
    ClusterId, u64
);
id_type!(
    /// A client request id: a retried write carrying the same id is applied once.
    RequestId, u128
);

impl GroupId {
    /// The meta group, holding the cluster map.
    pub const META: GroupId = GroupId(0);

    pub fn is_meta(self) -> bool {
        self == Self::META
    }
}

impl RangeId {
    pub fn group(self) -> GroupId {
        GroupId(self.0)
    }
}

impl From<RangeId> for GroupId {
    fn from(r: RangeId) -> Self {
        GroupId(r.0)
    }
}
