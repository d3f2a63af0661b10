//! Concurrent clients doing put/get/cas on a few keys while the harness partitions and crashes
//! nodes; every key's history must be linearizable. Several seeds; a failing seed is printed
//! with the command that replays its schedule.

use meridian_node::{ClientApi, Consistency, WriteOptions};
use meridian_state::{
    Compare, CompareOp, CompareTarget, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use meridian_tests::TestCluster;
use meridian_tests::history::{History, Op, Ret};
use meridian_types::{GroupId, NodeId, RequestId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const KEYS: [&str; 3] = ["apple", "mango", "zebra"];
const CLIENTS: u64 = 4;
/// Most operations per client; clients run until the nemesis is done or this many.
const OPS_PER_CLIENT: usize = 150;

async fn client(
    c: Arc<TestCluster>,
    h: Arc<History>,
    client: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (client << 32));
    // A thread id per client generation: after an operation with an unknown outcome the
    // client continues as a new thread, as the checker requires.
    let mut thread = client << 20;
    for i in 0..OPS_PER_CLIENT {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Pace the clients so their operations overlap the faults.
        tokio::time::sleep(Duration::from_millis(rng.random_range(2..20))).await;
        let running = c.running();
        let via = running[rng.random_range(0..running.len())];
        let key = KEYS[rng.random_range(0..KEYS.len())];
        let Some(node) = c.try_node(via) else {
            continue;
        };
        match rng.random_range(0..3) {
            0 => {
                let v = format!("c{client}-{i}");
                h.invoke(key, thread, Op::Put(v.clone()));
                let req = PutRequest {
                    key: key.into(),
                    value: v.into_bytes(),
                    prev_kv: false,
                    lease: 0,
                    ignore_lease: false,
                    ignore_value: false,
                };
                let opts = WriteOptions {
                    request_id: Some(RequestId(rng.random())),
                };
                match node.put(req, opts).await {
                    Ok(_) => h.ok(key, thread, Ret::PutOk),
                    Err(_) => thread += 1,
                }
            }
            1 => {
                h.invoke(key, thread, Op::Get);
                let req = RangeRequest {
                    key: key.into(),
                    ..Default::default()
                };
                match node.range(req, Consistency::Linearizable).await {
                    Ok(r) => {
                        let v = r
                            .kvs
                            .first()
                            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                        h.ok(key, thread, Ret::GetOk(v));
                    }
                    Err(_) => thread += 1,
                }
            }
            _ => {
                // CAS from what this client last saw (often stale: that's the point).
                let expect = node
                    .range(
                        RangeRequest {
                            key: key.into(),
                            ..Default::default()
                        },
                        Consistency::Local,
                    )
                    .await
                    .ok()
                    .and_then(|r| {
                        r.kvs
                            .first()
                            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                    });
                let new = format!("c{client}-{i}-cas");
                h.invoke(
                    key,
                    thread,
                    Op::Cas {
                        expect: expect.clone(),
                        new: new.clone(),
                    },
                );
                let compare = match &expect {
                    Some(v) => Compare {
                        key: key.into(),
                        range_end: vec![],
                        op: CompareOp::Equal,
                        target: CompareTarget::Value(v.clone().into_bytes()),
                    },
                    None => Compare {
                        key: key.into(),
                        range_end: vec![],
                        op: CompareOp::Equal,
                        target: CompareTarget::CreateRevision(0),
                    },
                };
                let txn = TxnRequest {
                    compare: vec![compare],
                    success: vec![RequestOp::Put(PutRequest {
                        key: key.into(),
                        value: new.into_bytes(),
                        prev_kv: false,
                        lease: 0,
                        ignore_lease: false,
                        ignore_value: false,
                    })],
                    failure: vec![],
                };
                match node
                    .txn(
                        txn,
                        WriteOptions {
                            request_id: Some(RequestId(rng.random())),
                        },
                    )
                    .await
                {
                    Ok(t) => h.ok(key, thread, Ret::CasOk(t.succeeded)),
                    Err(_) => thread += 1,
                }
            }
        }
    }
}

async fn run_seed(seed: u64) -> Result<(usize, usize), String> {
    let c = TestCluster::start(3, 2).await.map_err(|e| e.to_string())?;
    let c = Arc::new(c);
    let h = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        tasks.push(tokio::spawn(client(
            c.clone(),
            h.clone(),
            i + 1,
            seed,
            stop.clone(),
        )));
    }
    // The nemesis: partitions, leader isolation and crash/restart, chosen by the seed.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        match rng.random_range(0..4) {
            3 => {
                let victim = c.leader_of(GroupId(2)).unwrap_or(NodeId(2));
                c.crash(victim).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..800))).await;
                c.restart(victim).await.map_err(|e| e.to_string())?;
            }
            0 => {
                let l = c.leader_of(GroupId(1)).unwrap_or(NodeId(1));
                c.isolate(l);
            }
            1 => {
                let a = NodeId(rng.random_range(1..=3));
                let others: Vec<NodeId> = c.ids.iter().copied().filter(|n| *n != a).collect();
                c.partition(&[a], &others[..1]);
            }
            _ => c.heal(),
        }
        faults += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..800))).await;
        c.heal();
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let completed = h.completed();
    let check = h.check();
    if let Ok(c) = Arc::try_unwrap(c) {
        c.shutdown().await;
    }
    check.map(|_| (completed, faults))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_under_partitions_are_linearizable() {
    let seeds: Vec<u64> = match std::env::var("MERIDIAN_LIN_SEEDS") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![1, 2, 3],
    };
    for seed in seeds {
        match run_seed(seed).await {
            Ok((ops, faults)) => {
                eprintln!("seed {seed}: {ops} operations checked, {faults} faults injected");
                assert!(
                    ops > 20,
                    "seed {seed}: too few operations completed ({ops})"
                );
            }
            Err(e) => panic!(
                "seed {seed} failed: {e}\nreplay: MERIDIAN_LIN_SEEDS={seed} cargo nextest run -p meridian-tests histories_under_partitions_are_linearizable"
            ),
        }
    }
}
