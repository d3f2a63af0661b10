//! A stand-in for `Node::allocate_object_ranges`, which the event-streams work owns (it creates
//! ranges in a "system" space key routing ignores). Until it lands, a queue lives in the
//! key-value range holding its colocation key, or else the range holding `\xff\xffqueue/`.
//! Same signature, so swapping the real one in is deleting this file.

use crate::node::Node;
use meridian_types::{ErrorCode, MeridianError, RangeId};

impl Node {
    /// The ranges an object's data lives in: with `colocate`, the range holding that key (so a
    /// transaction can write keys and messages together); here, without it, the range holding
    /// `\xff\xffqueue/`. Returns `count` ranges (here, the same one `count` times).
    pub async fn allocate_object_ranges(
        &self,
        count: usize,
        colocate: Option<&[u8]>,
    ) -> Result<Vec<RangeId>, MeridianError> {
        if count == 0 {
            return Err(MeridianError::invalid("allocate at least one range"));
        }
        let map = self.map_arc().ok_or_else(|| {
            MeridianError::new(
                ErrorCode::NotInitialized,
                "the cluster map is not known yet",
            )
        })?;
        let key = colocate.unwrap_or(b"\xff\xffqueue/");
        let range = map
            .range_for(key)
            .ok_or_else(|| MeridianError::internal("no range holds the key"))?
            .id;
        Ok(vec![range; count])
    }
}
