//! The client API of a node: validation against the limits, key → range routing, scans and
//! deletes merged across ranges, transactions confined to one range.

use crate::client_api::{ClientApi, Consistency, RangeRead, ReadOptions, WriteOptions};
use crate::messages::*;
use crate::node::{ADMIN_CALL_TIMEOUT, Node, decode};
use crate::placement::PlacementView;
use crate::view::{ClusterView, NodeStatus, NodeView, RangeView};
use meridian_state::*;
use meridian_types::{ErrorCode, GroupId, Limits, MeridianError, NodeId, RangeId, RequestId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The interval `[start, end)` an etcd-style `(key, range_end)` covers; `end` empty = no end.
pub(crate) fn interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if range_end.is_empty() {
        let mut end = key.to_vec();
        end.push(0);
        (key.to_vec(), end)
    } else if range_end == [0] {
        (key.to_vec(), Vec::new())
    } else {
        (key.to_vec(), range_end.to_vec())
    }
}

/// The etcd-style `range_end` of `[start, end)` clipped to a range's bounds.
pub(crate) fn clip(start: &[u8], end: &[u8], r: &RangeInfo) -> (Vec<u8>, Vec<u8>) {
    let s = if start < r.start.as_slice() {
        r.start.clone()
    } else {
        start.to_vec()
    };
    let e = match (end.is_empty(), r.end.is_empty()) {
        (true, true) => vec![0],
        (true, false) => r.end.clone(),
        (false, true) => end.to_vec(),
        (false, false) => {
            if end < r.end.as_slice() {
                end.to_vec()
            } else {
                r.end.clone()
            }
        }
    };
    (s, e)
}

pub(crate) fn new_request_id(opts: WriteOptions) -> RequestId {
    opts.request_id
        .unwrap_or_else(|| RequestId(meridian_types::rng::next_u128()))
}

impl Node {
    fn limits_ref(&self) -> &Limits {
        &self.inner.cfg.limits
    }

    fn check_key(&self, key: &[u8], what: &str) -> Result<(), MeridianError> {
        if key.is_empty() {
            return Err(MeridianError::invalid(format!("{what} is not provided")));
        }
        self.check_key_size(key)
    }

    fn check_key_size(&self, key: &[u8]) -> Result<(), MeridianError> {
        let max = self.limits_ref().key_bytes_max;
        if key.len() > max {
            return Err(MeridianError::new(
                ErrorCode::KeyTooLarge,
                format!("key of {} bytes is over the limit of {max}", key.len()),
            ));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), MeridianError> {
        let max = self.limits_ref().value_bytes_max;
        if value.len() > max {
            return Err(MeridianError::new(
                ErrorCode::ValueTooLarge,
                format!("value of {} bytes is over the limit of {max}", value.len()),
            ));
        }
        Ok(())
    }

    fn check_op(&self, op: &RequestOp) -> Result<(), MeridianError> {
        match op {
            RequestOp::Range(r) => {
                self.check_key(&r.key, "key")?;
                self.check_key_size(&r.range_end)
            }
            RequestOp::Put(p) => {
                self.check_key(&p.key, "key")?;
                self.check_value(&p.value)
            }
            RequestOp::DeleteRange(d) => {
                self.check_key(&d.key, "key")?;
                self.check_key_size(&d.range_end)
            }
        }
    }

    pub(crate) fn map_or_err(&self) -> Result<Arc<ClusterMap>, MeridianError> {
        self.map_arc()
            .filter(|m| m.is_initialized() || !m.ranges.is_empty())
            .ok_or_else(|| self.no_map_error())
    }

    /// Checks a transaction's shape and sizes; `extra_ops` more operations (messages) ride
    /// with it and count against the same limit.
    pub(crate) fn check_txn(
        &self,
        req: &TxnRequest,
        extra_ops: usize,
    ) -> Result<(), MeridianError> {
        let n_ops = req.compare.len() + req.success.len() + req.failure.len() + extra_ops;
        let max = self.limits_ref().txn_ops_max;
        if n_ops > max {
            return Err(MeridianError::new(
                ErrorCode::TooManyTxnOps,
                format!("transaction of {n_ops} operations is over the limit of {max}"),
            ));
        }
        for c in &req.compare {
            self.check_key_size(&c.key)?;
            if let CompareTarget::Value(v) = &c.target {
                self.check_value(v)?;
            }
        }
        for op in req.success.iter().chain(req.failure.iter()) {
            self.check_op(op)?;
        }
        Ok(())
    }

    /// The one range every key of a transaction lives in.
    fn txn_range(&self, req: &TxnRequest) -> Result<RangeId, MeridianError> {
        let map = self.map_or_err()?;
        // A transaction with no keys at all runs on the first range.
        self.txn_keys_range(req)?
            .or_else(|| map.ranges.keys().next().copied())
            .ok_or_else(|| MeridianError::invalid("no range"))
    }

    /// The one range every key of a transaction lives in, `None` if it names no key.
    pub(crate) fn txn_keys_range(
        &self,
        req: &TxnRequest,
    ) -> Result<Option<RangeId>, MeridianError> {
        let map = self.map_or_err()?;
        let mut spans: Vec<(&[u8], &[u8])> = Vec::new();
        for c in &req.compare {
            spans.push((&c.key, &c.range_end));
        }
        for op in req.success.iter().chain(req.failure.iter()) {
            match op {
                RequestOp::Range(r) => spans.push((&r.key, &r.range_end)),
                RequestOp::Put(p) => spans.push((&p.key, &[])),
                RequestOp::DeleteRange(d) => spans.push((&d.key, &d.range_end)),
            }
        }
        let mut found: Option<RangeId> = None;
        for (k, e) in spans {
            let (s, end) = interval(k, e);
            for r in map.ranges_overlapping(&s, &end) {
                match found {
                    None => found = Some(r.id),
                    Some(f) if f == r.id => {}
                    Some(f) => {
                        return Err(MeridianError::new(
                            ErrorCode::CrossRangeTxn,
                            format!(
                                "a transaction must stay within one range; it touches ranges {f} and {}",
                                r.id
                            ),
                        ));
                    }
                }
            }
        }
        Ok(found)
    }

    async fn run_txn(
        &self,
        range: RangeId,
        req: TxnRequest,
        opts: WriteOptions,
    ) -> Result<TxnResponse, MeridianError> {
        let op = GroupOp::Txn {
            req,
            request_id: new_request_id(opts),
            seen_revision: 0,
        };
        match self.execute(range.group(), op).await? {
            GroupReply::Kv(KvResult::Txn(t)) => Ok(t),
            other => Err(MeridianError::internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    async fn range_one(
        &self,
        group: GroupId,
        req: RangeRequest,
        opts: ReadOptions,
    ) -> Result<RangeRead, MeridianError> {
        match self
            .execute(
                group,
                GroupOp::Range {
                    req,
                    consistency: opts.consistency.into(),
                    min_revision: opts.min_revision,
                },
            )
            .await?
        {
            GroupReply::Range { resp, staleness_ms } => Ok(RangeRead { resp, staleness_ms }),
            other => Err(MeridianError::internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    async fn fan_out_reports(&self) -> Vec<(NodeId, Option<NodeReport>)> {
        let Some(map) = self.cluster_map() else {
            return vec![(self.id(), Some(self.report()))];
        };
        let calls = map.nodes.keys().map(|&n| async move {
            if n == self.id() {
                return (n, Some(self.report()));
            }
            let env = self.envelope(n, GroupId::META, M_STATUS, Vec::new(), ADMIN_CALL_TIMEOUT);
            let r = match self.inner.transport.call(env).await {
                Ok(b) => decode::<NodeReport>(&b).ok(),
                Err(_) => None,
            };
            (n, r)
        });
        futures::future::join_all(calls).await
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl ClientApi for Node {
    async fn drain_node(&self, node: u64) -> Result<crate::DrainStatus, MeridianError> {
        self.drain(NodeId(node)).await
    }

    async fn remove_node(&self, node: u64) -> Result<(), MeridianError> {
        self.remove(NodeId(node)).await
    }

    fn streams(&self) -> Option<crate::stream::Streams> {
        Some(Node::streams(self))
    }

    async fn watch(
        &self,
        spec: crate::watch::WatchSpec,
    ) -> Result<crate::watch::WatchStream, MeridianError> {
        self.open_watch(spec).await
    }

    async fn lease_grant(&self, id: i64, ttl_s: i64) -> Result<(i64, i64), MeridianError> {
        Node::lease_grant(self, id, ttl_s).await
    }

    async fn lease_revoke(&self, id: i64) -> Result<(), MeridianError> {
        Node::lease_revoke(self, id).await
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<i64, MeridianError> {
        Node::lease_keep_alive(self, id).await
    }

    async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<crate::lease::LeaseInfo, MeridianError> {
        Node::lease_time_to_live(self, id, keys).await
    }

    async fn lease_list(&self) -> Result<Vec<i64>, MeridianError> {
        Node::lease_list(self).await
    }

    async fn range(
        &self,
        req: RangeRequest,
        consistency: Consistency,
    ) -> Result<RangeResponse, MeridianError> {
        let opts = ReadOptions {
            consistency,
            min_revision: 0,
        };
        Ok(self.range_read(req, opts).await?.resp)
    }

    async fn range_read(
        &self,
        mut req: RangeRequest,
        opts: ReadOptions,
    ) -> Result<RangeRead, MeridianError> {
        self.check_key(&req.key, "key")?;
        self.check_key_size(&req.range_end)?;
        let page = self.limits_ref().scan_page_max as u64;
        if req.limit == 0 || req.limit > page {
            req.limit = page;
        }
        let map = self.map_or_err()?;
        let (start, end) = interval(&req.key, &req.range_end);
        let ranges: Vec<RangeInfo> = map
            .ranges_overlapping(&start, &end)
            .into_iter()
            .cloned()
            .collect();
        if req.range_end.is_empty() || ranges.len() == 1 {
            let Some(r) = ranges.first() else {
                return Err(MeridianError::internal("no range holds the key"));
            };
            return self.range_one(r.id.group(), req, opts).await;
        }
        let mut out = RangeResponse::default();
        // The answer is as stale as its stalest part.
        let mut staleness_ms = Some(0);
        for r in &ranges {
            let (key, range_end) = clip(&start, &end, r);
            let remaining = req.limit.saturating_sub(out.kvs.len() as u64);
            let sub = RangeRequest {
                key,
                range_end,
                limit: remaining.max(1),
                ..req.clone()
            };
            let part = match self.range_one(r.id.group(), sub.clone(), opts).await {
                // A revision taken from another range's clock may be ahead of this range's last
                // write: this range's latest state is its state at that revision.
                Err(e) if e.code == ErrorCode::FutureRevision => {
                    self.range_one(r.id.group(), RangeRequest { revision: 0, ..sub }, opts)
                        .await?
                }
                other => other?,
            };
            staleness_ms = staleness_ms.zip(part.staleness_ms).map(|(a, b)| a.max(b));
            let resp = part.resp;
            out.count += resp.count;
            out.revision = out.revision.max(resp.revision);
            if remaining > 0 {
                out.kvs
                    .extend(resp.kvs.into_iter().take(remaining as usize));
            }
        }
        out.more = !req.count_only && out.count > out.kvs.len() as u64;
        Ok(RangeRead {
            resp: out,
            staleness_ms,
        })
    }

    async fn put(&self, req: PutRequest, opts: WriteOptions) -> Result<PutResponse, MeridianError> {
        self.check_key(&req.key, "key")?;
        self.check_value(&req.value)?;
        let map = self.map_or_err()?;
        let range = map
            .range_for(&req.key)
            .ok_or_else(|| MeridianError::internal("no range holds the key"))?
            .id;
        let req = RequestOp::Put(req);
        self.check_leases(std::slice::from_ref(&req)).await?;
        let t = self
            .run_txn(
                range,
                TxnRequest {
                    compare: vec![],
                    success: vec![req],
                    failure: vec![],
                },
                opts,
            )
            .await?;
        match t.responses.into_iter().next() {
            Some(ResponseOp::Put(p)) => Ok(p),
            other => Err(MeridianError::internal(format!(
                "unexpected put response {other:?}"
            ))),
        }
    }

    async fn delete_range(
        &self,
        req: DeleteRangeRequest,
        opts: WriteOptions,
    ) -> Result<DeleteRangeResponse, MeridianError> {
        self.check_key(&req.key, "key")?;
        self.check_key_size(&req.range_end)?;
        let map = self.map_or_err()?;
        let (start, end) = interval(&req.key, &req.range_end);
        let ranges: Vec<RangeInfo> = map
            .ranges_overlapping(&start, &end)
            .into_iter()
            .cloned()
            .collect();
        let mut out = DeleteRangeResponse::default();
        let single = req.range_end.is_empty() || ranges.len() == 1;
        for (i, r) in ranges.iter().enumerate() {
            let sub = if single {
                req.clone()
            } else {
                let (key, range_end) = clip(&start, &end, r);
                DeleteRangeRequest {
                    key,
                    range_end,
                    prev_kv: req.prev_kv,
                }
            };
            // Each part carries its own request id derived from the caller's, so a retry of the
            // whole delete is still applied once per range.
            let part_opts = WriteOptions {
                request_id: opts
                    .request_id
                    .map(|id| RequestId(id.0.wrapping_add(i as u128))),
            };
            let t = self
                .run_txn(
                    r.id,
                    TxnRequest {
                        compare: vec![],
                        success: vec![RequestOp::DeleteRange(sub)],
                        failure: vec![],
                    },
                    part_opts,
                )
                .await?;
            out.revision = out.revision.max(t.revision);
            if let Some(ResponseOp::DeleteRange(d)) = t.responses.into_iter().next() {
                out.deleted += d.deleted;
                out.prev_kvs.extend(d.prev_kvs);
            }
            if single {
                break;
            }
        }
        Ok(out)
    }

    async fn txn(&self, req: TxnRequest, opts: WriteOptions) -> Result<TxnResponse, MeridianError> {
        self.check_txn(&req, 0)?;
        let range = self.txn_range(&req)?;
        self.check_leases(&req.success).await?;
        self.check_leases(&req.failure).await?;
        self.run_txn(range, req, opts).await
    }

    async fn txn_with_messages(
        &self,
        req: crate::outbox::OutboxRequest,
        opts: WriteOptions,
    ) -> Result<meridian_state::outbox::OutboxResponse, MeridianError> {
        self.outbox_txn(req, opts).await
    }

    async fn compact(&self, revision: u64) -> Result<u64, MeridianError> {
        let map = self.map_or_err()?;
        let mut compacted_any = false;
        let mut last_err = None;
        for r in map.ranges.values().filter(|r| r.is_keyspace()) {
            let op = GroupOp::Compact {
                revision,
                request_id: RequestId(meridian_types::rng::next_u128()),
            };
            match self.execute(r.id.group(), op).await {
                Ok(_) => compacted_any = true,
                // Ranges whose clock has not reached `revision` yet, or that are already compacted
                // past it, have nothing to do.
                Err(e) if e.code == ErrorCode::FutureRevision || e.code == ErrorCode::Compacted => {
                    last_err = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        match (compacted_any, last_err) {
            (false, Some(e)) => Err(e),
            _ => Ok(revision),
        }
    }

    async fn cluster_view(&self) -> Result<ClusterView, MeridianError> {
        let map = self.map_or_err()?;
        let reports = self.fan_out_reports().await;
        let mine = self.report();
        let mut healthy: BTreeMap<NodeId, bool> = BTreeMap::new();
        // Per group: (leader, term) from whoever claims to lead at the highest term.
        let mut lead: BTreeMap<GroupId, (Option<NodeId>, u64)> = BTreeMap::new();
        let mut by_leader: BTreeMap<GroupId, GroupReport> = BTreeMap::new();
        for (n, r) in &reports {
            healthy.insert(*n, r.is_some());
            let Some(r) = r else { continue };
            for g in &r.groups {
                let e = lead.entry(g.group).or_insert((None, 0));
                if g.term > e.1 || (g.term == e.1 && e.0.is_none()) {
                    *e = (g.leader, g.term);
                }
                if g.role == "leader" {
                    by_leader.insert(g.group, g.clone());
                }
            }
        }
        let nodes = map
            .nodes
            .values()
            .map(|n| NodeView {
                id: n.id.0,
                addr: n.addr.clone(),
                region: n.region.clone(),
                zone: n.zone.clone(),
                state: n.state.as_str().to_string(),
                healthy: healthy.get(&n.id).copied().unwrap_or(false)
                    || crate::probe::is_healthy(self, n.id),
            })
            .collect();
        let view_of = |id: u64, start: &[u8], end: &[u8], replicas: &[NodeId], version: u64| {
            let g = GroupId(id);
            let local = mine
                .groups
                .iter()
                .find(|x| x.group == g)
                .or_else(|| by_leader.get(&g));
            let (leader, term) = lead.get(&g).copied().unwrap_or((None, 0));
            RangeView {
                id,
                start: lossy(start),
                end: lossy(end),
                replicas: replicas.iter().map(|n| n.0).collect(),
                leader: leader.map(|l| l.0),
                term,
                applied_index: local.map(|l| l.applied_index),
                revision: local.map(|l| l.revision),
                version,
                rule: None,
                learners: Vec::new(),
                leader_region: leader
                    .and_then(|l| map.nodes.get(&l))
                    .map(|n| n.region.clone()),
                system: None,
            }
        };
        let mut ranges = vec![view_of(0, b"", b"", &map.meta_replicas, map.version)];
        for r in map.ranges.values() {
            let mut v = view_of(r.id.0, &r.start, &r.end, &r.replicas, r.version);
            v.rule = Some(lossy(&map.rule_for(r).prefix));
            v.learners = r.learners.iter().map(|n| n.0).collect();
            v.system = r.system.as_ref().map(|s| s.label.clone());
            ranges.push(v);
        }
        // The meta leader's driver is the one at work; others report nothing.
        let placement = reports
            .iter()
            .filter_map(|(_, r)| r.as_ref())
            .map(|r| r.placement.clone())
            .max_by_key(|p| p.len())
            .unwrap_or_default();
        Ok(ClusterView {
            cluster_id: map.cluster_id.0,
            node_id: self.id().0,
            nodes,
            ranges,
            latency: crate::probe::latency_view(self),
            placements: crate::placement::placement_views(&map),
            placement,
        })
    }

    async fn placements(&self) -> Result<Vec<PlacementView>, MeridianError> {
        self.list_placements().await
    }

    async fn placement(&self, prefix: Vec<u8>) -> Result<PlacementView, MeridianError> {
        self.get_placement(&prefix).await
    }

    async fn set_placement(&self, rule: PlacementRule) -> Result<PlacementView, MeridianError> {
        self.put_placement(rule).await
    }

    async fn delete_placement(&self, prefix: Vec<u8>) -> Result<bool, MeridianError> {
        self.remove_placement(&prefix).await
    }

    async fn node_status(&self) -> Result<NodeStatus, MeridianError> {
        let meta = self.group(GroupId::META).map(|g| g.status());
        let revision = self
            .hosted_groups()
            .iter()
            .map(|g| g.read(|s| s.kv.revision()))
            .max()
            .unwrap_or(0);
        Ok(NodeStatus {
            cluster_id: self.cluster_id(),
            node_id: self.id().0,
            version: env!("CARGO_PKG_VERSION").to_string(),
            db_size_bytes: self.inner.store.disk_bytes(),
            leader: meta.as_ref().and_then(|m| m.leader).map(|l| l.0),
            raft_term: meta.as_ref().map(|m| m.term).unwrap_or(0),
            raft_index: meta.as_ref().map(|m| m.last_log_index).unwrap_or(0),
            raft_applied_index: meta.as_ref().map(|m| m.applied_index).unwrap_or(0),
            revision,
        })
    }

    async fn ready(&self) -> Result<(), MeridianError> {
        if self.cluster_id() == 0 {
            return Err(MeridianError::new(
                ErrorCode::NotInitialized,
                "this node is not part of an initialised cluster",
            ));
        }
        match self.group(GroupId::META).and_then(|g| g.leader()) {
            Some(_) => Ok(()),
            None => Err(MeridianError::unavailable(
                "the meta group has no known leader",
            )),
        }
    }

    fn identity(&self) -> (u64, u64) {
        (self.cluster_id(), self.id().0)
    }

    fn limits(&self) -> &Limits {
        self.limits_ref()
    }

    fn observe_request(&self, op: &'static str, outcome: Result<(), ErrorCode>, seconds: f64) {
        let m = &self.inner.metrics;
        let outcome = match outcome {
            Ok(()) => "ok",
            Err(c) => c.as_str(),
        };
        m.requests
            .get_or_create(&crate::metrics::OpLabels {
                op: op.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        m.request_seconds
            .get_or_create(&crate::metrics::OpOnly { op: op.to_string() })
            .observe(seconds);
    }

    fn metrics_text(&self) -> String {
        self.inner.metrics.encode()
    }

    async fn queue_create(
        &self,
        name: String,
        config: meridian_state::queue::QueueConfig,
        colocate: Option<Vec<u8>>,
    ) -> Result<QueueSpec, MeridianError> {
        self.create_queue(&name, config, colocate.as_deref()).await
    }

    async fn queue_delete(&self, name: String) -> Result<bool, MeridianError> {
        self.delete_queue(&name).await
    }

    async fn queue_list(&self) -> Result<Vec<QueueSpec>, MeridianError> {
        self.map_or_err()?;
        Ok(self.list_queues())
    }

    async fn queue_info(&self, name: String) -> Result<crate::QueueInfo, MeridianError> {
        Node::queue_info(self, &name).await
    }

    async fn queue_send(
        &self,
        name: String,
        messages: Vec<meridian_state::queue::SendMessage>,
    ) -> Result<Vec<meridian_state::queue::SendOutcome>, MeridianError> {
        self.send_messages(&name, messages).await
    }

    async fn queue_receive(
        &self,
        name: String,
        max: u32,
        wait: std::time::Duration,
        visibility_timeout_ms: Option<u64>,
    ) -> Result<Vec<meridian_state::queue::Delivery>, MeridianError> {
        self.receive_messages(&name, max, wait, visibility_timeout_ms)
            .await
    }

    async fn queue_ack(
        &self,
        name: String,
        receipts: Vec<meridian_state::queue::Receipt>,
    ) -> Result<Vec<Result<bool, MeridianError>>, MeridianError> {
        self.ack_messages(&name, receipts).await
    }

    async fn queue_nack(
        &self,
        name: String,
        receipt: meridian_state::queue::Receipt,
        delay_ms: u64,
        error: String,
    ) -> Result<(), MeridianError> {
        self.nack_message(&name, receipt, delay_ms, error).await
    }

    async fn queue_extend(
        &self,
        name: String,
        receipt: meridian_state::queue::Receipt,
        timeout_ms: u64,
    ) -> Result<u64, MeridianError> {
        self.extend_message(&name, receipt, timeout_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: &[u8], end: &[u8]) -> RangeInfo {
        RangeInfo {
            id: RangeId(1),
            start: start.to_vec(),
            end: end.to_vec(),
            replicas: vec![],
            learners: vec![],
            version: 1,
            system: None,
        }
    }

    #[test]
    fn intervals_follow_etcd() {
        assert_eq!(interval(b"a", b""), (b"a".to_vec(), b"a\0".to_vec()));
        assert_eq!(interval(b"a", b"\0"), (b"a".to_vec(), vec![]));
        assert_eq!(interval(b"a", b"c"), (b"a".to_vec(), b"c".to_vec()));
    }

    #[test]
    fn clipping_to_range_bounds() {
        assert_eq!(
            clip(b"a", b"", &r(b"", b"m")),
            (b"a".to_vec(), b"m".to_vec())
        );
        assert_eq!(clip(b"a", b"", &r(b"m", b"")), (b"m".to_vec(), vec![0]));
        assert_eq!(
            clip(b"a", b"c", &r(b"", b"m")),
            (b"a".to_vec(), b"c".to_vec())
        );
        assert_eq!(
            clip(b"a", b"z", &r(b"m", b"")),
            (b"m".to_vec(), b"z".to_vec())
        );
    }
}
