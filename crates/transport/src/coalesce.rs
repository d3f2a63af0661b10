//! Write coalescing for served connections: many responses, one `send`.
//!
//! A batch of writes commits at once, so hundreds of responses become ready together. Each one
//! wakes its connection's task, and tokio runs a task woken by the running one next (its LIFO
//! slot): so hyper's h2 connection task wrote and flushed each response on its own, with one
//! system call (and one wake-up of the reader) per response, often two. [`CoalescingIo`] holds
//! written bytes until the connection flushes, and then, before writing, lets every other
//! runnable task run once (the task re-queues itself at the back of the run queue). Responses
//! that became ready in the same round then leave in one system call. When nothing else is
//! runnable the task runs again at once, so a lone request waits for no timer.
//!
//! An HTTP/2 PING acknowledgement with nothing else to send waits up to [`PONG_HOLD_MAX`] for
//! the connection's next response and leaves with it. gRPC's Go client sends a ping (to size its
//! flow-control window) each time data arrives and none is outstanding: at 256 etcd clients over
//! 100 connections, that made nearly every other `send` of the leader a lone 17-byte PING ACK,
//! and every one of them woke the client's reader. RFC 9113 asks that a PING be answered, and
//! only recommends that the answer go first; the wait is bounded, so keep-alive timeouts
//! (seconds) are never near. A held acknowledgement goes after the data it waited for: the
//! client then reads the response while its ping is still outstanding, and pings half as often.
//!
//! Limit: at most [`COALESCE_BUFFER_MAX`] bytes wait in one connection's buffer; a write
//! beyond it first sends what is buffered (back-pressure from the socket, as before).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Most bytes one connection holds for its next flush.
pub const COALESCE_BUFFER_MAX: usize = 256 * 1024;
/// A drained buffer bigger than this is freed rather than kept for the next writes, so idle
/// connections that once sent much hold little.
const KEEP_CAPACITY_MAX: usize = 16 * 1024;
/// Longest a PING ACK with nothing else to send waits for a response to leave with.
pub const PONG_HOLD_MAX: Duration = Duration::from_millis(5);

/// An HTTP/2 PING frame with the ACK flag: length 8, type 6, flags 1, stream 0, then the
/// 8-byte payload.
const PONG_HEADER: [u8; 9] = [0, 0, 8, 6, 1, 0, 0, 0, 0];
const PONG_LEN: usize = PONG_HEADER.len() + 8;

/// The bytes are whole PING ACK frames and nothing else.
fn only_pongs(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len().is_multiple_of(PONG_LEN)
        && bytes
            .chunks_exact(PONG_LEN)
            .all(|frame| frame.starts_with(&PONG_HEADER))
}

/// An IO stream whose writes wait in a buffer until a flush, and whose flush first yields to the
/// other runnable tasks once. Reads pass through.
#[derive(Debug)]
pub struct CoalescingIo<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already written to `inner`.
    sent: usize,
    /// The current flush has already yielded once.
    yielded: bool,
    /// Set while buffered PING ACKs wait for company; fires at their deadline.
    pong_hold: Option<Pin<Box<Sleep>>>,
}

impl<S> CoalescingIo<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            sent: 0,
            yielded: false,
            pong_hold: None,
        }
    }

    #[cfg(test)]
    fn get_ref(&self) -> &S {
        &self.inner
    }

    fn buffered(&self) -> usize {
        self.buf.len() - self.sent
    }
}

impl<S: AsyncWrite + Unpin> CoalescingIo<S> {
    /// Writes everything buffered to `inner`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if self.buf.capacity() > KEEP_CAPACITY_MAX {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Pending while the buffer holds only PING ACKs younger than [`PONG_HOLD_MAX`].
    fn poll_pong_hold(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let unsent = &mut self.buf[self.sent..];
        if !only_pongs(unsent) {
            if self.pong_hold.take().is_some() {
                // The held acknowledgements go after the response, so that Go's client reads
                // the data while its ping is still outstanding and does not ping again at once.
                let held = unsent
                    .chunks_exact(PONG_LEN)
                    .take_while(|frame| frame.starts_with(&PONG_HEADER))
                    .count();
                unsent.rotate_left(held * PONG_LEN);
            }
            return Poll::Ready(());
        }
        let hold = self
            .pong_hold
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(PONG_HOLD_MAX)));
        ready!(hold.as_mut().poll(cx));
        self.pong_hold = None;
        Poll::Ready(())
    }

    /// How many more bytes the buffer takes, sending it first if it is full.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buffered() >= COALESCE_BUFFER_MAX {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(COALESCE_BUFFER_MAX - self.buffered()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CoalescingIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CoalescingIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let mut room = ready!(me.poll_room(cx))?;
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(room);
            me.buf.extend_from_slice(&b[..take]);
            n += take;
            room -= take;
            if room == 0 {
                break;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.buffered() > 0 {
            ready!(me.poll_pong_hold(cx));
            if !me.yielded {
                // Re-queue behind every task already runnable: a task that wakes itself while
                // running goes to the back of tokio's run queue, not into its LIFO slot.
                me.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(me.poll_drain(cx))?;
        }
        me.yielded = false;
        Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        me.yielded = false;
        me.pong_hold = None;
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Counts the writes that reach the wrapped stream.
    struct Counting {
        writes: usize,
        bytes: Vec<u8>,
        /// Accept at most this many bytes per write (a full socket buffer).
        per_write: usize,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = data.len().min(self.per_write);
            self.writes += 1;
            self.bytes.extend_from_slice(&data[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn counting(per_write: usize) -> CoalescingIo<Counting> {
        CoalescingIo::new(Counting {
            writes: 0,
            bytes: Vec::new(),
            per_write,
        })
    }

    #[tokio::test]
    async fn writes_wait_for_the_flush_and_leave_in_one_write() {
        let mut io = counting(usize::MAX);
        io.write_all(b"one ").await.unwrap();
        let n = io
            .write_vectored(&[IoSlice::new(b"two "), IoSlice::new(b"three")])
            .await
            .unwrap();
        assert_eq!(n, 9, "both slices are taken whole");
        assert_eq!(
            io.get_ref().writes,
            0,
            "nothing is written before the flush"
        );
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes, 1);
        assert_eq!(io.get_ref().bytes, b"one two three");
        // A flush with nothing buffered writes nothing.
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes, 1);
    }

    #[tokio::test]
    async fn a_full_buffer_is_sent_before_more_is_taken() {
        let mut io = counting(usize::MAX);
        let big = vec![7u8; COALESCE_BUFFER_MAX + 10];
        io.write_all(&big).await.unwrap();
        assert_eq!(io.get_ref().writes, 1, "the first full buffer went out");
        assert_eq!(io.buffered(), 10);
        io.shutdown().await.unwrap();
        assert_eq!(io.get_ref().bytes, big, "shutdown sends the rest");
    }

    #[tokio::test]
    async fn partial_writes_of_the_inner_stream_lose_nothing() {
        let mut io = counting(3);
        io.write_all(b"abcdefghij").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().bytes, b"abcdefghij");
        assert_eq!(io.get_ref().writes, 4);
    }

    #[tokio::test]
    async fn a_flush_lets_the_other_runnable_tasks_run_first() {
        use std::sync::{Arc, Mutex};
        let log = Arc::new(Mutex::new(Vec::new()));
        struct Logging(Arc<Mutex<Vec<&'static str>>>);
        impl AsyncWrite for Logging {
            fn poll_write(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                data: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.0.lock().unwrap().push("write");
                Poll::Ready(Ok(data.len()))
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
        let mut io = CoalescingIo::new(Logging(log.clone()));
        let log2 = log.clone();
        // The test runtime has one thread: the spawned task runs only when this one yields.
        let other = tokio::spawn(async move { log2.lock().unwrap().push("other") });
        io.write_all(b"x").await.unwrap();
        io.flush().await.unwrap();
        other.await.unwrap();
        assert_eq!(*log.lock().unwrap(), ["other", "write"]);
    }

    fn pong(payload: u8) -> Vec<u8> {
        let mut f = PONG_HEADER.to_vec();
        f.extend_from_slice(&[payload; 8]);
        f
    }

    #[test]
    fn only_whole_ping_acks_count_as_pongs() {
        assert!(only_pongs(&pong(1)));
        assert!(only_pongs(&[pong(1), pong(2)].concat()));
        assert!(!only_pongs(b""));
        assert!(!only_pongs(&pong(1)[..16]), "a cut frame");
        let mut ping = pong(1);
        ping[4] = 0;
        assert!(!only_pongs(&ping), "a ping that is not an ACK goes at once");
        assert!(!only_pongs(&[pong(1), vec![0; PONG_LEN]].concat()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_ping_ack_waits_for_company_but_not_past_its_deadline() {
        let mut io = counting(usize::MAX);
        io.write_all(&pong(1)).await.unwrap();
        let started = tokio::time::Instant::now();
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes, 1);
        assert_eq!(io.get_ref().bytes, pong(1));
        assert!(started.elapsed() >= PONG_HOLD_MAX, "it waited for the hold");
        assert!(io.pong_hold.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_ack_leaves_with_the_next_response_without_waiting() {
        let mut io = counting(usize::MAX);
        io.write_all(&pong(1)).await.unwrap();
        let flushed = std::future::poll_fn(|cx| Pin::new(&mut io).poll_flush(cx));
        assert!(
            tokio::time::timeout(Duration::from_millis(1), flushed)
                .await
                .is_err(),
            "held"
        );
        assert_eq!(io.get_ref().writes, 0);
        io.write_all(b"response").await.unwrap();
        let started = tokio::time::Instant::now();
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes, 1, "one write for both");
        assert_eq!(
            io.get_ref().bytes,
            [b"response".to_vec(), pong(1)].concat(),
            "the acknowledgement goes last"
        );
        assert!(started.elapsed() < PONG_HOLD_MAX);
    }
}
