//! The gRPC transport: one lazily connected tonic channel per peer node carries every group;
//! calls go over one long-lived stream on it (`grpc_stream.rs`), big ones as unary calls.

use crate::envelope::{Envelope, Handler, Transport};
use crate::error::TransportError;
use crate::grpc_stream::StreamPeer;
use futures::FutureExt;
use futures::future::BoxFuture;
use meridian_proto::node::node_rpc_client::NodeRpcClient;
use meridian_proto::node::node_rpc_server::{NodeRpc, NodeRpcServer as GenServer};
use meridian_proto::node::{Envelope as PbEnvelope, EnvelopeReply, StreamAnswer, StreamCall};
use meridian_types::{ClusterId, GroupId, NodeId};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Largest node RPC message (a snapshot travels in one message).
pub const NODE_RPC_MESSAGE_BYTES_MAX: usize = 512 << 20;
/// How long a connection attempt to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A byte stream to a peer.
pub trait PeerStream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> PeerStream for T {}

/// Opens a byte stream to `host:port`. TCP by default; a simulation supplies its own network.
pub type Connector =
    Arc<dyn Fn(String) -> BoxFuture<'static, std::io::Result<Box<dyn PeerStream>>> + Send + Sync>;

/// One peer: its address, and its channel with the long-lived call stream over it.
type Peer = (String, Arc<StreamPeer>);

#[derive(Default)]
pub struct GrpcTransport {
    peers: RwLock<BTreeMap<NodeId, Peer>>,
    by_addr: RwLock<BTreeMap<String, NodeRpcClient<Channel>>>,
    connector: Option<Connector>,
}

fn client_for(
    addr: &str,
    connector: Option<&Connector>,
) -> Result<NodeRpcClient<Channel>, TransportError> {
    let uri = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let ep = Endpoint::from_shared(uri)
        .map_err(|e| TransportError::Unreachable {
            node: 0,
            detail: format!("bad address {addr:?}: {e}"),
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let channel = match connector {
        None => ep.connect_lazy(),
        Some(c) => {
            let c = c.clone();
            ep.connect_with_connector_lazy(tower::service_fn(
                move |uri: tonic::codegen::http::Uri| {
                    let c = c.clone();
                    async move {
                        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
                        let stream = c(authority).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                },
            ))
        }
    };
    Ok(NodeRpcClient::new(channel)
        .max_decoding_message_size(NODE_RPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(NODE_RPC_MESSAGE_BYTES_MAX))
}

/// A call's timeout when its message names none.
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn from_pb(pb: PbEnvelope, timeout: Duration) -> Envelope {
    Envelope {
        cluster_id: ClusterId(pb.cluster_id),
        from: NodeId(pb.from_node),
        to: NodeId(pb.to_node),
        group: GroupId(pb.group_id),
        method: pb.method,
        payload: pb.payload,
        timeout,
    }
}

pub(crate) fn to_pb(env: Envelope) -> PbEnvelope {
    // Moves the payload: an AppendEntries payload can be large and is sent once.
    PbEnvelope {
        cluster_id: env.cluster_id.0,
        from_node: env.from.0,
        to_node: env.to.0,
        group_id: env.group.0,
        method: env.method,
        payload: env.payload,
    }
}

async fn do_call(
    mut client: NodeRpcClient<Channel>,
    env: Envelope,
) -> Result<Vec<u8>, TransportError> {
    let node = env.to.0;
    let timeout = env.timeout;
    let mut req = tonic::Request::new(to_pb(env));
    req.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.call(req)).await {
        Err(_) => Err(TransportError::Timeout { node }),
        Ok(Ok(resp)) => Ok(resp.into_inner().payload),
        Ok(Err(status)) => match status.code() {
            tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown => {
                Err(TransportError::Unreachable {
                    node,
                    detail: status.message().to_string(),
                })
            }
            tonic::Code::DeadlineExceeded => Err(TransportError::Timeout { node }),
            _ => Err(TransportError::Remote {
                node,
                detail: status.message().to_string(),
            }),
        },
    }
}

impl GrpcTransport {
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport whose connections are opened by `connector` instead of TCP.
    pub fn with_connector(connector: Connector) -> Self {
        Self {
            connector: Some(connector),
            ..Self::default()
        }
    }
}

impl Transport for GrpcTransport {
    fn call(&self, env: Envelope) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let peer = self.peers.read().get(&env.to).map(|(_, s)| s.clone());
        match peer {
            Some(stream) if stream.takes(&env) => stream.call(env).boxed(),
            Some(stream) => do_call(stream.client(), env).boxed(),
            None => {
                let node = env.to.0;
                async move {
                    Err(TransportError::Unreachable {
                        node,
                        detail: "no known address".into(),
                    })
                }
                .boxed()
            }
        }
    }

    fn set_peer_addr(&self, node: NodeId, addr: String) {
        {
            let peers = self.peers.read();
            if peers.get(&node).is_some_and(|(a, _)| *a == addr) {
                return;
            }
        }
        match client_for(&addr, self.connector.as_ref()) {
            Ok(c) => {
                self.peers
                    .write()
                    .insert(node, (addr, StreamPeer::new(node.0, c)));
            }
            Err(e) => tracing::warn!(node_id = node.0, error = %e, "cannot use peer address"),
        }
    }

    fn call_addr(
        &self,
        addr: &str,
        env: Envelope,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let cached = self.by_addr.read().get(addr).cloned();
        let client = match cached {
            Some(c) => c,
            None => match client_for(addr, self.connector.as_ref()) {
                Ok(c) => {
                    self.by_addr.write().insert(addr.to_string(), c.clone());
                    c
                }
                Err(e) => return async move { Err(e) }.boxed(),
            },
        };
        do_call(client, env).boxed()
    }
}

/// The server half: hands every arriving envelope to a [`Handler`].
pub struct NodeRpcServer {
    handler: Arc<dyn Handler>,
}

#[tonic::async_trait]
impl NodeRpc for NodeRpcServer {
    type StreamStream = futures::stream::BoxStream<'static, Result<StreamAnswer, tonic::Status>>;

    async fn stream(
        &self,
        request: tonic::Request<tonic::Streaming<StreamCall>>,
    ) -> Result<tonic::Response<Self::StreamStream>, tonic::Status> {
        let mut answers = crate::grpc_stream::serve(self.handler.clone(), request.into_inner());
        let out = futures::stream::poll_fn(move |cx| answers.poll_recv(cx));
        Ok(tonic::Response::new(Box::pin(out)))
    }

    async fn call(
        &self,
        request: tonic::Request<PbEnvelope>,
    ) -> Result<tonic::Response<EnvelopeReply>, tonic::Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .unwrap_or(DEFAULT_CALL_TIMEOUT);
        let env = from_pb(request.into_inner(), timeout);
        match self.handler.handle(env).await {
            Ok(payload) => Ok(tonic::Response::new(EnvelopeReply { payload })),
            Err(e) => Err(tonic::Status::failed_precondition(e)),
        }
    }
}

fn parse_grpc_timeout(s: &str) -> Option<Duration> {
    if s.len() < 2 {
        return None;
    }
    let (num, unit) = s.split_at(s.len() - 1);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The tonic service that serves node RPC on a node's listen address.
pub fn node_rpc_service(handler: Arc<dyn Handler>) -> GenServer<NodeRpcServer> {
    GenServer::new(NodeRpcServer { handler })
        .max_decoding_message_size(NODE_RPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(NODE_RPC_MESSAGE_BYTES_MAX)
}
