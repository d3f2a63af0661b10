//! A delaying TCP proxy in front of each host's server, for a kernel without `tc netem`.
//!
//! The proxy of host `i` runs on its own thread inside host `i`'s namespace, listens on the
//! host's bridge address (the address the node advertises) and forwards each connection to the
//! node's real listener on the host's loopback. Every chunk read is delivered after the link's
//! delay plus jitter, in order; with the link's loss probability a chunk also waits a TCP
//! retransmission timeout first (so a lossy link stalls the stream the way a lost segment
//! would); with the cut probability the connection is reset. The link is looked up per chunk by
//! the connection's source address and the host, so the nemesis changes latency and loss on
//! live connections. Partitions are not done here: they are nftables rules in the namespaces
//! ([`crate::netns`]), below the proxy.

use crate::netns::enter_ns;
use anyhow::Context;
use parking_lot::RwLock;
use rand::Rng;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Largest chunk read at once.
const CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Chunks in flight per direction of one connection.
const CHUNKS_IN_FLIGHT_MAX: usize = 256;

/// How one link (source address → host) behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkConfig {
    pub delay_ms: u64,
    pub jitter_ms: u64,
    /// Chance per chunk of waiting `stall_ms` more (a lost segment and its retransmission).
    pub loss: f64,
    pub stall_ms: u64,
    /// Chance per chunk of resetting the connection.
    pub cut: f64,
}

/// Link settings shared by every proxy and changed by the nemesis.
#[derive(Default)]
pub struct LinkTable {
    /// For links with no entry of their own.
    pub default: RwLock<LinkConfig>,
    links: RwLock<HashMap<(Ipv4Addr, usize), LinkConfig>>,
    pub connections: AtomicU64,
    pub bytes: AtomicU64,
    pub stalls: AtomicU64,
    pub cuts: AtomicU64,
}

impl LinkTable {
    pub fn get(&self, from: Ipv4Addr, to_host: usize) -> LinkConfig {
        self.links
            .read()
            .get(&(from, to_host))
            .copied()
            .unwrap_or(*self.default.read())
    }

    pub fn set(&self, from: Ipv4Addr, to_host: usize, cfg: LinkConfig) {
        self.links.write().insert((from, to_host), cfg);
    }

    /// Back to the default on every link.
    pub fn reset(&self) {
        self.links.write().clear();
    }
}

/// A running proxy; dropping it stops it and closes its connections.
pub struct Proxy {
    pub listen: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts the proxy of host `host` in namespace `ns`: `listen` → `target`.
    pub fn start(
        ns: &str,
        host: usize,
        listen: SocketAddr,
        target: SocketAddr,
        links: Arc<LinkTable>,
    ) -> anyhow::Result<Proxy> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let ns = ns.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{ns}"))
            .spawn(move || {
                let setup = || -> anyhow::Result<(tokio::runtime::Runtime, TcpListener)> {
                    enter_ns(&ns)?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let l = rt
                        .block_on(TcpListener::bind(listen))
                        .with_context(|| format!("proxy listen on {listen} in {ns}"))?;
                    Ok((rt, l))
                };
                let (rt, listener) = match setup() {
                    Ok(x) => {
                        let _ = ready_tx.send(Ok(()));
                        x
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    tokio::select! {
                        _ = stop_rx => {}
                        _ = serve(listener, host, target, links) => {}
                    }
                });
                // Dropping the runtime drops every connection task and socket.
            })
            .context("spawn a proxy thread")?;
        ready_rx.recv().context("proxy thread died")??;
        Ok(Proxy {
            listen,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(listener: TcpListener, host: usize, target: SocketAddr, links: Arc<LinkTable>) {
    loop {
        let Ok((inbound, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let from = match peer.ip() {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        links.connections.fetch_add(1, Ordering::Relaxed);
        let links = links.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return; // the node is down: the client sees the connection close
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            // Either direction cut (or failing) ends both: dropping the halves resets them.
            let _ = tokio::try_join!(
                pump(ir, ow, from, host, links.clone()),
                pump(or, iw, from, host, links)
            );
        });
    }
}

/// The connection was cut on purpose.
#[derive(Debug)]
struct Cut;

async fn pump(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    from: Ipv4Addr,
    host: usize,
    links: Arc<LinkTable>,
) -> Result<(), Cut> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT_MAX);
    let writer = async move {
        while let Some((at, buf)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if wr.write_all(&buf).await.is_err() {
                return Err(Cut);
            }
        }
        let _ = wr.shutdown().await;
        Ok(())
    };
    let reader = async move {
        let mut last = Instant::now();
        loop {
            let mut buf = vec![0u8; CHUNK_BYTES_MAX];
            let n = match rd.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(_) => return Err(Cut),
            };
            buf.truncate(n);
            links.bytes.fetch_add(n as u64, Ordering::Relaxed);
            let cfg = links.get(from, host);
            let (extra, cut, jitter) = {
                let mut rng = rand::rng();
                let stall = cfg.loss > 0.0 && rng.random_bool(cfg.loss.min(1.0));
                let cut = cfg.cut > 0.0 && rng.random_bool(cfg.cut.min(1.0));
                let jitter = if cfg.jitter_ms > 0 {
                    rng.random_range(0..=cfg.jitter_ms)
                } else {
                    0
                };
                (if stall { cfg.stall_ms } else { 0 }, cut, jitter)
            };
            if cut {
                links.cuts.fetch_add(1, Ordering::Relaxed);
                return Err(Cut);
            }
            if extra > 0 {
                links.stalls.fetch_add(1, Ordering::Relaxed);
            }
            let at =
                (Instant::now() + Duration::from_millis(cfg.delay_ms + jitter + extra)).max(last);
            last = at;
            if tx.send((at, buf)).await.is_err() {
                return Err(Cut);
            }
        }
    };
    tokio::try_join!(reader, writer).map(|_| ())
}
