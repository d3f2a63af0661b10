//! `/v1/watch` (server-sent events), `/v1/leases`, and etcd's `Watch` and `Lease` services
//! against a fake node whose watches play a script.

mod common;

use common::FakeApi;
use common::http::{call, get, send};
use meridian_api::client_router;
use meridian_node::WatchMessage;
use meridian_proto::etcd::etcdserverpb::{
    self as pb, lease_client::LeaseClient, watch_client::WatchClient,
};
use meridian_state::{EventKind, KeyValue, WatchEvent};
use serde_json::json;

fn event(kind: EventKind, key: &str, value: &str, rev: u64) -> WatchEvent {
    WatchEvent {
        kind,
        kv: KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: 0,
        },
        prev_kv: None,
    }
}

fn script() -> Vec<WatchMessage> {
    vec![
        WatchMessage::Events {
            // Revision 5 is a txn of two: only its last event carries the SSE id.
            events: vec![
                event(EventKind::Put, "p/a", "1", 5),
                event(EventKind::Put, "p/b", "2", 5),
                event(EventKind::Delete, "p/a", "", 6),
            ],
            revision: 6,
        },
        WatchMessage::Progress { revision: 9 },
        WatchMessage::Compacted {
            compact_revision: 12,
        },
    ]
}

#[tokio::test]
async fn sse_watch_sends_events_progress_and_compaction() {
    let api = FakeApi::default();
    *api.watch_script.lock() = script();
    let app = client_router(api.clone());
    let req = axum::http::Request::builder()
        .uri("/v1/watch?prefix=p/&prev_kv=true")
        .header("last-event-id", "4")
        .body(axum::body::Body::empty())
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, 200);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let names: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        ["created", "put", "put", "delete", "progress", "compacted"],
        "{body}"
    );
    let ids: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["5", "6"], "{body}");
    assert!(body.contains(r#""compact_revision":12"#), "{body}");
    assert!(body.contains(r#""code":"compacted""#), "{body}");
    // Last-Event-ID resumes after it; the prefix became a range.
    let spec = api.seen.lock().watches[0].clone();
    assert_eq!(spec.start_revision, 5);
    assert_eq!((spec.key, spec.range_end), (b"p/".to_vec(), b"p0".to_vec()));
    assert!(spec.prev_kv);
}

#[tokio::test]
async fn sse_watch_refuses_bad_queries() {
    let app = client_router(FakeApi::default());
    for uri in [
        "/v1/watch",
        "/v1/watch?key=a&prefix=b",
        "/v1/watch?key=a&progress_ms=10",
        "/v1/watch?key=a&from_revision=-1",
        "/v1/watch?key=a&nope=1",
    ] {
        let r = get(&app, uri).await;
        r.assert_error(400, "invalid_argument");
    }
}

#[tokio::test]
async fn lease_routes() {
    let app = client_router(FakeApi::default());
    let r = call(&app, "POST", "/v1/leases", r#"{"ttl":30}"#).await;
    assert_eq!(r.status, 200);
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(r.json(), json!({"id": id, "ttl": 30}));
    assert_eq!(
        get(&app, "/v1/leases").await.json(),
        json!({"leases": [id]})
    );
    let ttl = get(&app, &format!("/v1/leases/{id}?keys=true"))
        .await
        .json();
    assert_eq!(
        ttl,
        json!({"id": id, "ttl": 29, "granted_ttl": 30, "keys": ["k1"]})
    );
    let hex = format!("0x{id:x}");
    let kept = call(&app, "POST", &format!("/v1/leases/{hex}/keepalive"), "").await;
    assert_eq!(kept.json(), json!({"id": id, "ttl": 30}));
    let gone = call(&app, "DELETE", &format!("/v1/leases/{id}"), "").await;
    assert_eq!(gone.json(), json!({"revoked": id}));
    get(&app, &format!("/v1/leases/{id}"))
        .await
        .assert_error(404, "lease_not_found");
    call(&app, "POST", "/v1/leases", r#"{"ttl":"x"}"#)
        .await
        .assert_error(400, "invalid_argument");
    get(&app, "/v1/leases/abc")
        .await
        .assert_error(400, "invalid_argument");
}

async fn grpc(api: FakeApi) -> tonic::transport::Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = client_router(api);
    tokio::spawn(async move { axum::serve(listener, router).await });
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The next response, within 10 s.
async fn next(s: &mut tonic::Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    tokio::time::timeout(std::time::Duration::from_secs(10), s.message())
        .await
        .expect("a watch response in time")
        .unwrap()
        .unwrap()
}

fn create(key: &str, filters: Vec<i32>) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: key.into(),
                range_end: vec![],
                start_revision: 3,
                filters,
                ..Default::default()
            },
        )),
    }
}

#[tokio::test]
async fn etcd_watch_creates_filters_and_cancels_on_compaction() {
    let api = FakeApi::default();
    *api.watch_script.lock() = script();
    let channel = grpc(api.clone()).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let noput = pb::watch_create_request::FilterType::Noput as i32;
    tx.send(create("p/a", vec![noput])).await.unwrap();
    let mut stream = WatchClient::new(channel)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let created = next(&mut stream).await;
    assert!(created.created && !created.canceled);
    let id = created.watch_id;
    // The puts are filtered out; the delete comes.
    let events = next(&mut stream).await;
    assert_eq!(events.watch_id, id);
    assert_eq!(events.events.len(), 1);
    assert_eq!(events.events[0].r#type, 1, "DELETE");
    assert_eq!(events.header.unwrap().revision, 6);
    let progress = next(&mut stream).await;
    assert!(progress.events.is_empty() && !progress.canceled);
    assert_eq!(progress.header.unwrap().revision, 9);
    let end = next(&mut stream).await;
    assert!(end.canceled);
    assert_eq!(end.compact_revision, 12);
    assert_eq!(
        end.cancel_reason,
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(api.seen.lock().watches[0].start_revision, 3);

    // A second watcher on the same stream, cancelled by the client.
    *api.watch_script.lock() = vec![];
    tx.send(create("q", vec![])).await.unwrap();
    let created = next(&mut stream).await;
    assert!(created.created);
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest {
                watch_id: created.watch_id,
            },
        )),
    })
    .await
    .unwrap();
    let cancelled = next(&mut stream).await;
    assert!(cancelled.canceled);
    assert_eq!(cancelled.watch_id, created.watch_id);
}

#[tokio::test]
async fn etcd_lease_service() {
    let channel = grpc(FakeApi::default()).await;
    let mut c = LeaseClient::new(channel);
    let g = c
        .lease_grant(pb::LeaseGrantRequest { ttl: 10, id: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.ttl, 10);
    let t = c
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: g.id,
            keys: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (t.ttl, t.granted_ttl, t.keys),
        (9, 10, vec![b"k1".to_vec()])
    );
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::LeaseKeepAliveRequest { id: g.id })
        .await
        .unwrap();
    tx.send(pb::LeaseKeepAliveRequest { id: 999 })
        .await
        .unwrap();
    let mut ka = c
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = ka.message().await.unwrap().unwrap();
    assert_eq!((first.id, first.ttl), (g.id, 10));
    let unknown = ka.message().await.unwrap().unwrap();
    assert_eq!(
        (unknown.id, unknown.ttl),
        (999, 0),
        "etcd: TTL 0 for a lease that is gone"
    );
    let list = c
        .lease_leases(pb::LeaseLeasesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.leases.iter().map(|l| l.id).collect::<Vec<_>>(), [g.id]);
    c.lease_revoke(pb::LeaseRevokeRequest { id: g.id })
        .await
        .unwrap();
    let err = c
        .lease_revoke(pb::LeaseRevokeRequest { id: g.id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.message(), "etcdserver: requested lease not found");
    let t = c
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: g.id,
            keys: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.ttl, -1);
}
