//! `meridian.v1.Streams`: event streams over gRPC, the same operations as `/v1/streams`, and
//! `Follow`, a server stream of one partition's messages as they are published.

use crate::etcd::status::to_status;
use crate::http::request_id::parse_request_id;
use meridian_node::ClientApi;
use meridian_node::stream::{PartitionReadRequest, Streams};
use meridian_proto::v1 as pb;
use meridian_proto::v1::streams_server::{Streams as StreamsService, StreamsServer};
use meridian_state::stream::{NewMessage, ReadFrom, StreamMessage, StreamRead};
use meridian_types::MeridianError;
use std::pin::Pin;
use tonic::{Request, Response, Status, Streaming};

/// How long one read inside `Follow` waits for a message.
const FOLLOW_POLL_MS: u64 = 15_000;
/// Most requests of one `PublishStream` call being published at once; the next ones wait in
/// HTTP/2's flow-control window.
pub const PUBLISH_STREAM_IN_FLIGHT_MAX: usize = 1024;

/// The `Streams` service over a node's [`ClientApi`].
#[derive(Clone, Debug)]
pub struct GrpcStreams<A> {
    api: A,
}

/// The service, ready to add to a router.
pub fn server<A: ClientApi>(api: A) -> StreamsServer<GrpcStreams<A>> {
    let max = api.limits().request_bytes_max;
    StreamsServer::new(GrpcStreams { api }).max_decoding_message_size(max)
}

impl<A: ClientApi> GrpcStreams<A> {
    fn streams(&self) -> Result<Streams, Status> {
        self.api
            .streams()
            .ok_or_else(|| Status::unimplemented("this server does not serve streams"))
    }
}

fn message_pb(partition: u32, m: &StreamMessage) -> pb::StreamMessage {
    pb::StreamMessage {
        partition,
        offset: m.offset,
        timestamp_ms: m.timestamp_ms,
        key: m.key.clone(),
        value: m.payload.clone(),
        headers: m.headers.iter().cloned().collect(),
    }
}

fn read_request(r: pb::ReadRequest) -> PartitionReadRequest {
    use pb::read_request::From;
    let from = match r.from {
        Some(From::Offset(o)) => ReadFrom::Offset(o),
        Some(From::TimeMs(t)) => ReadFrom::Time(t),
        Some(From::Latest(true)) => ReadFrom::Latest,
        Some(From::Earliest(_) | From::Latest(false)) | None => ReadFrom::Earliest,
    };
    PartitionReadRequest {
        stream: r.stream,
        partition: r.partition,
        from,
        group: (!r.group.is_empty()).then_some(r.group),
        max_count: if r.max == 0 { 100 } else { r.max },
        max_bytes: if r.max_bytes == 0 {
            1 << 20
        } else {
            r.max_bytes
        },
        wait_ms: r.wait_ms,
    }
}

fn read_response(partition: u32, r: StreamRead) -> pb::ReadResponse {
    pb::ReadResponse {
        messages: r
            .messages
            .iter()
            .map(|m| message_pb(partition, m))
            .collect(),
        next_offset: r.next_offset,
        first_offset: r.first_offset,
        end_offset: r.end_offset,
    }
}

type PublishStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::PublishStreamResponse, Status>> + Send>>;

/// One publish request, as `Publish` and each request of `PublishStream` run it.
async fn publish_one(s: &Streams, r: pb::PublishRequest) -> Result<Vec<pb::Ack>, MeridianError> {
    let rid = if r.request_id.is_empty() {
        None
    } else {
        Some(parse_request_id(&r.request_id)?)
    };
    let msgs = r
        .messages
        .into_iter()
        .map(|m| NewMessage {
            key: m.key,
            payload: m.value,
            headers: m.headers.into_iter().collect(),
            dedup_id: (!m.dedup_id.is_empty()).then_some(m.dedup_id),
        })
        .collect();
    let acks = s.publish(&r.stream, r.partition, msgs, rid).await?;
    Ok(acks
        .into_iter()
        .map(|a| pb::Ack {
            partition: a.partition,
            offset: a.offset,
            duplicate: a.duplicate,
        })
        .collect())
}

type FollowStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::StreamMessage, Status>> + Send>>;

#[tonic::async_trait]
impl<A: ClientApi> StreamsService for GrpcStreams<A> {
    async fn publish(
        &self,
        req: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let acks = publish_one(&self.streams()?, req.into_inner())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::PublishResponse { acks }))
    }

    type PublishStreamStream = PublishStream;

    async fn publish_stream(
        &self,
        req: Request<Streaming<pb::PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        use futures::StreamExt;
        let s = self.streams()?;
        // `buffered` runs up to PUBLISH_STREAM_IN_FLIGHT_MAX publishes at once (they batch on
        // the partition's leader like concurrent unary calls) and answers them in order; a
        // client sending faster is held back by HTTP/2 flow control.
        let out = req
            .into_inner()
            .map(move |r| {
                let s = s.clone();
                async move {
                    match r {
                        Ok(r) => Ok(publish_one(&s, r).await),
                        Err(status) => Err(status),
                    }
                }
            })
            .buffered(PUBLISH_STREAM_IN_FLIGHT_MAX)
            .enumerate()
            .map(|(seq, r)| {
                r.map(|outcome| {
                    let seq = seq as u64;
                    match outcome {
                        Ok(acks) => pb::PublishStreamResponse {
                            seq,
                            acks,
                            error: None,
                        },
                        Err(e) => pb::PublishStreamResponse {
                            seq,
                            acks: Vec::new(),
                            error: Some(pb::PublishError {
                                code: e.code.as_str().to_string(),
                                message: e.message,
                            }),
                        },
                    }
                })
            });
        Ok(Response::new(Box::pin(out)))
    }

    async fn read(
        &self,
        req: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let r = read_request(req.into_inner());
        let p = r.partition;
        let got = self.streams()?.read(r).await.map_err(to_status)?;
        Ok(Response::new(read_response(p, got)))
    }

    type FollowStream = FollowStream;

    async fn follow(
        &self,
        req: Request<pb::ReadRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let s = self.streams()?;
        let mut r = read_request(req.into_inner());
        r.wait_ms = FOLLOW_POLL_MS;
        s.spec(&r.stream).await.map_err(to_status)?;
        let out = futures::stream::unfold(Some((s, r)), |st| async move {
            let (s, mut r) = st?;
            let p = r.partition;
            match s.read(r.clone()).await {
                Ok(got) => {
                    r.from = ReadFrom::Offset(got.next_offset);
                    r.group = None;
                    let items: Vec<Result<pb::StreamMessage, Status>> =
                        got.messages.iter().map(|m| Ok(message_pb(p, m))).collect();
                    Some((futures::stream::iter(items), Some((s, r))))
                }
                Err(e) => Some((futures::stream::iter(vec![Err(to_status(e))]), None)),
            }
        });
        use futures::StreamExt;
        Ok(Response::new(Box::pin(out.flatten())))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let a = self
            .streams()?
            .heartbeat(&r.stream, &r.group, &r.member, r.session_timeout_ms)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::HeartbeatResponse {
            generation: a.generation,
            members: a.members,
            partitions: a
                .partitions
                .into_iter()
                .map(|(partition, committed)| pb::Assigned {
                    partition,
                    committed,
                })
                .collect(),
        }))
    }

    async fn leave(
        &self,
        req: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::LeaveResponse>, Status> {
        let r = req.into_inner();
        self.streams()?
            .leave(&r.stream, &r.group, &r.member)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::LeaveResponse {}))
    }

    async fn commit(
        &self,
        req: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let r = req.into_inner();
        let fence = (!r.member.is_empty()).then_some((r.member.as_str(), r.generation));
        self.streams()?
            .commit(&r.stream, &r.group, r.partition, r.offset, fence)
            .await
            .map_err(|e: MeridianError| to_status(e))?;
        Ok(Response::new(pb::CommitResponse {}))
    }
}
