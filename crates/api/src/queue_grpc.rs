//! The `meridian.v1.Queues` gRPC service (`crates/proto/proto/meridian/queue.proto`) over a
//! node's [`ClientApi`]: the same operations, validation and errors as `/v1/queues`.

use crate::etcd::status::to_status;
use crate::observe::observed;
use meridian_node::{ClientApi, QueueInfo};
use meridian_proto::v1 as pb;
use meridian_proto::v1::queues_server::{Queues, QueuesServer};
use meridian_state::QueueSpec;
use meridian_state::queue::{Delivery, QueueConfig, QueueStats, Receipt, SendMessage};
use meridian_types::MeridianError;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The service, ready to add to a router. Messages over `limits().request_bytes_max` are refused.
pub fn server<A: ClientApi>(api: A) -> QueuesServer<QueueService<A>> {
    let max = api.limits().request_bytes_max;
    QueuesServer::new(QueueService { api }).max_decoding_message_size(max)
}

/// `meridian.v1.Queues` over a [`ClientApi`].
#[derive(Clone, Debug)]
pub struct QueueService<A> {
    api: A,
}

fn spec_pb(s: QueueSpec) -> pb::QueueSpec {
    pb::QueueSpec {
        name: s.name,
        range_id: s.range.0,
        config: Some(pb::QueueConfig {
            visibility_timeout_ms: s.config.visibility_timeout_ms,
            max_deliveries: s.config.max_deliveries,
            dead_letter: s.config.dead_letter.unwrap_or_default(),
            delay_ms: s.config.delay_ms,
            dedup_window_ms: s.config.dedup_window_ms,
        }),
    }
}

fn stats_pb(s: QueueStats) -> pb::QueueStats {
    let c = s.counters;
    pb::QueueStats {
        ready: s.ready,
        delayed: s.delayed,
        in_flight: s.in_flight,
        dead: s.dead,
        sent: c.sent,
        duplicates: c.duplicates,
        delivered: c.delivered,
        redelivered: c.redelivered,
        acked: c.acked,
        nacked: c.nacked,
        expired: c.expired,
        dead_lettered: c.dead_lettered,
    }
}

fn delivery_pb(d: Delivery) -> pb::Delivery {
    pb::Delivery {
        id: d.id.0,
        receipt: d.receipt.to_string(),
        body: d.body,
        attributes: d.attributes.into_iter().collect(),
        group: d.group.unwrap_or_default(),
        enqueued_ms: d.enqueued_ms,
        deliveries: d.deliveries,
        deadline_ms: d.deadline_ms,
        last_error: d.last_error.unwrap_or_default(),
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn receipt(s: &str) -> Result<Receipt, Status> {
    s.parse::<Receipt>().map_err(to_status)
}

fn st<T>(r: Result<T, MeridianError>) -> Result<T, Status> {
    r.map_err(to_status)
}

#[tonic::async_trait]
impl<A: ClientApi> Queues for QueueService<A> {
    async fn create_queue(
        &self,
        req: Request<pb::CreateQueueRequest>,
    ) -> Result<Response<pb::QueueSpec>, Status> {
        let r = req.into_inner();
        let d = QueueConfig::default();
        let config = QueueConfig {
            visibility_timeout_ms: r.visibility_timeout_ms.unwrap_or(d.visibility_timeout_ms),
            max_deliveries: r.max_deliveries.unwrap_or(d.max_deliveries),
            dead_letter: non_empty(r.dead_letter),
            delay_ms: r.delay_ms.unwrap_or(d.delay_ms),
            dedup_window_ms: r.dedup_window_ms.unwrap_or(d.dedup_window_ms),
        };
        let colocate = (!r.colocate.is_empty()).then_some(r.colocate);
        let fut = self.api.queue_create(r.name, config, colocate);
        let spec = st(observed(&self.api, "queue_create", fut).await)?;
        Ok(Response::new(spec_pb(spec)))
    }

    async fn delete_queue(
        &self,
        req: Request<pb::QueueName>,
    ) -> Result<Response<pb::DeleteQueueResponse>, Status> {
        let deleted = st(self.api.queue_delete(req.into_inner().name).await)?;
        Ok(Response::new(pb::DeleteQueueResponse { deleted }))
    }

    async fn list_queues(
        &self,
        _req: Request<pb::ListQueuesRequest>,
    ) -> Result<Response<pb::ListQueuesResponse>, Status> {
        let queues = st(self.api.queue_list().await)?;
        Ok(Response::new(pb::ListQueuesResponse {
            queues: queues.into_iter().map(spec_pb).collect(),
        }))
    }

    async fn get_queue(
        &self,
        req: Request<pb::QueueName>,
    ) -> Result<Response<pb::QueueInfo>, Status> {
        let QueueInfo { spec, stats } = st(self.api.queue_info(req.into_inner().name).await)?;
        Ok(Response::new(pb::QueueInfo {
            spec: Some(spec_pb(spec)),
            stats: Some(stats_pb(stats)),
        }))
    }

    async fn send(
        &self,
        req: Request<pb::SendRequest>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        let r = req.into_inner();
        let msgs = r
            .messages
            .into_iter()
            .map(|m| SendMessage {
                body: m.body,
                attributes: m.attributes.into_iter().collect(),
                group: non_empty(m.group),
                dedup_id: non_empty(m.dedup_id),
                delay_ms: m.delay_ms,
            })
            .collect();
        let fut = self.api.queue_send(r.queue, msgs);
        let sent = st(observed(&self.api, "queue_send", fut).await)?;
        Ok(Response::new(pb::SendResponse {
            messages: sent
                .into_iter()
                .map(|s| pb::SendOutcome {
                    id: s.id.0,
                    duplicate: s.duplicate,
                })
                .collect(),
        }))
    }

    async fn receive(
        &self,
        req: Request<pb::ReceiveRequest>,
    ) -> Result<Response<pb::ReceiveResponse>, Status> {
        let r = req.into_inner();
        let max = if r.max == 0 { 1 } else { r.max };
        let wait = Duration::from_millis(r.wait_ms);
        let fut = self
            .api
            .queue_receive(r.queue, max, wait, r.visibility_timeout_ms);
        let got = st(observed(&self.api, "queue_receive", fut).await)?;
        Ok(Response::new(pb::ReceiveResponse {
            messages: got.into_iter().map(delivery_pb).collect(),
        }))
    }

    async fn ack(&self, req: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        let r = req.into_inner();
        let receipts = r
            .receipts
            .iter()
            .map(|s| receipt(s))
            .collect::<Result<Vec<_>, _>>()?;
        let fut = self.api.queue_ack(r.queue, receipts);
        let results = st(observed(&self.api, "queue_ack", fut).await)?;
        Ok(Response::new(pb::AckResponse {
            results: r
                .receipts
                .into_iter()
                .zip(results)
                .map(|(receipt, res)| match res {
                    Ok(acked) => pb::AckResult {
                        receipt,
                        acked,
                        ..Default::default()
                    },
                    Err(e) => pb::AckResult {
                        receipt,
                        acked: false,
                        error_code: e.code.as_str().to_string(),
                        error_message: e.message,
                    },
                })
                .collect(),
        }))
    }

    async fn nack(
        &self,
        req: Request<pb::NackRequest>,
    ) -> Result<Response<pb::NackResponse>, Status> {
        let r = req.into_inner();
        let fut = self
            .api
            .queue_nack(r.queue, receipt(&r.receipt)?, r.delay_ms, r.error);
        st(observed(&self.api, "queue_nack", fut).await)?;
        Ok(Response::new(pb::NackResponse {}))
    }

    async fn extend(
        &self,
        req: Request<pb::ExtendRequest>,
    ) -> Result<Response<pb::ExtendResponse>, Status> {
        let r = req.into_inner();
        let fut = self
            .api
            .queue_extend(r.queue, receipt(&r.receipt)?, r.timeout_ms);
        let deadline_ms = st(observed(&self.api, "queue_extend", fut).await)?;
        Ok(Response::new(pb::ExtendResponse { deadline_ms }))
    }
}
