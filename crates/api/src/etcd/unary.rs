//! etcd's busiest calls — `KV.Range`, `Put`, `DeleteRange` and `Txn` — in the form every gRPC
//! client sends them (one uncompressed message), served without tonic's generic unary path.
//!
//! At 256 etcd-benchmark clients the leader spent about 8 % of its CPU in tonic's streaming
//! decoder, its encoder and the response body around one message. Here the request body is
//! read whole (at most the message limit), the message decoded with prost, the same
//! [`EtcdKv`] method called as tonic would call it (metadata and extensions included), and the
//! answer written as one DATA frame and `grpc-status: 0` trailers. Anything else — a compressed
//! or oversized message, more than one message, a cut one, another encoding — goes to tonic's
//! `KvServer` unchanged, which answers it as before (`OutOfRange` for a message over the limit).

use super::kv::EtcdKv;
use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body::Frame;
use http_body_util::BodyExt;
use meridian_node::ClientApi;
use meridian_proto::etcd::etcdserverpb::kv_server::{Kv, KvServer};
use prost::Message;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::metadata::MetadataMap;

/// The paths served here.
pub const PATHS: [&str; 4] = [
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
];

/// gRPC's frame header: a compression flag and a 4-byte length.
const FRAME_HEADER: usize = 5;

/// The message length a frame header (at least [`FRAME_HEADER`] bytes) declares.
fn declared_len(buf: &[u8]) -> usize {
    u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize
}

/// One of the calls of [`PATHS`].
#[derive(Clone, Copy)]
enum Call {
    Range,
    Put,
    DeleteRange,
    Txn,
}

impl Call {
    fn of(path: &str) -> Option<Call> {
        match path {
            "/etcdserverpb.KV/Range" => Some(Call::Range),
            "/etcdserverpb.KV/Put" => Some(Call::Put),
            "/etcdserverpb.KV/DeleteRange" => Some(Call::DeleteRange),
            "/etcdserverpb.KV/Txn" => Some(Call::Txn),
            _ => None,
        }
    }
}

/// The `KV` unary calls of [`PATHS`], with tonic's `KvServer` behind for everything else.
pub struct FastKv<A> {
    kv: Arc<EtcdKv<A>>,
    tonic: KvServer<EtcdKv<A>>,
    max: usize,
}

impl<A> Clone for FastKv<A> {
    fn clone(&self) -> Self {
        Self {
            kv: self.kv.clone(),
            tonic: self.tonic.clone(),
            max: self.max,
        }
    }
}

impl<A: ClientApi> FastKv<A> {
    /// `max`: the largest message accepted, as `KvServer::max_decoding_message_size`.
    pub fn new(api: A, max: usize) -> Self {
        Self {
            kv: Arc::new(EtcdKv::new(api.clone())),
            tonic: KvServer::new(EtcdKv::new(api)).max_decoding_message_size(max),
            max,
        }
    }

    async fn serve(mut self, req: Request<Body>) -> Response<Body> {
        let call = Call::of(req.uri().path()).filter(|_| plain_grpc(req.headers()));
        let Some(call) = call else {
            return self.by_tonic(req).await;
        };
        let (parts, mut body) = req.into_parts();
        let mut buf = BytesMut::new();
        loop {
            if buf.len() >= FRAME_HEADER {
                let len = declared_len(&buf);
                if buf[0] != 0 || len > self.max || buf.len() > FRAME_HEADER + len {
                    let body = Body::new(Prepend {
                        head: Some(buf.freeze()),
                        rest: body,
                    });
                    return self.by_tonic(Request::from_parts(parts, body)).await;
                }
            }
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    return status(Status::cancelled(format!("reading the request: {e}")));
                }
            }
        }
        let whole = buf.len() >= FRAME_HEADER && declared_len(&buf) == buf.len() - FRAME_HEADER;
        if !whole {
            let body = Body::from(buf.freeze());
            return self.by_tonic(Request::from_parts(parts, body)).await;
        }
        let msg = buf.freeze().slice(FRAME_HEADER..);
        let md = MetadataMap::from_headers(parts.headers);
        let ext = parts.extensions;
        let kv = &*self.kv;
        match call {
            Call::Range => match decode(msg) {
                Ok(r) => answer(Kv::range(kv, tonic::Request::from_parts(md, ext, r)).await),
                Err(s) => status(s),
            },
            Call::Put => match decode(msg) {
                Ok(r) => answer(Kv::put(kv, tonic::Request::from_parts(md, ext, r)).await),
                Err(s) => status(s),
            },
            Call::DeleteRange => match decode(msg) {
                Ok(r) => answer(Kv::delete_range(kv, tonic::Request::from_parts(md, ext, r)).await),
                Err(s) => status(s),
            },
            Call::Txn => match decode(msg) {
                Ok(r) => answer(Kv::txn(kv, tonic::Request::from_parts(md, ext, r)).await),
                Err(s) => status(s),
            },
        }
    }

    async fn by_tonic(&mut self, req: Request<Body>) -> Response<Body> {
        use tower::Service;
        match self.tonic.call(req).await {
            Ok(resp) => resp.map(Body::new),
            Err(never) => match never {},
        }
    }
}

impl<A: ClientApi> tower::Service<Request<Body>> for FastKv<A> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.serve(req).await) })
    }
}

/// `application/grpc` (or `+proto`) with no message encoding but `identity`.
fn plain_grpc(h: &HeaderMap) -> bool {
    let ct = h.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    let enc = h.get("grpc-encoding").map(HeaderValue::as_bytes);
    matches!(ct, Some(b"application/grpc" | b"application/grpc+proto"))
        && matches!(enc, None | Some(b"identity"))
}

/// The words `meridian_proto::codec` gives tonic's path for the same failure.
fn decode<M: Message + Default>(msg: Bytes) -> Result<M, Status> {
    M::decode(msg).map_err(|e| {
        Status::invalid_argument(format!(
            "invalid_argument: the message does not decode as protobuf: {e}"
        ))
    })
}

/// A trailers-only answer, as tonic gives for an error.
fn status(s: Status) -> Response<Body> {
    s.into_http::<Body>()
}

fn answer<M: Message>(r: Result<tonic::Response<M>, Status>) -> Response<Body> {
    let resp = match r {
        Ok(resp) => resp,
        Err(s) => return status(s),
    };
    let (md, msg, _) = resp.into_parts();
    let len = msg.encoded_len();
    let Ok(len32) = u32::try_from(len) else {
        return status(Status::resource_exhausted(format!(
            "response of {len} bytes is too large to send"
        )));
    };
    let mut data = BytesMut::with_capacity(FRAME_HEADER + len);
    data.put_u8(0);
    data.put_u32(len32);
    if let Err(e) = msg.encode(&mut data) {
        return status(Status::internal(format!("encode the response: {e}")));
    }
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut out = Response::new(Body::new(OneMessage {
        data: Some(data.freeze()),
        trailers: Some(trailers),
    }));
    *out.headers_mut() = md.into_headers();
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    out
}

/// A unary gRPC response body: one message, then `grpc-status: 0`.
struct OneMessage {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for OneMessage {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// A request body whose first bytes were already read: they come first, then the rest.
struct Prepend {
    head: Option<Bytes>,
    rest: Body,
}

impl http_body::Body for Prepend {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Some(h) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(h))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.rest.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_path_is_a_call_served_here() {
        assert!(PATHS.iter().all(|p| Call::of(p).is_some()));
        assert!(Call::of("/etcdserverpb.KV/Compact").is_none());
    }
}
