//! The playground's demo objects: an event stream `demo-events` (3 partitions, kept 1 day) and
//! a work queue `demo-jobs` (30 s visibility, 5 deliveries, then `demo-jobs-dead`). Each stream
//! partition and the queue get one message, so `meridian stream read` (whichever partition) and
//! `meridian queue receive` show something at once.
//! Creating them again (a kept playground restarted) changes nothing.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::time::Duration;

pub const DEMO_STREAM: &str = "demo-events";
/// The demo stream's partitions; the playground's hints name each.
pub const DEMO_PARTITIONS: u32 = 3;
pub const DEMO_QUEUE: &str = "demo-jobs";
pub const DEMO_DEAD_LETTER: &str = "demo-jobs-dead";
/// A file in the data directory saying the demo messages were sent once (a kept playground).
pub const SEEDED_MARK: &str = "demo-seeded";
/// How long the demo objects may take to create (a fresh cluster is still electing leaders).
const SEED_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_EVERY: Duration = Duration::from_millis(300);

/// Creates the demo stream and queue through `addr` and puts one message in each.
pub async fn seed(addr: &str, fresh: bool) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let base = format!("http://{addr}/v1");
    let stream = json!({"name": DEMO_STREAM, "partitions": DEMO_PARTITIONS, "retention": "1d"});
    call(
        &http,
        reqwest::Method::POST,
        &format!("{base}/streams"),
        &stream,
        true,
    )
    .await?;
    let dead = json!({"visibility_timeout_ms": 30_000, "max_deliveries": 5});
    let q = format!("{base}/queues");
    call(
        &http,
        reqwest::Method::PUT,
        &format!("{q}/{DEMO_DEAD_LETTER}"),
        &dead,
        true,
    )
    .await?;
    let jobs = json!({"visibility_timeout_ms": 30_000, "max_deliveries": 5,
        "dead_letter": DEMO_DEAD_LETTER});
    call(
        &http,
        reqwest::Method::PUT,
        &format!("{q}/{DEMO_QUEUE}"),
        &jobs,
        true,
    )
    .await?;
    if fresh {
        for p in 0..DEMO_PARTITIONS {
            // A deduplication id: a retry after a lost answer adds no second copy.
            let msg = json!({"key": "welcome",
                "value": format!("hello from the playground (partition {p})"),
                "dedup_id": format!("playground-welcome-{p}")});
            let url = format!("{base}/streams/{DEMO_STREAM}/messages?partition={p}");
            call(&http, reqwest::Method::POST, &url, &msg, false).await?;
        }
        let job = json!({"body": "resize image 42", "dedup_id": "playground-job"});
        let url = format!("{q}/{DEMO_QUEUE}/messages");
        call(&http, reqwest::Method::POST, &url, &job, false).await?;
    }
    Ok(())
}

/// Sends until the cluster answers (a new cluster answers `unavailable` for a moment); an
/// "already exists" answer counts as done when `exists_ok`.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: &Value,
    exists_ok: bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + SEED_TIMEOUT;
    loop {
        let last = match http.request(method.clone(), url).json(body).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if exists_ok && r.status() == reqwest::StatusCode::CONFLICT => return Ok(()),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                    bail!("{url}: {status}: {text}");
                }
                format!("{status}: {text}")
            }
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(anyhow::anyhow!(last)).with_context(|| format!("{method} {url}"));
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}
