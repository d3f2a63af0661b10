//! Node RPC over one long-lived gRPC stream per peer (`NodeRpc/Stream`).
//!
//! A unary call costs three writes on the caller's socket: HTTP/2 sends a new stream's HEADERS
//! before the stream may carry data, then the DATA frame, then an empty end-of-stream frame,
//! each flushed on its own. With one client writing, a put at the leader made 11 `writev`s
//! (two AppendEntries to each of two followers, plus the answer to the client), and each one
//! also runs the receiver's TCP processing and wakes a thread on the other side. On an open
//! stream a call is one DATA frame and its answer another.
//!
//! Each call carries a `call_id`; answers come back in any order (the server runs calls
//! concurrently, as it runs unary calls). A call waits for its answer at most its envelope's
//! timeout. When the stream breaks, every call waiting on it fails as unreachable and the next
//! call opens a new stream. Payloads above [`STREAM_PAYLOAD_BYTES_MAX`] (a snapshot) go as unary
//! calls, so one big message never holds up the small ones behind it; so does every call to a
//! peer that does not serve `Stream` (an older version).

use crate::envelope::{Envelope, Handler};
use crate::error::TransportError;
use crate::grpc::{DEFAULT_CALL_TIMEOUT, from_pb, to_pb};
use meridian_proto::node::node_rpc_client::NodeRpcClient;
use meridian_proto::node::{StreamAnswer, StreamCall};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::transport::Channel;

/// Largest payload sent over the shared stream; bigger ones go as unary calls.
pub const STREAM_PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// Most calls of one stream a server runs at once; it reads no further call until one ends.
pub const STREAM_CALLS_IN_FLIGHT_MAX: usize = 4096;

type Answer = Result<Vec<u8>, TransportError>;

/// The server side of one stream: runs each call as it arrives and sends its answer when done.
pub(crate) fn serve(
    handler: Arc<dyn Handler>,
    mut calls: tonic::Streaming<StreamCall>,
) -> mpsc::Receiver<Result<StreamAnswer, tonic::Status>> {
    let (tx, rx) = mpsc::channel(STREAM_CALLS_IN_FLIGHT_MAX);
    let slots = Arc::new(Semaphore::new(STREAM_CALLS_IN_FLIGHT_MAX));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let call = match calls.message().await {
                Ok(Some(call)) => call,
                Ok(None) => return,
                Err(status) => {
                    // A call that does not decode ends the stream with its error (tonic's
                    // InvalidArgument for a message, Unavailable for a broken connection).
                    tracing::debug!(error = %status, "node RPC stream ended");
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            let call_id = call.call_id;
            let Some(pb) = call.envelope else {
                let answer = StreamAnswer {
                    call_id,
                    payload: Vec::new(),
                    error: "invalid_argument: a stream call without an envelope".into(),
                    timed_out: false,
                };
                if tx.send(Ok(answer)).await.is_err() {
                    return;
                }
                continue;
            };
            let timeout = match call.timeout_micros {
                0 => DEFAULT_CALL_TIMEOUT,
                us => Duration::from_micros(us),
            };
            let answer = handler.handle(from_pb(pb, timeout));
            let tx = tx.clone();
            tokio::spawn(async move {
                // The caller gives up at its timeout: stop the work then, as a unary call's
                // handler stops when its caller resets the call.
                let (payload, error, timed_out) = match tokio::time::timeout(timeout, answer).await
                {
                    Ok(Ok(payload)) => (payload, String::new(), false),
                    Ok(Err(e)) => (Vec::new(), e, false),
                    Err(_) => (
                        Vec::new(),
                        format!("timeout: the call did not finish within {timeout:?}"),
                        true,
                    ),
                };
                // The caller may be gone; its calls then fail on its side.
                let _ = tx
                    .send(Ok(StreamAnswer {
                        call_id,
                        payload,
                        error,
                        timed_out,
                    }))
                    .await;
                drop(slot);
            });
        }
    });
    rx
}

/// The calls waiting on one stream; `dead` once the stream ended (nothing new is added).
#[derive(Default)]
struct Waiting {
    dead: bool,
    calls: BTreeMap<u64, oneshot::Sender<Answer>>,
}

/// One open (or opening) stream to a peer.
struct Session {
    tx: mpsc::UnboundedSender<StreamCall>,
    waiting: Mutex<Waiting>,
}

impl Session {
    /// Registers a call; false when the stream has ended.
    fn register(&self, id: u64, reply: oneshot::Sender<Answer>) -> bool {
        let mut w = self.waiting.lock();
        if w.dead {
            return false;
        }
        w.calls.insert(id, reply);
        true
    }

    fn forget(&self, id: u64) {
        self.waiting.lock().calls.remove(&id);
    }

    fn is_dead(&self) -> bool {
        self.waiting.lock().dead
    }

    fn answer(&self, node: u64, a: StreamAnswer) {
        let reply = self.waiting.lock().calls.remove(&a.call_id);
        if let Some(reply) = reply {
            let _ = reply.send(if a.timed_out {
                Err(TransportError::Timeout { node })
            } else if a.error.is_empty() {
                Ok(a.payload)
            } else {
                Err(TransportError::Remote {
                    node,
                    detail: a.error,
                })
            });
        }
    }

    /// The stream ended: every waiting call fails, in call order.
    fn end(&self, node: u64, detail: &str) {
        let calls = {
            let mut w = self.waiting.lock();
            w.dead = true;
            std::mem::take(&mut w.calls)
        };
        for (_, reply) in calls {
            let _ = reply.send(Err(TransportError::Unreachable {
                node,
                detail: detail.to_string(),
            }));
        }
    }
}

/// The stream side of one peer's connection.
pub(crate) struct StreamPeer {
    node: u64,
    client: NodeRpcClient<Channel>,
    session: Mutex<Option<Arc<Session>>>,
    /// The peer answered `Unimplemented` to `Stream`: only unary calls from now on.
    unary_only: AtomicBool,
    next_id: AtomicU64,
}

impl StreamPeer {
    pub(crate) fn new(node: u64, client: NodeRpcClient<Channel>) -> Arc<Self> {
        Arc::new(Self {
            node,
            client,
            session: Mutex::new(None),
            unary_only: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
        })
    }

    /// The peer's channel, for unary calls.
    pub(crate) fn client(&self) -> NodeRpcClient<Channel> {
        self.client.clone()
    }

    /// Whether `env` goes over the stream (else as a unary call).
    pub(crate) fn takes(&self, env: &Envelope) -> bool {
        env.payload.len() <= STREAM_PAYLOAD_BYTES_MAX && !self.unary_only.load(Ordering::Relaxed)
    }

    /// The live stream, or a new one.
    fn session(self: &Arc<Self>) -> Arc<Session> {
        let mut slot = self.session.lock();
        if let Some(s) = slot.as_ref()
            && !s.is_dead()
        {
            return s.clone();
        }
        let s = self.open();
        *slot = Some(s.clone());
        s
    }

    fn open(self: &Arc<Self>) -> Arc<Session> {
        let (tx, mut rx) = mpsc::unbounded_channel::<StreamCall>();
        let session = Arc::new(Session {
            tx,
            waiting: Mutex::new(Waiting::default()),
        });
        let outbound = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        // Weak: once the peer and every waiting call let go of the session, its sender drops,
        // the outbound stream ends, the server ends its answers and this task ends.
        let (peer, s, node) = (Arc::downgrade(self), Arc::downgrade(&session), self.node);
        let mut client = self.client.clone();
        tokio::spawn(async move {
            // tonic reports a peer without `Stream` (an HTTP 404) when the call is made or at
            // the first answer, depending on timing.
            let status = match client.stream(outbound).await {
                Ok(resp) => {
                    let mut answers = resp.into_inner();
                    loop {
                        match answers.message().await {
                            Ok(Some(a)) => match s.upgrade() {
                                Some(s) => s.answer(node, a),
                                None => return,
                            },
                            Ok(None) => {
                                break tonic::Status::unavailable("the peer closed the stream");
                            }
                            Err(status) => break status,
                        }
                    }
                }
                Err(status) => status,
            };
            if status.code() == tonic::Code::Unimplemented
                && let Some(peer) = peer.upgrade()
            {
                tracing::info!(
                    node_id = node,
                    "peer does not serve node RPC streams; using unary calls"
                );
                peer.unary_only.store(true, Ordering::Relaxed);
            }
            if let Some(s) = s.upgrade() {
                s.end(node, status.message());
            }
        });
        session
    }

    /// Sends `env` over the stream and waits for its answer.
    pub(crate) async fn call(self: Arc<Self>, env: Envelope) -> Answer {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // A stream that ended between `session()` and `register` gets one retry on a new one.
        for _ in 0..2 {
            let (reply, answer) = oneshot::channel();
            let session = self.session();
            if session.register(id, reply) {
                return finish(session, id, self.node, answer, env).await;
            }
        }
        Err(TransportError::Unreachable {
            node: self.node,
            detail: "the stream to the peer keeps closing".into(),
        })
    }
}

async fn finish(
    session: Arc<Session>,
    id: u64,
    node: u64,
    answer: oneshot::Receiver<Answer>,
    env: Envelope,
) -> Answer {
    let timeout = env.timeout;
    let call = StreamCall {
        call_id: id,
        envelope: Some(to_pb(env)),
        timeout_micros: u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX),
    };
    // A caller that gives up (its future dropped, or the timeout below) leaves no entry behind.
    let _forget = Forget(&session, id);
    // A send fails only once the stream is gone; its end fails this call too.
    let _ = session.tx.send(call);
    match tokio::time::timeout(timeout, answer).await {
        Err(_) => Err(TransportError::Timeout { node }),
        Ok(Ok(a)) => a,
        Ok(Err(_)) => Err(TransportError::Unreachable {
            node,
            detail: "the stream to the peer closed".into(),
        }),
    }
}

/// Removes a call from its stream's waiting list when dropped (a no-op once answered).
struct Forget<'a>(&'a Session, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer the server marked as timed out reads as a timeout, whatever its error text.
    #[test]
    fn a_timed_out_answer_is_a_timeout_and_a_refusal_is_remote() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let s = Session {
            tx,
            waiting: Mutex::new(Waiting::default()),
        };
        let (r1, mut a1) = oneshot::channel();
        let (r2, mut a2) = oneshot::channel();
        assert!(s.register(1, r1) && s.register(2, r2));
        let answer = |call_id, timed_out| StreamAnswer {
            call_id,
            payload: vec![],
            error: "timeout: the call did not finish within 50ms".into(),
            timed_out,
        };
        s.answer(2, answer(1, true));
        s.answer(2, answer(2, false));
        assert!(matches!(
            a1.try_recv(),
            Ok(Err(TransportError::Timeout { node: 2 }))
        ));
        assert!(matches!(
            a2.try_recv(),
            Ok(Err(TransportError::Remote { node: 2, .. }))
        ));
    }
}
