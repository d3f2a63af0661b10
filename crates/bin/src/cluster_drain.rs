//! `meridian cluster drain|remove`: take a node out of service through the HTTP API.

use crate::http_api::HttpApi;
use anyhow::bail;
use meridian_node::DrainStatus;
use std::time::Duration;

#[derive(clap::Args)]
pub struct DrainArgs {
    /// The node to drain (its id).
    node: u64,
    #[arg(
        long,
        env = "MERIDIAN_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
    /// Start draining and return at once.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
}

#[derive(clap::Args)]
pub struct RemoveArgs {
    /// The node to remove (its id).
    node: u64,
    #[arg(
        long,
        env = "MERIDIAN_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
}

/// Pause between progress polls.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// One call to `/v1/cluster/nodes/<node>[/drain]`.
async fn call(
    endpoints: &[String],
    method: reqwest::Method,
    segments: &[&str],
) -> anyhow::Result<serde_json::Value> {
    let api = HttpApi::new(endpoints.to_vec())?;
    let segs: Vec<&str> = ["v1", "cluster", "nodes"]
        .iter()
        .chain(segments)
        .copied()
        .collect();
    api.call(method, &segs, &[], None, Duration::ZERO).await
}

fn line(s: &DrainStatus) -> String {
    format!(
        "node {} ({}): {} range replica(s), leads {} group(s){}",
        s.node,
        s.state,
        s.replicas,
        s.leaders,
        if s.meta_voter {
            ", votes in the meta group"
        } else {
            ""
        }
    )
}

pub async fn drain(a: DrainArgs) -> anyhow::Result<()> {
    let node = a.node.to_string();
    let path = [node.as_str(), "drain"];
    let deadline = std::time::Instant::now() + Duration::from_secs(a.timeout_secs);
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    loop {
        // Draining is idempotent: every poll re-asserts it and reports progress.
        let st: DrainStatus =
            serde_json::from_value(call(&a.endpoints, reqwest::Method::POST, &path).await?)?;
        if a.no_wait || st.done {
            bar.finish_and_clear();
            println!("{}", line(&st));
            if st.done {
                println!(
                    "node {} holds nothing; `meridian cluster remove {}` removes it",
                    a.node, a.node
                );
            }
            return Ok(());
        }
        bar.set_message(line(&st));
        bar.tick();
        if std::time::Instant::now() >= deadline {
            bar.finish_and_clear();
            bail!(
                "node {} not drained after {}s: {}",
                a.node,
                a.timeout_secs,
                line(&st)
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

pub async fn remove(a: RemoveArgs) -> anyhow::Result<()> {
    call(
        &a.endpoints,
        reqwest::Method::DELETE,
        &[&a.node.to_string()],
    )
    .await?;
    println!("removed node {}", a.node);
    Ok(())
}
