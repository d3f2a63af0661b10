//! `meridian bench queue`: work-queue throughput and latency over the `meridian.v1.Queues`
//! gRPC service. `--clients` producers each have one send in flight (a send is acknowledged
//! once fsynced on a quorum); consumers long-poll batches and ack them. Reported: send
//! messages/s, send-to-ack latency (the send call), and send-to-receive latency (from the
//! start of a send to a consumer holding the message; the send time rides in the body).

use super::BenchArgs;
use super::summary::{LatencySummary, latency_line, new_histogram};
use crate::kv_cmd::Output;
use anyhow::Context;
use hdrhistogram::Histogram;
use meridian_proto::v1 as pb;
use meridian_proto::v1::queues_client::QueuesClient;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages one receive asks for.
const RECEIVE_BATCH: u32 = 64;
/// How long consumers go on after the last send before giving up on missing messages.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// Body bytes that carry the send time (microseconds since the run began).
const STAMP_BYTES: usize = 8;

#[derive(Debug, Serialize)]
struct QueueSummary {
    op: &'static str,
    messages: u64,
    value_size: usize,
    producers: usize,
    consumers: usize,
    sent: u64,
    send_errors: BTreeMap<String, u64>,
    send_seconds: f64,
    send_msgs_per_sec: f64,
    send_to_ack_ms: LatencySummary,
    received: u64,
    receive_msgs_per_sec: f64,
    send_to_receive_ms: LatencySummary,
}

fn client(url: &str) -> anyhow::Result<QueuesClient<Channel>> {
    let ch = meridian_client::lazy_channel(url, CONNECT_TIMEOUT)?;
    Ok(QueuesClient::new(ch))
}

fn code_of(s: &tonic::Status) -> String {
    format!("{:?}", s.code()).to_lowercase()
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let endpoints = meridian_client::parse_endpoints(&args.endpoints)?;
    let n_conns = args.conns.unwrap_or(args.clients.min(100)).max(1);
    let conns: Vec<QueuesClient<Channel>> = (0..n_conns)
        .map(|i| client(&endpoints[i % endpoints.len()]))
        .collect::<anyhow::Result<_>>()?;
    let queue = format!("bench-{:08x}", rand::random::<u32>());
    let mut admin = conns[0].clone();
    admin
        .create_queue(pb::CreateQueueRequest {
            name: queue.clone(),
            visibility_timeout_ms: Some(30_000),
            ..Default::default()
        })
        .await
        .context("create the benchmark queue")?;

    let total = args.total;
    let producers = args.clients;
    let consumers = (producers / 4).clamp(1, 16);
    let t0 = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let sending_done = Arc::new(AtomicBool::new(false));
    let padding = vec![b'x'; args.value_size.saturating_sub(STAMP_BYTES)];

    let mut consumer_tasks = tokio::task::JoinSet::new();
    for i in 0..consumers {
        let mut c = conns[i % conns.len()].clone();
        let (queue, received, sending_done) =
            (queue.clone(), received.clone(), sending_done.clone());
        consumer_tasks.spawn(async move {
            let mut e2e = new_histogram();
            let mut last_send_done: Option<Instant> = None;
            while received.load(Ordering::Relaxed) < total {
                if sending_done.load(Ordering::Relaxed) {
                    let since = *last_send_done.get_or_insert_with(Instant::now);
                    if since.elapsed() > DRAIN_GRACE {
                        break;
                    }
                }
                let mut req = tonic::Request::new(pb::ReceiveRequest {
                    queue: queue.clone(),
                    max: RECEIVE_BATCH,
                    wait_ms: 500,
                    visibility_timeout_ms: None,
                });
                req.set_timeout(REQUEST_TIMEOUT);
                let Ok(got) = c.receive(req).await else {
                    continue;
                };
                let now_us = t0.elapsed().as_micros() as u64;
                let mut receipts = Vec::new();
                for m in got.into_inner().messages {
                    if m.deliveries == 1 && m.body.len() >= STAMP_BYTES {
                        let mut stamp = [0u8; STAMP_BYTES];
                        stamp.copy_from_slice(&m.body[..STAMP_BYTES]);
                        let sent_us = u64::from_le_bytes(stamp);
                        let _ = e2e.record(now_us.saturating_sub(sent_us).max(1));
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    receipts.push(m.receipt);
                }
                if !receipts.is_empty() {
                    let _ = c
                        .ack(pb::AckRequest {
                            queue: queue.clone(),
                            receipts,
                        })
                        .await;
                }
            }
            e2e
        });
    }

    let mut producer_tasks = tokio::task::JoinSet::new();
    for i in 0..producers {
        let mut c = conns[i % conns.len()].clone();
        let (queue, next, padding) = (queue.clone(), next.clone(), padding.clone());
        producer_tasks.spawn(async move {
            let mut lat = new_histogram();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            loop {
                if next.fetch_add(1, Ordering::Relaxed) >= total {
                    break;
                }
                let started = Instant::now();
                let stamp = (started - t0).as_micros() as u64;
                let mut body = stamp.to_le_bytes().to_vec();
                body.extend_from_slice(&padding);
                let mut req = tonic::Request::new(pb::SendRequest {
                    queue: queue.clone(),
                    messages: vec![pb::QueueMessage {
                        body,
                        ..Default::default()
                    }],
                });
                req.set_timeout(REQUEST_TIMEOUT);
                match c.send(req).await {
                    Ok(_) => {
                        let _ = lat.record((started.elapsed().as_micros() as u64).max(1));
                    }
                    Err(s) => *errors.entry(code_of(&s)).or_default() += 1,
                }
            }
            (lat, errors)
        });
    }
    let mut send_lat = new_histogram();
    let mut send_errors: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(r) = producer_tasks.join_next().await {
        let (h, errs) = r.context("join a producer")?;
        add(&mut send_lat, &h)?;
        for (k, v) in errs {
            *send_errors.entry(k).or_default() += v;
        }
    }
    let send_elapsed = t0.elapsed();
    sending_done.store(true, Ordering::Relaxed);
    let mut e2e = new_histogram();
    while let Some(r) = consumer_tasks.join_next().await {
        add(&mut e2e, &r.context("join a consumer")?)?;
    }
    let recv_elapsed = t0.elapsed();
    let _ = admin.delete_queue(pb::QueueName { name: queue }).await;

    let sent = send_lat.len();
    let s = QueueSummary {
        op: "queue",
        messages: total,
        value_size: args.value_size,
        producers,
        consumers,
        sent,
        send_errors,
        send_seconds: send_elapsed.as_secs_f64(),
        send_msgs_per_sec: sent as f64 / send_elapsed.as_secs_f64().max(1e-9),
        send_to_ack_ms: LatencySummary::of(&send_lat),
        received: e2e.len(),
        receive_msgs_per_sec: e2e.len() as f64 / recv_elapsed.as_secs_f64().max(1e-9),
        send_to_receive_ms: LatencySummary::of(&e2e),
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string(&s)?),
        Output::Text => {
            println!(
                "queue: {} messages of {} bytes, {} producers, {} consumers",
                s.messages, s.value_size, s.producers, s.consumers
            );
            println!(
                "send          {:.0} msgs/s ({} sent in {:.2} s, {} errors)",
                s.send_msgs_per_sec,
                s.sent,
                s.send_seconds,
                s.send_errors.values().sum::<u64>()
            );
            println!("send-to-ack   {}", latency_line(&s.send_to_ack_ms));
            println!(
                "receive+ack   {:.0} msgs/s ({} received)",
                s.receive_msgs_per_sec, s.received
            );
            println!("send-to-recv  {}", latency_line(&s.send_to_receive_ms));
            for (code, n) in &s.send_errors {
                println!("  send error {code}: {n}");
            }
        }
    }
    anyhow::ensure!(sent > 0, "every send failed: {:?}", s.send_errors);
    Ok(())
}

fn add(into: &mut Histogram<u64>, h: &Histogram<u64>) -> anyhow::Result<()> {
    into.add(h)
        .map_err(|e| anyhow::anyhow!("merge latency histograms: {e:?}"))
}
