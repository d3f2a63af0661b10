//! The interface every client protocol (HTTP, etcd gRPC) is served through.

use crate::placement::PlacementView;
use crate::queue::QueueInfo;
use crate::view::{ClusterView, DrainStatus, NodeStatus};
use meridian_state::QueueSpec;
use meridian_state::queue::{Delivery, QueueConfig, Receipt, SendMessage, SendOutcome};
use meridian_state::{
    DeleteRangeRequest, DeleteRangeResponse, PlacementRule, PutRequest, PutResponse, RangeRequest,
    RangeResponse, TxnRequest, TxnResponse,
};
use meridian_types::{ErrorCode, MeridianError, RequestId};
use std::future::Future;
use std::time::Duration;

/// The forms [`Consistency::parse`] accepts, for error messages.
pub const CONSISTENCY_FORMS: &str =
    "linearizable, lease, bounded:<ms> (or bounded:<n>ms, bounded:<n>s), local or serializable";

/// The largest staleness bound a read may ask for (a day): a limit on input, not a promise.
pub const BOUNDED_STALENESS_MAX: Duration = Duration::from_secs(86_400);

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// The leader confirms it still leads (ReadIndex), then serves. The default.
    #[default]
    Linearizable,
    /// The leader serves within its lease, without a round of confirmation.
    Lease,
    /// The nearest replica that can prove its state misses no write acknowledged more than this
    /// long ago serves; otherwise the leader does (with a lease read).
    Bounded(Duration),
    /// Whatever the nearest replica has (etcd's `serializable`).
    Local,
}

impl Consistency {
    /// Parses the `consistency` query parameter (and the CLI flag, the gRPC metadata).
    pub fn parse(s: &str) -> Result<Self, MeridianError> {
        match s {
            "linearizable" | "" => Ok(Consistency::Linearizable),
            "lease" => Ok(Consistency::Lease),
            "local" | "serializable" => Ok(Consistency::Local),
            other => match other.strip_prefix("bounded:") {
                Some(bound) => parse_bound(bound).map(Consistency::Bounded),
                None => Err(MeridianError::invalid(format!(
                    "unknown consistency {other:?}; expected {CONSISTENCY_FORMS}"
                ))),
            },
        }
    }
}

impl std::fmt::Display for Consistency {
    /// The form [`Consistency::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Consistency::Linearizable => f.write_str("linearizable"),
            Consistency::Lease => f.write_str("lease"),
            Consistency::Bounded(d) => write!(f, "bounded:{}", d.as_millis()),
            Consistency::Local => f.write_str("local"),
        }
    }
}

/// `500`, `500ms` or `5s` as a duration of at most [`BOUNDED_STALENESS_MAX`].
fn parse_bound(s: &str) -> Result<Duration, MeridianError> {
    let bad = || {
        MeridianError::invalid(format!(
            "bad staleness bound {s:?} in bounded:{s}; expected milliseconds (bounded:5000), \
             bounded:<n>ms or bounded:<n>s, at most {} s",
            BOUNDED_STALENESS_MAX.as_secs()
        ))
    };
    let (digits, scale_ms) = if let Some(d) = s.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = s.strip_suffix('s') {
        (d, 1000)
    } else {
        (s, 1)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms = n.checked_mul(scale_ms).ok_or_else(bad)?;
    let d = Duration::from_millis(ms);
    if d > BOUNDED_STALENESS_MAX {
        return Err(bad());
    }
    Ok(d)
}

/// Options of one read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    pub consistency: Consistency,
    /// A session token: a replica other than the leader serves only if its range has reached
    /// this revision (a revision the client saw from this range), so the client reads its own
    /// writes. 0 means none. Revisions are per range: a token is meaningful for the range it
    /// came from only.
    pub min_revision: u64,
}

/// A read's answer with how fresh it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRead {
    pub resp: RangeResponse,
    /// The most the answer may miss: no write acknowledged more than this many milliseconds
    /// before the answer is missing from it. 0 for linearizable and lease reads and any read the
    /// leader served; `None` for a `local` read whose replica could not prove a bound.
    pub staleness_ms: Option<u64>,
}

/// Options of one write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// A retried write with the same id is applied once.
    pub request_id: Option<RequestId>,
}

/// What a client protocol needs from a node. Any node accepts any request and routes it.
/// Requests are validated against the node's limits here, so every protocol gets the same errors.
pub trait ClientApi: Clone + Send + Sync + 'static {
    /// A read; a range that spans several ranges is merged in key order.
    fn range(
        &self,
        req: RangeRequest,
        consistency: Consistency,
    ) -> impl Future<Output = Result<RangeResponse, MeridianError>> + Send;

    /// A read with options; also reports how stale the answer may be. The default serves it
    /// through [`ClientApi::range`] and reports it as fresh (for test doubles).
    fn range_read(
        &self,
        req: RangeRequest,
        opts: ReadOptions,
    ) -> impl Future<Output = Result<RangeRead, MeridianError>> + Send {
        async move {
            let resp = self.range(req, opts.consistency).await?;
            Ok(RangeRead {
                resp,
                staleness_ms: Some(0),
            })
        }
    }

    fn put(
        &self,
        req: PutRequest,
        opts: WriteOptions,
    ) -> impl Future<Output = Result<PutResponse, MeridianError>> + Send;

    /// Deletes a key or a key range; a range that spans several ranges is deleted range by
    /// range (each part atomic, the whole not).
    fn delete_range(
        &self,
        req: DeleteRangeRequest,
        opts: WriteOptions,
    ) -> impl Future<Output = Result<DeleteRangeResponse, MeridianError>> + Send;

    /// A transaction; every key it touches must live in one range (`cross_range_txn`).
    fn txn(
        &self,
        req: TxnRequest,
        opts: WriteOptions,
    ) -> impl Future<Output = Result<TxnResponse, MeridianError>> + Send;

    /// A transaction that also publishes to stream partitions and sends to queues of the same
    /// range, all or nothing (`cross_range_txn` when they are not all in one range).
    fn txn_with_messages(
        &self,
        _req: crate::outbox::OutboxRequest,
        _opts: WriteOptions,
    ) -> impl Future<Output = Result<meridian_state::outbox::OutboxResponse, MeridianError>> + Send
    {
        async move {
            Err(MeridianError::invalid(
                "transactions with messages are not served here",
            ))
        }
    }

    /// Compacts every range below `revision`. Returns the revision compacted at.
    fn compact(&self, revision: u64) -> impl Future<Output = Result<u64, MeridianError>> + Send;

    /// The cluster map as this node knows it, with leaders, terms and health.
    fn cluster_view(&self) -> impl Future<Output = Result<ClusterView, MeridianError>> + Send;

    /// Every placement rule in prefix order, the implicit default first when no rule is stored
    /// for the empty prefix.
    fn placements(&self) -> impl Future<Output = Result<Vec<PlacementView>, MeridianError>> + Send;

    /// The rule stored for exactly `prefix` (`key_not_found` if none); the empty prefix always
    /// answers, with the implicit default if no rule is stored for it.
    fn placement(
        &self,
        prefix: Vec<u8>,
    ) -> impl Future<Output = Result<PlacementView, MeridianError>> + Send;

    /// Validates a rule against the cluster's topology (`invalid_argument`,
    /// `placement_unsatisfiable`) and stores it, replacing the rule for the same prefix.
    fn set_placement(
        &self,
        rule: PlacementRule,
    ) -> impl Future<Output = Result<PlacementView, MeridianError>> + Send;

    /// Removes the rule for `prefix`; `Ok(false)` if there was none.
    fn delete_placement(
        &self,
        prefix: Vec<u8>,
    ) -> impl Future<Output = Result<bool, MeridianError>> + Send;

    /// This node's own status (etcd's `Maintenance.Status`).
    fn node_status(&self) -> impl Future<Output = Result<NodeStatus, MeridianError>> + Send;

    /// Whether this node is part of an initialised cluster and can reach the meta leader.
    fn ready(&self) -> impl Future<Output = Result<(), MeridianError>> + Send;

    /// `(cluster_id, node_id)` of this node, cheap (for etcd response headers). Zero while the
    /// node has not joined a cluster.
    fn identity(&self) -> (u64, u64);

    /// The node's limits on client input.
    fn limits(&self) -> &meridian_types::Limits;

    /// Counts one client request by operation and outcome (`ok` or the error code) and its
    /// latency, for `/metrics`.
    fn observe_request(&self, op: &'static str, outcome: Result<(), ErrorCode>, seconds: f64);

    /// The Prometheus text exposition of every metric of this node.
    fn metrics_text(&self) -> String;

    /// Starts draining `node` (idempotent): the placement driver moves its replicas and
    /// leaderships away. Returns what it still holds.
    fn drain_node(
        &self,
        node: u64,
    ) -> impl Future<Output = Result<DrainStatus, MeridianError>> + Send {
        async move {
            Err(MeridianError::invalid(format!(
                "draining node {node} is not supported here"
            )))
        }
    }

    /// The node's event-stream operations (`None` where streams are not served).
    fn streams(&self) -> Option<crate::stream::Streams> {
        None
    }

    /// Opens a watch (see `watch.rs` for its order and guarantees).
    fn watch(
        &self,
        spec: crate::watch::WatchSpec,
    ) -> impl Future<Output = Result<crate::watch::WatchStream, MeridianError>> + Send {
        async move {
            let _ = spec;
            Err(MeridianError::invalid("watches are not supported here"))
        }
    }

    /// Grants a lease of `ttl_s` seconds; `id` 0 lets the cluster pick one. Returns the id and
    /// the TTL granted.
    fn lease_grant(
        &self,
        id: i64,
        ttl_s: i64,
    ) -> impl Future<Output = Result<(i64, i64), MeridianError>> + Send {
        async move {
            let _ = (id, ttl_s);
            Err(MeridianError::invalid("leases are not supported here"))
        }
    }

    /// Revokes a lease and deletes its keys (`lease_not_found` if it does not exist).
    fn lease_revoke(&self, id: i64) -> impl Future<Output = Result<(), MeridianError>> + Send {
        async move {
            let _ = id;
            Err(MeridianError::invalid("leases are not supported here"))
        }
    }

    /// Restarts a lease's TTL; returns the TTL.
    fn lease_keep_alive(&self, id: i64) -> impl Future<Output = Result<i64, MeridianError>> + Send {
        async move {
            let _ = id;
            Err(MeridianError::invalid("leases are not supported here"))
        }
    }

    /// A lease's time left and granted TTL, with its keys when `keys`.
    fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> impl Future<Output = Result<crate::lease::LeaseInfo, MeridianError>> + Send {
        async move {
            let _ = (id, keys);
            Err(MeridianError::invalid("leases are not supported here"))
        }
    }

    /// The ids of every live lease.
    fn lease_list(&self) -> impl Future<Output = Result<Vec<i64>, MeridianError>> + Send {
        async move { Err(MeridianError::invalid("leases are not supported here")) }
    }

    /// Marks a node that holds nothing as removed; `not_drained` while it still holds replicas
    /// or votes in the meta group.
    fn remove_node(&self, node: u64) -> impl Future<Output = Result<(), MeridianError>> + Send {
        async move {
            Err(MeridianError::invalid(format!(
                "removing node {node} is not supported here"
            )))
        }
    }

    // ---- work queues (see `queue.rs`); the defaults serve none, for test doubles ----

    /// Creates a queue (idempotent for the same configuration); `colocate` puts it in the
    /// range holding that key.
    fn queue_create(
        &self,
        _name: String,
        _config: QueueConfig,
        _colocate: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<QueueSpec, MeridianError>> + Send {
        async move { Err(queues_not_served()) }
    }

    /// Deletes a queue and its messages; `Ok(false)` if there was none.
    fn queue_delete(
        &self,
        _name: String,
    ) -> impl Future<Output = Result<bool, MeridianError>> + Send {
        async move { Err(queues_not_served()) }
    }

    /// Every queue in the catalogue.
    fn queue_list(&self) -> impl Future<Output = Result<Vec<QueueSpec>, MeridianError>> + Send {
        async move { Err(queues_not_served()) }
    }

    /// A queue with its depth and totals.
    fn queue_info(
        &self,
        _name: String,
    ) -> impl Future<Output = Result<QueueInfo, MeridianError>> + Send {
        async move { Err(queues_not_served()) }
    }

    /// Sends a batch, all or nothing, acknowledged once durable on a quorum.
    fn queue_send(
        &self,
        _name: String,
        _messages: Vec<SendMessage>,
    ) -> impl Future<Output = Result<Vec<SendOutcome>, MeridianError>> + Send {
        async move { Err(queues_not_served()) }
    }

    /// Receives up to `max` messages, waiting up to `wait` for the first.
    fn queue_receive(
        &self,
        _name: String,
        _max: u32,
        _wait: Duration,
        _visibility_timeout_ms: Option<u64>,
    ) -> impl Future<Output = Result<Vec<Delivery>, MeridianError>> + Send {
        async move { Err(queues_not_served()) }
    }

    /// Acks deliveries: per receipt `Ok(true)`, `Ok(false)` (gone already) or `stale_receipt`.
    fn queue_ack(
        &self,
        _name: String,
        _receipts: Vec<Receipt>,
    ) -> impl Future<Output = Result<Vec<Result<bool, MeridianError>>, MeridianError>> + Send {
        async move { Err(queues_not_served()) }
    }

    /// Gives a delivery up: ready again after `delay_ms`, or dead after its last delivery.
    fn queue_nack(
        &self,
        _name: String,
        _receipt: Receipt,
        _delay_ms: u64,
        _error: String,
    ) -> impl Future<Output = Result<(), MeridianError>> + Send {
        async move { Err(queues_not_served()) }
    }

    /// Moves a delivery's deadline to now + `timeout_ms`; returns the new deadline.
    fn queue_extend(
        &self,
        _name: String,
        _receipt: Receipt,
        _timeout_ms: u64,
    ) -> impl Future<Output = Result<u64, MeridianError>> + Send {
        async move { Err(queues_not_served()) }
    }
}

fn queues_not_served() -> MeridianError {
    MeridianError::invalid("work queues are not served here")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let ok = [
            ("", Consistency::Linearizable),
            ("linearizable", Consistency::Linearizable),
            ("lease", Consistency::Lease),
            ("local", Consistency::Local),
            ("serializable", Consistency::Local),
            ("bounded:5000", Consistency::Bounded(Duration::from_secs(5))),
            (
                "bounded:250ms",
                Consistency::Bounded(Duration::from_millis(250)),
            ),
            ("bounded:5s", Consistency::Bounded(Duration::from_secs(5))),
            ("bounded:0", Consistency::Bounded(Duration::ZERO)),
        ];
        for (s, want) in ok {
            assert_eq!(Consistency::parse(s).ok(), Some(want), "{s}");
        }
        for c in [
            Consistency::Lease,
            Consistency::Bounded(Duration::from_millis(1500)),
        ] {
            assert_eq!(Consistency::parse(&c.to_string()).ok(), Some(c));
        }
    }

    #[test]
    fn rejects_bad_forms_and_lists_the_good_ones() {
        for s in [
            "bounded",
            "bounded:",
            "bounded:-1",
            "bounded:1.5s",
            "bounded:5m",
            "bounded:99999999999999999999",
            "bounded:100000s",
            "strong",
        ] {
            let e = Consistency::parse(s).expect_err(s);
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{s}");
            assert!(e.message.contains("bounded:"), "{s}: {}", e.message);
        }
    }
}
