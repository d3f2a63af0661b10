//! `GrpcTransport` against a real node-RPC server on a loopback socket: calls over the shared
//! stream, answers out of order, refusals, timeouts, big payloads as unary calls, a server that
//! restarts, and an older server without `Stream`.

use futures::FutureExt;
use futures::future::BoxFuture;
use meridian_transport::{
    Envelope, GrpcTransport, Handler, STREAM_PAYLOAD_BYTES_MAX, Transport, TransportError,
    node_rpc_service,
};
use meridian_types::{ClusterId, GroupId, NodeId};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// Echoes the payload; `sleep:N` waits N ms first; `refuse` is refused; counts every call and
/// every call whose work was dropped before it finished.
#[derive(Default)]
struct Echo {
    calls: AtomicUsize,
    dropped: Arc<AtomicUsize>,
}

/// Counts a call's work as dropped unless it was disarmed first.
struct DropCount(Option<Arc<AtomicUsize>>);

impl DropCount {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for DropCount {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Handler for Echo {
    fn handle(&self, env: Envelope) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut guard = DropCount(Some(self.dropped.clone()));
        async move {
            match env.method.as_str() {
                "refuse" => {
                    guard.disarm();
                    Err("not_leader: ask node 2".to_string())
                }
                m => {
                    if let Some(ms) = m.strip_prefix("sleep:") {
                        let ms: u64 = ms.parse().unwrap();
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    guard.disarm();
                    let mut out = env.payload;
                    out.extend_from_slice(&env.group.0.to_be_bytes());
                    Ok(out)
                }
            }
        }
        .boxed()
    }
}

/// A node-RPC server on its own runtime and thread, so stopping it closes its connections as a
/// process exit would (aborting `axum::serve` alone leaves open connections served).
struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serves on `listener`. `stream: false` serves only the unary `Call`, as a node from
    /// before `Stream` existed.
    fn start(listener: std::net::TcpListener, handler: Arc<Echo>, stream: bool) -> Self {
        let path = if stream {
            "/meridian.node.v1.NodeRpc/{*method}"
        } else {
            "/meridian.node.v1.NodeRpc/Call"
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().route_service(path, node_rpc_service(handler));
                tokio::select! {
                    r = axum::serve(listener, app) => r.unwrap(),
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task: the sockets close.
            drop(rt);
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
    }
}

fn env(method: &str, group: u64, payload: Vec<u8>, timeout: Duration) -> Envelope {
    Envelope {
        cluster_id: ClusterId(7),
        from: NodeId(1),
        to: NodeId(2),
        group: GroupId(group),
        method: method.to_string(),
        payload,
        timeout,
    }
}

const T: Duration = Duration::from_secs(10);

async fn setup(stream: bool) -> (GrpcTransport, Arc<Echo>, Server, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handler = Arc::new(Echo::default());
    let server = Server::start(listener, handler.clone(), stream);
    let t = GrpcTransport::new();
    t.set_peer_addr(NodeId(2), addr.clone());
    (t, handler, server, addr)
}

#[tokio::test]
async fn concurrent_calls_get_their_own_answers_in_any_order() {
    let (t, handler, _server, _) = setup(true).await;
    // Later calls finish first: the answers come back out of order and must still match.
    let calls: Vec<_> = (0..50u64)
        .map(|i| {
            let e = env(&format!("sleep:{}", 50 - i), i, vec![i as u8; 3], T);
            t.call(e)
        })
        .collect();
    let answers = futures::future::join_all(calls).await;
    for (i, a) in answers.into_iter().enumerate() {
        let mut want = vec![i as u8; 3];
        want.extend_from_slice(&(i as u64).to_be_bytes());
        assert_eq!(a.unwrap(), want, "call {i}");
    }
    assert_eq!(handler.calls.load(Ordering::Relaxed), 50);
}

#[tokio::test]
async fn a_refusal_is_remote_and_a_slow_answer_times_out() {
    let (t, handler, _server, _) = setup(true).await;
    match t.call(env("refuse", 1, vec![], T)).await {
        Err(TransportError::Remote { node: 2, detail }) => {
            assert_eq!(detail, "not_leader: ask node 2")
        }
        other => panic!("want a remote refusal, got {other:?}"),
    }
    let slow = t.call(env("sleep:5000", 1, vec![], Duration::from_millis(100)));
    assert!(matches!(
        slow.await,
        Err(TransportError::Timeout { node: 2 })
    ));
    // The server stops the work the caller gave up on (else it would finish after 5 s).
    let started = std::time::Instant::now();
    while handler.dropped.load(Ordering::Relaxed) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the server still runs a call its caller gave up on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The stream is still usable after a call gave up on it.
    assert_eq!(
        t.call(env("echo", 0, vec![9], T)).await.unwrap(),
        [vec![9], 0u64.to_be_bytes().to_vec()].concat()
    );
}

/// The server gives up at the call's timeout too; if its answer arrives before the caller's own
/// timer fires (a busy machine), it must still read as a timeout, as a unary call's
/// DeadlineExceeded does, not as the handler's refusal.
#[tokio::test]
async fn a_call_the_server_gave_up_on_is_answered_as_timed_out() {
    use futures::StreamExt;
    use meridian_proto::node::node_rpc_client::NodeRpcClient;
    use meridian_proto::node::{Envelope as PbEnvelope, StreamCall};
    let (_t, _handler, _server, addr) = setup(true).await;
    let mut client = NodeRpcClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let call = |call_id, method: &str, timeout_micros| StreamCall {
        call_id,
        envelope: Some(PbEnvelope {
            cluster_id: 7,
            from_node: 1,
            to_node: 2,
            group_id: 0,
            method: method.to_string(),
            payload: vec![],
        }),
        timeout_micros,
    };
    let calls = vec![call(1, "sleep:5000", 50_000), call(2, "refuse", 0)];
    let mut answers = client
        .stream(futures::stream::iter(calls).chain(futures::stream::pending()))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    for _ in 0..2 {
        let a = answers.message().await.unwrap().unwrap();
        got.push((a.call_id, a.timed_out, a.error.is_empty()));
    }
    got.sort();
    assert_eq!(got, [(1, true, false), (2, false, false)]);
}

#[tokio::test]
async fn a_payload_over_the_stream_limit_goes_as_a_unary_call() {
    let (t, _handler, _server, _) = setup(true).await;
    let big = vec![5u8; STREAM_PAYLOAD_BYTES_MAX + 1];
    let a = t.call(env("echo", 3, big.clone(), T)).await.unwrap();
    assert_eq!(a.len(), big.len() + 8);
    assert!(a[..big.len()].iter().all(|b| *b == 5));
}

#[tokio::test]
async fn calls_fail_while_the_server_is_down_and_work_again_after_it_restarts() {
    let (t, handler, server, addr) = setup(true).await;
    assert!(t.call(env("echo", 0, vec![1], T)).await.is_ok());
    server.stop();
    // The open stream breaks with the server; calls fail fast rather than hang.
    let down = t
        .call(env("echo", 0, vec![1], Duration::from_secs(5)))
        .await;
    assert!(
        matches!(
            down,
            Err(TransportError::Unreachable { .. } | TransportError::Timeout { .. })
        ),
        "{down:?}"
    );
    let listener = std::net::TcpListener::bind(&addr).unwrap();
    let _server = Server::start(listener, handler, true);
    // A new stream opens on the next call (the channel reconnects; allow it a few tries).
    let mut ok = false;
    for _ in 0..50 {
        if t.call(env("echo", 0, vec![1], T)).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "no call succeeded after the restart");
}

#[tokio::test]
async fn a_server_without_streams_is_called_with_unary_calls() {
    let (t, handler, _server, _) = setup(false).await;
    // The first call may fail while the transport learns the peer has no `Stream`.
    let mut answers = Vec::new();
    for i in 0..5u64 {
        answers.push(t.call(env("echo", i, vec![1], T)).await);
    }
    assert!(answers[1..].iter().all(|a| a.is_ok()), "{answers:?}");
    assert!(handler.calls.load(Ordering::Relaxed) >= 4);
}
