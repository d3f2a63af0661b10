//! etcd's `Watch` service: one bidirectional stream carries many watchers (create, cancel,
//! progress requests in; created, events, progress, canceled out), each a node watch
//! ([`ClientApi::watch`]).

use super::convert::{HeaderInfo, kv_to_pb, to_i64, to_u64};
use super::status::COMPACTED_MESSAGE;
use meridian_node::{ClientApi, WatchMessage, WatchSpec};
use meridian_proto::etcd::etcdserverpb as pb;
use meridian_proto::etcd::etcdserverpb::watch_server::Watch;
use meridian_proto::etcd::mvccpb;
use meridian_state::{EventKind, WatchEvent};
use pb::watch_create_request::FilterType;
use pb::watch_request::RequestUnion;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses queued per watch stream before its watchers wait for the client.
const WATCH_STREAM_QUEUE: usize = 64;
/// Most watchers one stream may hold (a bound on input).
pub const WATCHERS_PER_STREAM_MAX: usize = 1000;
/// How often a watcher created with `progress_notify` gets a progress notification when idle.
pub const PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(5);

/// etcd's `Watch` service over a node's [`ClientApi`].
#[derive(Clone, Debug)]
pub struct EtcdWatch<A> {
    api: A,
}

impl<A: ClientApi> EtcdWatch<A> {
    pub fn new(api: A) -> Self {
        Self { api }
    }
}

/// A watch event as etcd's `mvccpb.Event`.
pub fn event_to_pb(e: WatchEvent) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            EventKind::Put => mvccpb::event::EventType::Put as i32,
            EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(kv_to_pb(e.kv)),
        prev_kv: e.prev_kv.map(kv_to_pb),
    }
}

/// One watcher of a stream, as its serving loop holds it.
struct Watcher {
    task: tokio::task::JoinHandle<()>,
    progress: Arc<Notify>,
}

fn header(api: &impl ClientApi, revision: u64) -> Option<pb::ResponseHeader> {
    let (cluster_id, member_id) = api.identity();
    Some(
        HeaderInfo {
            cluster_id,
            member_id,
        }
        .header(revision, 0),
    )
}

/// Serves one watch stream until the client closes it.
async fn serve<A: ClientApi>(
    api: A,
    mut inbound: Streaming<pb::WatchRequest>,
    out: mpsc::Sender<Result<pb::WatchResponse, Status>>,
) {
    let mut watchers: BTreeMap<i64, Watcher> = BTreeMap::new();
    let mut next_id: i64 = 0;
    loop {
        let msg = tokio::select! {
            m = inbound.message() => m,
            _ = out.closed() => break,
        };
        let req = match msg {
            Ok(Some(r)) => r,
            Ok(None) => break,
            // A request that does not decode ends the stream with tonic's error, not an OK.
            Err(status) => {
                let _ = out.send(Err(status)).await;
                break;
            }
        };
        watchers.retain(|_, w| !w.task.is_finished());
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => {
                let id = if c.watch_id != 0 {
                    c.watch_id
                } else {
                    while watchers.contains_key(&next_id) {
                        next_id += 1;
                    }
                    next_id
                };
                let refuse = |reason: String| pb::WatchResponse {
                    header: header(&api, 0),
                    watch_id: id,
                    created: true,
                    canceled: true,
                    cancel_reason: reason,
                    ..Default::default()
                };
                if watchers.contains_key(&id) {
                    let _ = out
                        .send(Ok(refuse(format!("watch id {id} is in use"))))
                        .await;
                    continue;
                }
                if watchers.len() >= WATCHERS_PER_STREAM_MAX {
                    let _ = out
                        .send(Ok(refuse(format!(
                            "a stream holds at most {WATCHERS_PER_STREAM_MAX} watchers"
                        ))))
                        .await;
                    continue;
                }
                match create(&api, id, c, out.clone()).await {
                    Ok(w) => {
                        watchers.insert(id, w);
                    }
                    Err(reason) => {
                        let _ = out.send(Ok(refuse(reason))).await;
                    }
                }
            }
            Some(RequestUnion::CancelRequest(c)) => {
                if let Some(w) = watchers.remove(&c.watch_id) {
                    w.task.abort();
                    let resp = pb::WatchResponse {
                        header: header(&api, 0),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    if out.send(Ok(resp)).await.is_err() {
                        break;
                    }
                }
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                for w in watchers.values() {
                    w.progress.notify_one();
                }
            }
            None => {}
        }
    }
    for w in watchers.values() {
        w.task.abort();
    }
}

/// Opens one watcher and the task that forwards its messages to the stream.
async fn create<A: ClientApi>(
    api: &A,
    id: i64,
    c: pb::WatchCreateRequest,
    out: mpsc::Sender<Result<pb::WatchResponse, Status>>,
) -> Result<Watcher, String> {
    let start_revision = to_u64("start_revision", c.start_revision).map_err(|e| e.to_string())?;
    let mut no_put = false;
    let mut no_delete = false;
    for f in &c.filters {
        match FilterType::try_from(*f) {
            Ok(FilterType::Noput) => no_put = true,
            Ok(FilterType::Nodelete) => no_delete = true,
            Err(_) => return Err(format!("unknown watch filter {f}")),
        }
    }
    let spec = WatchSpec {
        key: c.key,
        range_end: c.range_end,
        start_revision,
        prev_kv: c.prev_kv,
        progress_every: c.progress_notify.then_some(PROGRESS_NOTIFY_INTERVAL),
    };
    let mut stream = api.watch(spec).await.map_err(|e| e.to_string())?;
    let progress = stream.progress_handle();
    let created = pb::WatchResponse {
        header: header(api, stream.start_revision()),
        watch_id: id,
        created: true,
        ..Default::default()
    };
    if out.send(Ok(created)).await.is_err() {
        return Err("the client is gone".into());
    }
    let api = api.clone();
    let task = tokio::spawn(async move {
        while let Some(msg) = stream.recv().await {
            let resp = match msg {
                WatchMessage::Events { events, revision } => {
                    let events: Vec<mvccpb::Event> = events
                        .into_iter()
                        .filter(|e| match e.kind {
                            EventKind::Put => !no_put,
                            EventKind::Delete => !no_delete,
                        })
                        .map(event_to_pb)
                        .collect();
                    if events.is_empty() {
                        continue;
                    }
                    pb::WatchResponse {
                        header: header(&api, revision),
                        watch_id: id,
                        events,
                        ..Default::default()
                    }
                }
                WatchMessage::Progress { revision } => pb::WatchResponse {
                    header: header(&api, revision),
                    watch_id: id,
                    ..Default::default()
                },
                WatchMessage::Compacted { compact_revision } => pb::WatchResponse {
                    header: header(&api, compact_revision),
                    watch_id: id,
                    canceled: true,
                    compact_revision: to_i64(compact_revision),
                    cancel_reason: COMPACTED_MESSAGE.to_string(),
                    ..Default::default()
                },
                WatchMessage::Failed(e) => pb::WatchResponse {
                    header: header(&api, 0),
                    watch_id: id,
                    canceled: true,
                    cancel_reason: e.to_string(),
                    ..Default::default()
                },
            };
            let last = resp.canceled;
            if out.send(Ok(resp)).await.is_err() || last {
                return;
            }
        }
        // The node ended the watch without saying why: the client must still learn it.
        let _ = out
            .send(Ok(pb::WatchResponse {
                header: header(&api, 0),
                watch_id: id,
                canceled: true,
                cancel_reason: "the watch ended".into(),
                ..Default::default()
            }))
            .await;
    });
    Ok(Watcher { task, progress })
}

#[tonic::async_trait]
impl<A: ClientApi> Watch for EtcdWatch<A> {
    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(WATCH_STREAM_QUEUE);
        tokio::spawn(serve(self.api.clone(), inbound, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
