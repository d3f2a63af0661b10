//! The key-value side of a simulated run: the clients doing put/get/cas/delete/txn through
//! random nodes' HTTP API (recorded in the history), the placement rule setter, the `bounded`
//! reader and the final reads after the heal.

use crate::history::{History, Op, Ret};
use crate::run::{Plan, WARMUP, host};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

fn json_str(v: &serde_json::Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_string)
}

fn json_u64(v: &serde_json::Value, key: &str) -> Option<u64> {
    v.get(key)?.as_u64()
}

/// Why an answer leaves the operation's outcome unknown: an unexpected status, or no answer.
fn why_unknown(res: Result<crate::http::Reply, String>) -> String {
    match res {
        Ok(r) => format!("{} {}", r.status, r.body),
        Err(e) => e,
    }
}

/// One client: random operations on a small key set through random nodes.
pub(crate) async fn client(
    plan: Plan,
    j: u64,
    history: History,
    until: Duration,
) -> turmoil::Result {
    let mut rng = SmallRng::seed_from_u64(plan.seed.wrapping_mul(1_000_003).wrapping_add(j));
    let timeout = Duration::from_secs(5);
    tokio::time::sleep(WARMUP).await;
    let mut thread = j << 20;
    let mut seq = 0u64;
    while turmoil::sim_elapsed().unwrap_or_default() < until {
        let key = format!("k{}", rng.random_range(0..plan.keys));
        let node = host(rng.random_range(1..=plan.nodes));
        seq += 1;
        let value = format!("c{j}-{seq}");
        let dice = rng.random_range(0..100);
        let ok = match dice {
            0..30 => {
                let id = history.invoke(thread, &key, Op::Put(value.clone()));
                match crate::http::request(
                    &node,
                    "PUT",
                    &format!("/v1/kv/{key}"),
                    value.into_bytes(),
                    timeout,
                )
                .await
                {
                    Ok(r) if r.status == 200 => {
                        history.ok(id, Ret::PutOk, json_u64(&r.body, "revision"));
                        true
                    }
                    other => {
                        history.unknown(id, why_unknown(other));
                        false
                    }
                }
            }
            30..60 => {
                let id = history.invoke(thread, &key, Op::Get);
                match crate::http::request(&node, "GET", &format!("/v1/kv/{key}"), vec![], timeout)
                    .await
                {
                    Ok(r) if r.status == 200 => {
                        history.ok(id, Ret::GetOk(json_str(&r.body, &["value"])), None);
                        true
                    }
                    Ok(r) if r.status == 404 => {
                        history.ok(id, Ret::GetOk(None), None);
                        true
                    }
                    other => {
                        history.unknown(id, why_unknown(other));
                        false
                    }
                }
            }
            60..82 => {
                // Compare-and-set against a value this client wrote before, or absence.
                let expect = if rng.random_bool(0.3) || seq < 3 {
                    None
                } else {
                    Some(format!("c{j}-{}", rng.random_range(1..seq)))
                };
                let compare = match &expect {
                    None => {
                        serde_json::json!({"key": key, "target": "version", "op": "=", "value": 0})
                    }
                    Some(v) => {
                        serde_json::json!({"key": key, "target": "value", "op": "=", "value": v})
                    }
                };
                let body = serde_json::json!({
                    "compare": [compare],
                    "success": [{"put": {"key": key, "value": value}}],
                });
                let id = history.invoke(
                    thread,
                    &key,
                    Op::Cas {
                        expect,
                        new: value.clone(),
                    },
                );
                match crate::http::request(
                    &node,
                    "POST",
                    "/v1/txn",
                    body.to_string().into_bytes(),
                    timeout,
                )
                .await
                {
                    Ok(r) if r.status == 200 => {
                        let won = r.body.get("succeeded").and_then(|b| b.as_bool()) == Some(true);
                        let rev = won.then(|| json_u64(&r.body, "revision")).flatten();
                        history.ok(id, Ret::CasOk(won), rev);
                        true
                    }
                    other => {
                        history.unknown(id, why_unknown(other));
                        false
                    }
                }
            }
            82..92 => {
                let id = history.invoke(thread, &key, Op::Delete);
                match crate::http::request(
                    &node,
                    "DELETE",
                    &format!("/v1/kv/{key}"),
                    vec![],
                    timeout,
                )
                .await
                {
                    Ok(r) if r.status == 200 => {
                        // Deleting an absent key writes nothing and bumps no revision.
                        let existed = json_u64(&r.body, "deleted").unwrap_or(0) > 0;
                        let rev = existed.then(|| json_u64(&r.body, "revision")).flatten();
                        history.ok(id, Ret::DeleteOk(existed), rev);
                        true
                    }
                    other => {
                        history.unknown(id, why_unknown(other));
                        false
                    }
                }
            }
            _ => {
                // A transaction writing two keys at once (one range only: otherwise it is
                // refused as cross-range, which is checked elsewhere).
                let key2 = format!("k{}", rng.random_range(0..plan.keys));
                if plan.ranges > 1 || key2 == key {
                    continue;
                }
                let body = serde_json::json!({
                    "success": [
                        {"put": {"key": key, "value": value}},
                        {"put": {"key": key2, "value": value}},
                    ],
                });
                let id1 = history.invoke(thread, &key, Op::Put(value.clone()));
                let id2 = history.invoke(thread, &key2, Op::Put(value.clone()));
                match crate::http::request(
                    &node,
                    "POST",
                    "/v1/txn",
                    body.to_string().into_bytes(),
                    timeout,
                )
                .await
                {
                    Ok(r) if r.status == 200 => {
                        // The revision is counted once, on the first key.
                        history.ok(id1, Ret::PutOk, json_u64(&r.body, "revision"));
                        history.ok(id2, Ret::PutOk, None);
                        true
                    }
                    other => {
                        history.unknown(id1, why_unknown(other));
                        history.unknown(id2, "see the first key".into());
                        false
                    }
                }
            }
        };
        if !ok {
            // The checker needs one operation in flight per thread: an unanswered one stays
            // in flight forever, so the client goes on as a new thread.
            thread += 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..60))).await;
    }
    Ok(())
}

/// Sets seeded placement rules (replica count, leader regions) through random nodes' HTTP API
/// at random times during the faults. Its own random stream, so the other clients' draws are
/// unchanged.
pub(crate) async fn placer(plan: Plan, until: Duration) -> turmoil::Result {
    let mut rng = SmallRng::seed_from_u64(plan.seed ^ 0x91ace);
    tokio::time::sleep(WARMUP).await;
    while turmoil::sim_elapsed().unwrap_or_default() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..6000))).await;
        let replicas = if plan.nodes == 5 && rng.random_bool(0.5) {
            5
        } else {
            3
        };
        let mut regions = vec!["r1", "r2", "r3"];
        let mut leader_regions = Vec::new();
        for _ in 0..rng.random_range(0..=2) {
            let i = rng.random_range(0..regions.len());
            leader_regions.push(regions.remove(i));
        }
        let body = serde_json::json!({
            "replicas": replicas,
            "survival": "zone",
            "leader_regions": leader_regions,
        });
        let node = host(rng.random_range(1..=plan.nodes));
        match crate::http::request(
            &node,
            "PUT",
            "/v1/placement/",
            body.to_string().into_bytes(),
            Duration::from_secs(5),
        )
        .await
        {
            Ok(r) => println!(
                "[{:?}] placer: {body} via {node}: {}",
                turmoil::sim_elapsed().unwrap_or_default(),
                r.status
            ),
            Err(e) => println!("placer: {body} via {node}: {e}"),
        }
    }
    Ok(())
}

/// A reader of `bounded:<ms>` scans of one key through random nodes, recorded apart from the
/// history (see `invariants::bounded_staleness`). Its own random stream, so the other clients'
/// draws are unchanged.
pub(crate) async fn bounded_reader(
    plan: Plan,
    history: History,
    until: Duration,
) -> turmoil::Result {
    let mut rng = SmallRng::seed_from_u64(plan.seed ^ 0xb0_0d_ed);
    tokio::time::sleep(WARMUP).await;
    while turmoil::sim_elapsed().unwrap_or_default() < until {
        let key = format!("k{}", rng.random_range(0..plan.keys));
        let node = host(rng.random_range(1..=plan.nodes));
        let bound_ms = [50u64, 300, 1000, 5000][rng.random_range(0..4)];
        let invoked_ms = history.now_ms();
        // A scan of the key's prefix (keys are k0..k9, so it is the key alone): it answers an
        // absent key with a staleness too, where a get answers 404.
        let path = format!("/v1/kv?prefix={key}&limit=1&consistency=bounded:{bound_ms}");
        if let Ok(r) =
            crate::http::request(&node, "GET", &path, vec![], Duration::from_secs(5)).await
            && r.status == 200
        {
            let kv = r
                .body
                .get("kvs")
                .and_then(|k| k.as_array())
                .and_then(|a| a.first());
            match json_u64(&r.body, "staleness_ms") {
                Some(staleness_ms) => history.bounded_read(crate::history::BoundedRead {
                    key,
                    bound_ms,
                    invoked_ms,
                    mod_revision: kv.and_then(|kv| json_u64(kv, "mod_revision")),
                    staleness_ms,
                }),
                None => {
                    return Err(format!(
                        "a bounded read answered without staleness_ms: {}",
                        r.body
                    )
                    .into());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..60))).await;
    }
    Ok(())
}

/// After the heal: every key must be answered by every node (linearizable reads, recorded in
/// the history like any other read).
pub(crate) async fn final_reader(
    plan: Plan,
    history: History,
    give_up: Duration,
) -> turmoil::Result {
    // Let the clients' last operations finish (they give up after 5 s) before reading.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut thread = 999u64 << 20;
    for k in 0..plan.keys {
        let key = format!("k{k}");
        for i in 1..=plan.nodes {
            loop {
                if turmoil::sim_elapsed().unwrap_or_default() > give_up {
                    return Err(format!("node {i} did not answer key {key} after the heal").into());
                }
                let id = history.invoke(thread, &key, Op::Get);
                match crate::http::request(
                    &host(i),
                    "GET",
                    &format!("/v1/kv/{key}"),
                    vec![],
                    Duration::from_secs(5),
                )
                .await
                {
                    Ok(r) if r.status == 200 => {
                        history.ok(id, Ret::GetOk(json_str(&r.body, &["value"])), None);
                        break;
                    }
                    Ok(r) if r.status == 404 => {
                        history.ok(id, Ret::GetOk(None), None);
                        break;
                    }
                    other => history.unknown(id, why_unknown(other)),
                }
                thread += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Ok(())
}
