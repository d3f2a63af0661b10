//! Prometheus metrics of one node (`/metrics`). Names follow `meridian_<area>_<what>_<unit>`;
//! labels are of low cardinality (op, outcome, peer node), never a key.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpOnly {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// A peer node, by id (as many values as nodes in the cluster).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: String,
}

impl PeerLabel {
    pub fn of(peer: meridian_types::NodeId) -> Self {
        Self {
            peer: peer.0.to_string(),
        }
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<OpLabels, Counter>,
    pub request_seconds: Family<OpOnly, Histogram, fn() -> Histogram>,
    pub proposals: Family<OutcomeLabel, Counter>,
    pub commit_seconds: Histogram,
    pub fsync_seconds: Histogram,
    pub fsync_batch_appends: Histogram,
    /// Writes (key-value, publish, queue) carried by one group-commit proposal.
    pub group_commit_batch_writes: Histogram,
    /// Group-commit proposals that left while another of their group was in flight.
    pub group_commit_pipelined: Counter,
    pub forwards: Counter,
    pub follower_linearizable_reads: Counter,
    /// Follower reads a replica could not vouch for (`too_stale`), sent on to the leader.
    pub stale_redirects: Counter,
    pub raft_term_max: Gauge,
    pub raft_leader_changes: Counter,
    pub raft_groups_led: Gauge,
    pub raft_groups_hosted: Gauge,
    /// Probe round trip to each peer, EWMA.
    pub peer_rtt_seconds: Family<PeerLabel, Gauge<f64, AtomicU64>>,
    /// Probe round trip to each peer, p99 of the recent ones.
    pub peer_rtt_p99_seconds: Family<PeerLabel, Gauge<f64, AtomicU64>>,
    pub peer_probe_failures: Family<PeerLabel, Counter>,
    /// Replica moves started by the placement driver, by kind (`add`, `remove`).
    pub placement_moves: Family<KindLabel, Counter>,
    pub placement_leader_transfers: Counter,
    /// Ranges the placement driver is still working on (set on the meta leader).
    pub ranges_out_of_rule: Gauge,
    /// Stream publishes, reads and consumer lag (`stream_metrics.rs`).
    pub streams: crate::stream_metrics::StreamMetrics,
    /// Watches open on this node.
    pub watchers: Gauge,
    /// Watch events sent to clients of this node.
    pub watch_events: Counter,
    /// Live leases (set on the meta leader).
    pub leases: Gauge,
    /// Leases this node expired as meta leader.
    pub leases_expired: Counter,
    /// Work-queue gauges (see `queue_metrics.rs`).
    pub queue: crate::queue_metrics::QueueMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("meridian");
        let requests = Family::<OpLabels, Counter>::default();
        registry.register(
            "kv_requests",
            "Client requests by operation and outcome",
            requests.clone(),
        );
        let request_seconds =
            Family::<OpOnly, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "kv_request_duration_seconds",
            "Client request latency by operation",
            request_seconds.clone(),
        );
        let proposals = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "raft_proposals",
            "Raft proposals made by this node as leader",
            proposals.clone(),
        );
        let commit_seconds = latency_histogram();
        registry.register(
            "raft_commit_duration_seconds",
            "From proposal to applied result on the leader",
            commit_seconds.clone(),
        );
        let fsync_seconds = latency_histogram();
        registry.register(
            "storage_fsync_duration_seconds",
            "Duration of one group-commit fsync",
            fsync_seconds.clone(),
        );
        let fsync_batch_appends = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        registry.register(
            "storage_fsync_batch_appends",
            "Appends made durable by one fsync",
            fsync_batch_appends.clone(),
        );
        let group_commit_batch_writes = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "group_commit_batch_writes",
            "Writes (key-value, publish, queue) carried by one proposal of a range leader",
            group_commit_batch_writes.clone(),
        );
        let group_commit_pipelined = Counter::default();
        registry.register(
            "group_commit_pipelined_batches",
            "Proposals that left while another of their range was in flight (a quorum 2 ms or more away)",
            group_commit_pipelined.clone(),
        );
        let forwards = Counter::default();
        registry.register(
            "kv_forwards",
            "Requests forwarded to another node",
            forwards.clone(),
        );
        let follower_linearizable_reads = Counter::default();
        registry.register(
            "kv_follower_linearizable_reads",
            "Linearizable reads a follower served from its own replica after asking the leader for its read index",
            follower_linearizable_reads.clone(),
        );
        let stale_redirects = Counter::default();
        registry.register(
            "kv_stale_redirects",
            "Follower reads sent on to the leader because the replica could not prove freshness",
            stale_redirects.clone(),
        );
        let raft_term_max = Gauge::default();
        registry.register(
            "raft_term",
            "Highest Raft term over the groups hosted here",
            raft_term_max.clone(),
        );
        let raft_leader_changes = Counter::default();
        registry.register(
            "raft_leader_changes",
            "Leader changes seen by the groups hosted here",
            raft_leader_changes.clone(),
        );
        let raft_groups_led = Gauge::default();
        registry.register(
            "raft_groups_led",
            "Groups this node leads",
            raft_groups_led.clone(),
        );
        let raft_groups_hosted = Gauge::default();
        registry.register(
            "raft_groups_hosted",
            "Groups with a replica on this node",
            raft_groups_hosted.clone(),
        );
        let peer_rtt_seconds = Family::<PeerLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "peer_rtt_seconds",
            "Probe round trip to each peer (EWMA)",
            peer_rtt_seconds.clone(),
        );
        let peer_rtt_p99_seconds = Family::<PeerLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "peer_rtt_p99_seconds",
            "Probe round trip to each peer (p99 of the recent ones)",
            peer_rtt_p99_seconds.clone(),
        );
        let peer_probe_failures = Family::<PeerLabel, Counter>::default();
        registry.register(
            "peer_probe_failures",
            "Probes of each peer that failed or timed out",
            peer_probe_failures.clone(),
        );
        let placement_moves = Family::<KindLabel, Counter>::default();
        registry.register(
            "placement_moves",
            "Replica moves started by the placement driver, by kind",
            placement_moves.clone(),
        );
        let placement_leader_transfers = Counter::default();
        registry.register(
            "placement_leader_transfers",
            "Leader transfers asked for by the placement driver",
            placement_leader_transfers.clone(),
        );
        let ranges_out_of_rule = Gauge::default();
        registry.register(
            "ranges_out_of_rule",
            "Ranges not yet meeting their placement rule (on the meta leader)",
            ranges_out_of_rule.clone(),
        );
        let streams = crate::stream_metrics::StreamMetrics::register(&mut registry);
        let watchers = Gauge::default();
        registry.register(
            "watch_watchers",
            "Watches open on this node",
            watchers.clone(),
        );
        let watch_events = Counter::default();
        registry.register(
            "watch_events_sent",
            "Watch events sent to clients of this node",
            watch_events.clone(),
        );
        let leases = Gauge::default();
        registry.register(
            "lease_leases",
            "Live leases (reported by the meta leader)",
            leases.clone(),
        );
        let leases_expired = Counter::default();
        registry.register(
            "lease_expired",
            "Leases expired by this node as meta leader",
            leases_expired.clone(),
        );
        let queue = crate::queue_metrics::QueueMetrics::register(&mut registry);
        Self {
            registry,
            streams,
            watchers,
            watch_events,
            leases,
            leases_expired,
            queue,
            peer_rtt_seconds,
            peer_rtt_p99_seconds,
            peer_probe_failures,
            requests,
            request_seconds,
            proposals,
            commit_seconds,
            fsync_seconds,
            fsync_batch_appends,
            group_commit_batch_writes,
            group_commit_pipelined,
            forwards,
            follower_linearizable_reads,
            stale_redirects,
            raft_term_max,
            raft_leader_changes,
            raft_groups_led,
            raft_groups_hosted,
            placement_moves,
            placement_leader_transfers,
            ranges_out_of_rule,
        }
    }

    pub fn placement_moves_inc(&self, kind: &str) {
        self.placement_moves
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encode metrics");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
