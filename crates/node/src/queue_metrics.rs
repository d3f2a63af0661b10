//! Work-queue gauges, set by the queue driver from the replicated state of the queues this
//! node leads (so the leader of a queue's range reports it). Labelled by queue name: queues
//! are few and named by operators, like tables.

use meridian_state::queue::QueueStats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: String,
}

/// `meridian_queue_*` gauges.
pub struct QueueMetrics {
    depth: Family<QueueLabel, Gauge>,
    delayed: Family<QueueLabel, Gauge>,
    in_flight: Family<QueueLabel, Gauge>,
    dead: Family<QueueLabel, Gauge>,
    redelivered: Family<QueueLabel, Gauge>,
    dead_lettered: Family<QueueLabel, Gauge>,
    acked: Family<QueueLabel, Gauge>,
}

impl QueueMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let mut gauge = |name: &str, help: &str| {
            let f = Family::<QueueLabel, Gauge>::default();
            registry.register(name, help, f.clone());
            f
        };
        Self {
            depth: gauge(
                "queue_depth_messages",
                "Messages waiting (visible or delayed)",
            ),
            delayed: gauge("queue_delayed_messages", "Waiting messages not visible yet"),
            in_flight: gauge(
                "queue_in_flight_messages",
                "Messages delivered, not acked yet",
            ),
            dead: gauge(
                "queue_dead_messages",
                "Dead messages not yet moved to a dead-letter queue",
            ),
            redelivered: gauge(
                "queue_redelivered_messages",
                "Deliveries after the first, since creation",
            ),
            dead_lettered: gauge(
                "queue_dead_lettered_messages",
                "Messages that died, since creation",
            ),
            acked: gauge("queue_acked_messages", "Messages acked, since creation"),
        }
    }

    /// Sets the gauges of `queue`.
    pub fn observe(&self, queue: &str, s: &QueueStats) {
        let l = QueueLabel {
            queue: queue.to_string(),
        };
        let set = |f: &Family<QueueLabel, Gauge>, v: u64| {
            f.get_or_create(&l).set(v.min(i64::MAX as u64) as i64);
        };
        set(&self.depth, s.ready);
        set(&self.delayed, s.delayed);
        set(&self.in_flight, s.in_flight);
        set(&self.dead, s.dead);
        set(&self.redelivered, s.counters.redelivered);
        set(&self.dead_lettered, s.counters.dead_lettered);
        set(&self.acked, s.counters.acked);
    }
}
