//! Layer: types (the bottom). Ids, keys, limits and client-visible errors with stable codes.
//!
//! Architecture invariant: this crate knows no protocol, no storage engine, no runtime. Every
//! other crate may depend on it; it depends on nothing of Meridian's.

mod error;
mod ids;
mod limits;
pub mod rng;

pub use error::{ErrorCode, MeridianError};
pub use ids::{ClusterId, GroupId, NodeId, RangeId, RequestId};
pub use limits::Limits;
