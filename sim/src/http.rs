//! A minimal HTTP/1 client over turmoil, for the simulated clients (they use Meridian's public
//! HTTP API, as a user would).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::time::Duration;

pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

/// A fresh HTTP/1 connection to `host`'s API port; it lives as long as the sender (and any
/// response body still being read).
async fn connect(
    host: &str,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let stream = turmoil::net::TcpStream::connect((host, crate::net::PORT))
        .await
        .map_err(|e| format!("connect {host}: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request on a fresh connection; `Err` when the outcome is unknown (no answer in
/// time, connection lost).
pub async fn request(
    host: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Reply, String> {
    let fut = async {
        let mut sender = connect(host).await?;
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok(Reply { status, body })
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err("timeout".into()),
    }
}

/// Opens a GET whose answer streams (server-sent events): the status and the body to read
/// frames from. The connection lives as long as the body.
pub async fn open_stream(
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, hyper::body::Incoming), String> {
    let fut = async {
        let mut sender = connect(host).await?;
        let req = hyper::Request::builder()
            .method("GET")
            .uri(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        Ok((resp.status().as_u16(), resp.into_body()))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err("timeout".into()),
    }
}
