//! Metrics of event streams: messages and bytes published through this node's leaders, reads,
//! and consumer lag per stream and group (over the partitions this node leads).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A stream and one of its consumer groups (user-chosen names; a cluster has few).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct StreamGroupLabels {
    pub stream: String,
    pub group: String,
}

/// Stream metrics, registered with the node's registry.
#[derive(Clone, Default)]
pub struct StreamMetrics {
    pub published_messages: Counter,
    pub published_bytes: Counter,
    pub duplicates: Counter,
    pub read_messages: Counter,
    pub trims: Counter,
    /// Messages between a group's committed offset and the end, summed over the partitions this
    /// node leads (sum over nodes for the whole stream).
    pub consumer_lag: Family<StreamGroupLabels, Gauge>,
}

impl StreamMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "stream_published_messages",
            "Messages appended to stream partitions led here",
            m.published_messages.clone(),
        );
        registry.register(
            "stream_published_bytes",
            "Payload bytes appended to stream partitions led here",
            m.published_bytes.clone(),
        );
        registry.register(
            "stream_duplicate_messages",
            "Publishes answered from the deduplication window",
            m.duplicates.clone(),
        );
        registry.register(
            "stream_read_messages",
            "Messages served by stream reads on this node's leaders",
            m.read_messages.clone(),
        );
        registry.register(
            "stream_retention_trims",
            "Retention trims proposed by this node's leaders",
            m.trims.clone(),
        );
        registry.register(
            "stream_consumer_lag_messages",
            "Messages not yet committed by a consumer group, over the partitions led here",
            m.consumer_lag.clone(),
        );
        m
    }
}
