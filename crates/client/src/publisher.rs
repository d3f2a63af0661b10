//! [`Publisher`]: many concurrent stream publishes over one long-lived `PublishStream` call.
//!
//! A unary `Publish` is an HTTP/2 stream of its own: headers, data and trailers each way, and a
//! task per call on the node. Publishes that share one `PublishStream` call cost one DATA frame
//! each way, as the publishes sharing a NATS connection or a Kafka producer do. At 64 concurrent
//! publishers on one connection this halves the node's CPU per message (see
//! `docs/benchmarks.md`).
//!
//! Every publish still waits for its own answer: the node answers a call's requests in the order
//! they were sent, each with its acks or its error, and goes on after an error. When the call
//! breaks (the node restarts, the connection drops, a publish times out), the publishes waiting
//! on it fail with `unavailable` or `timeout`, whose outcome is unknown, and the next publish
//! opens a new call. Publish again with the same `request_id` to have a message applied once.

use crate::config::{CALL_TIMEOUT, CONNECT_TIMEOUT};
use crate::endpoint::{lazy_channel, parse_endpoint};
use crate::error::ClientError;
use meridian_proto::v1 as pb;
use meridian_proto::v1::streams_client::StreamsClient;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;
use tonic::transport::Channel;

/// Most publishes one [`Publisher`] keeps in flight; more wait for a slot.
pub const PUBLISHER_IN_FLIGHT_MAX: usize = 4096;

type Answer = Result<Vec<pb::Ack>, ClientError>;

/// Publishes to any stream through one node, many at once over one call. Cheap to clone: the
/// clones share the call. Any node accepts a publish; one sent to the partition's leader saves
/// the node a forwarding hop.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: String,
    client: StreamsClient<Channel>,
    call_timeout: Duration,
    slots: Semaphore,
    /// The open call, if any. Lock order: this, then the call's `waiting`.
    call: Mutex<Option<Arc<Call>>>,
}

/// One `PublishStream` call: requests go into `tx`; `waiting` holds the answer slots of the
/// requests sent and not yet answered, in the order sent.
struct Call {
    tx: mpsc::UnboundedSender<pb::PublishRequest>,
    waiting: Arc<Mutex<Waiting>>,
    driver: AbortHandle,
}

#[derive(Default)]
struct Waiting {
    /// Set when the call ended; nothing more may be queued on it.
    closed: bool,
    queue: VecDeque<oneshot::Sender<Answer>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Waiting {
    /// Ends the call: every publish still waiting gets `err`.
    fn close(&mut self, err: &ClientError) {
        self.closed = true;
        for tx in self.queue.drain(..) {
            let _ = tx.send(Err(err.clone()));
        }
    }
}

impl Publisher {
    /// A publisher over a (lazily connected) channel to `endpoint` (`host:port` or a URL).
    pub fn connect(endpoint: &str) -> Result<Self, ClientError> {
        let url = parse_endpoint(endpoint)?;
        let channel = lazy_channel(&url, CONNECT_TIMEOUT)?;
        Ok(Self::new(&url, channel, CALL_TIMEOUT))
    }

    /// A publisher over `channel`; each publish waits at most `call_timeout` for its answer.
    pub fn new(endpoint: &str, channel: Channel, call_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                endpoint: endpoint.to_owned(),
                client: StreamsClient::new(channel),
                call_timeout,
                slots: Semaphore::new(PUBLISHER_IN_FLIGHT_MAX),
                call: Mutex::new(None),
            }),
        }
    }

    /// Publishes one request (one or more messages to one partition) and waits for its acks.
    /// An error with a server code (`stream_not_found`, `value_too_large`, ...) means nothing
    /// was published; `unavailable` or `timeout` means the outcome is unknown.
    pub async fn publish(&self, req: pb::PublishRequest) -> Answer {
        let inner = &self.inner;
        let _slot = inner
            .slots
            .acquire()
            .await
            .map_err(|_| ClientError::InvalidArgument("the publisher is closed".into()))?;
        let (tx, rx) = oneshot::channel();
        let call = inner.enqueue(req, tx);
        match tokio::time::timeout(inner.call_timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ClientError::Connect {
                endpoint: inner.endpoint.clone(),
                message: "the publish call ended before answering".into(),
            }),
            Err(_) => {
                let err = ClientError::Timeout {
                    endpoint: inner.endpoint.clone(),
                    timeout_ms: u64::try_from(inner.call_timeout.as_millis()).unwrap_or(u64::MAX),
                };
                // The publishes behind this one were sent after it on the same call: retire
                // the call rather than queue more on a node that stopped answering.
                inner.retire(&call, &err);
                Err(err)
            }
        }
    }
}

impl Inner {
    /// Sends `req` on the open call (opening one if none is open) and queues its answer slot.
    fn enqueue(&self, mut req: pb::PublishRequest, tx: oneshot::Sender<Answer>) -> Arc<Call> {
        let mut open = lock(&self.call);
        loop {
            if let Some(call) = open.as_ref() {
                let mut w = lock(&call.waiting);
                if !w.closed {
                    match call.tx.send(req) {
                        Ok(()) => {
                            w.queue.push_back(tx);
                            return call.clone();
                        }
                        Err(mpsc::error::SendError(r)) => {
                            req = r;
                            w.closed = true;
                        }
                    }
                }
            }
            *open = Some(self.open_call());
        }
    }

    fn open_call(&self) -> Arc<Call> {
        let (tx, rx) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let driver = tokio::spawn(drive(
            self.client.clone(),
            self.endpoint.clone(),
            rx,
            waiting.clone(),
        ))
        .abort_handle();
        Arc::new(Call {
            tx,
            waiting,
            driver,
        })
    }

    /// Ends `call` if it is still the open one: its waiting publishes get `err`.
    fn retire(&self, call: &Arc<Call>, err: &ClientError) {
        let mut open = lock(&self.call);
        if open.as_ref().is_some_and(|c| Arc::ptr_eq(c, call)) {
            *open = None;
        }
        drop(open);
        call.driver.abort();
        lock(&call.waiting).close(err);
    }
}

/// Runs one call: sends what `rx` yields, hands each answer to the oldest waiting publish.
async fn drive(
    mut client: StreamsClient<Channel>,
    endpoint: String,
    rx: mpsc::UnboundedReceiver<pb::PublishRequest>,
    waiting: Arc<Mutex<Waiting>>,
) {
    let requests = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    let end = match client.publish_stream(requests).await {
        Err(status) => ClientError::from_status(&endpoint, &status),
        Ok(answers) => {
            let mut answers = answers.into_inner();
            let mut seq = 0u64;
            loop {
                let a = match answers.message().await {
                    Ok(Some(a)) => a,
                    Ok(None) => {
                        break ClientError::Connect {
                            endpoint: endpoint.clone(),
                            message: "the node ended the publish call".into(),
                        };
                    }
                    Err(status) => break ClientError::from_status(&endpoint, &status),
                };
                let slot = lock(&waiting).queue.pop_front();
                let (Some(tx), true) = (slot, a.seq == seq) else {
                    break ClientError::MalformedResponse {
                        endpoint: endpoint.clone(),
                        message: format!("answer {} where {seq} was due", a.seq),
                    };
                };
                seq += 1;
                let _ = tx.send(match a.error {
                    None => Ok(a.acks),
                    Some(e) => Err(ClientError::Server {
                        code: e.code,
                        message: e.message,
                    }),
                });
            }
        }
    };
    lock(&waiting).close(&end);
}
