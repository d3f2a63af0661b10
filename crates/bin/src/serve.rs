//! The accept loop of `meridian server`: axum's `serve`, with the HTTP/2 settings chosen here.
//!
//! `axum::serve` builds every connection with hyper's defaults and offers no way to change them.
//! The one default changed here: HTTP/2 responses carry no `date` header. gRPC clients ignore it,
//! and it cost the server a lookup and an HPACK encoding for every response (at 256
//! etcd-benchmark clients, HPACK's share of the leader's CPU went from 2.9–3.3 % to 2.5–2.8 %).
//! HTTP/1 responses keep `date`, as RFC 9110 recommends.

use axum::Router;
use axum::body::Body;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use tokio::sync::watch;
use tower::ServiceExt;

/// Serves `app` on every connection `listener` accepts until `stop` resolves, then stops
/// accepting, lets each connection finish its requests (HTTP/2 GOAWAY, HTTP/1 close after the
/// response) and returns when all have closed.
pub async fn serve<L: Listener>(mut listener: L, app: Router, stop: impl Future<Output = ()>) {
    // Dropped at `stop`: every connection task sees it and shuts down gracefully.
    let (stop_tx, stop_rx) = watch::channel(());
    // Every connection task holds a receiver; `closed()` resolves when the last one is gone.
    let (done_tx, done_rx) = watch::channel(());
    // Turns every handler into a ready `Route` once, as `axum::serve` does, not per request.
    let app: Router = app.with_state(());
    tokio::pin!(stop);
    loop {
        let (io, _addr) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut stop => break,
        };
        let service = TowerToHyperService::new(
            app.clone()
                .map_request(|req: http::Request<Incoming>| req.map(Body::new)),
        );
        let mut stopping = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http2()
                .enable_connect_protocol()
                .auto_date_header(false);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                // A value or the sender's drop: either way, stop.
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(done);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(done_rx);
    done_tx.closed().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn start() -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "ok" }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, async move {
            let _ = stop_rx.await;
        }));
        (addr, stop_tx, server)
    }

    #[tokio::test]
    async fn http2_responses_carry_no_date_and_http1_ones_do() {
        let (addr, stop, server) = start().await;

        let tcp = TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let req = http::Request::get(format!("http://{addr}/"))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("date").is_none(), "{:?}", resp.headers());

        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        tcp.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.to_ascii_lowercase().contains("\r\ndate: "), "{text}");

        drop(client);
        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("the server stops once asked")
            .unwrap();
    }

    #[tokio::test]
    async fn a_stop_closes_open_connections_gracefully() {
        let (addr, stop, server) = start().await;
        // An idle HTTP/2 connection: the stop sends it GOAWAY and the server returns once it
        // has closed, without waiting for the client to hang up.
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let req = http::Request::get(format!("http://{addr}/"))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("the server stops with a connection open")
            .unwrap();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
        assert!(ended.is_ok(), "the client's connection ends after GOAWAY");
    }
}
