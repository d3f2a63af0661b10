//! `meridian stream create|list|info|delete|publish|read|follow|groups`: event streams through
//! `/v1/streams`.

use crate::http_api::HttpApi;
use crate::kv_cmd::{Output, Target};
use anyhow::Context;
use serde_json::{Value, json};
use std::io::BufRead;
use std::time::Duration;

/// Messages sent per request when publishing lines from stdin.
const STDIN_BATCH: usize = 500;
/// How long one poll of `follow` waits for a message.
const FOLLOW_WAIT_MS: u64 = 10_000;

#[derive(clap::Args)]
pub struct StreamArgs {
    #[command(subcommand)]
    cmd: StreamCmd,
    #[command(flatten)]
    target: Target,
}

/// Where a read starts.
#[derive(clap::Args, Clone, Default)]
struct FromArgs {
    /// At this offset.
    #[arg(long, conflicts_with_all = ["time_ms", "from"])]
    offset: Option<u64>,
    /// At the first message stamped at or after this time (ms since the epoch).
    #[arg(long, conflicts_with = "from")]
    time_ms: Option<u64>,
    /// `earliest` (the default) or `latest` (only new messages).
    #[arg(long)]
    from: Option<String>,
    /// Start at this consumer group's committed offset.
    #[arg(long)]
    group: Option<String>,
}

#[derive(clap::Subcommand)]
enum StreamCmd {
    /// Create a stream; each partition is its own replicated range.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// What to keep: an age (7d, 12h), a size (10GB) and/or a count (1M-msgs),
        /// comma-separated [default: everything].
        #[arg(long, default_value = "")]
        retention: String,
        /// Place the partitions under the placement rule of this prefix.
        #[arg(long)]
        placement: Option<String>,
        /// Put every partition in the key-value range holding this key.
        #[arg(long)]
        colocate: Option<String>,
    },
    /// List the streams.
    List,
    /// Show a stream's partitions: offsets, size, consumer groups.
    Info { name: String },
    /// Delete a stream and its messages.
    Delete { name: String },
    /// Publish VALUE, or each line of stdin as a message; prints partition and offset.
    Publish {
        name: String,
        value: Option<String>,
        /// Picks the partition (the same key, the same partition).
        #[arg(long)]
        key: Option<String>,
        /// Publish to this partition.
        #[arg(long)]
        partition: Option<u32>,
        /// A repeat of this id within the dedup window answers the first offset.
        #[arg(long)]
        dedup_id: Option<String>,
        /// A header `name=value` (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
    },
    /// Print messages of one partition.
    Read {
        name: String,
        #[arg(long, default_value_t = 0)]
        partition: u32,
        #[command(flatten)]
        from: FromArgs,
        /// At most this many messages.
        #[arg(long, default_value_t = 100)]
        max: u32,
        /// Wait up to this long for a message when there is none.
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
    },
    /// Print messages of one partition as they arrive (Ctrl-C stops).
    Follow {
        name: String,
        #[arg(long, default_value_t = 0)]
        partition: u32,
        #[command(flatten)]
        from: FromArgs,
    },
    /// Show a consumer group: members, their partitions, committed offsets and lag.
    Groups { name: String, group: String },
}

pub async fn run(a: StreamArgs) -> anyhow::Result<()> {
    let c = Caller {
        api: HttpApi::new(a.target.endpoints)?,
    };
    let out = a.target.output;
    match a.cmd {
        StreamCmd::Create {
            name,
            partitions,
            retention,
            placement,
            colocate,
        } => {
            let body = json!({"name": name, "partitions": partitions, "retention": retention,
                "placement": placement, "colocate": colocate});
            let v = c.call(reqwest::Method::POST, &[], &[], Some(body)).await?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Text => println!(
                    "created stream {name} with {partitions} partition(s) in ranges {}",
                    v["ranges"]
                ),
            }
        }
        StreamCmd::List => {
            let v = c.call(reqwest::Method::GET, &[], &[], None).await?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Text => {
                    println!("{:<24} {:>10}  RANGES", "STREAM", "PARTITIONS");
                    for s in v["streams"].as_array().into_iter().flatten() {
                        println!(
                            "{:<24} {:>10}  {}",
                            s["name"].as_str().unwrap_or(""),
                            s["partitions"],
                            s["ranges"]
                        );
                    }
                }
            }
        }
        StreamCmd::Info { name } => {
            let v = c.call(reqwest::Method::GET, &[&name], &[], None).await?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Text => {
                    println!(
                        "{:>9} {:>6} {:>12} {:>12} {:>12}  GROUPS (committed)",
                        "PARTITION", "RANGE", "FIRST", "END", "BYTES"
                    );
                    for p in v["partitions"].as_array().into_iter().flatten() {
                        println!(
                            "{:>9} {:>6} {:>12} {:>12} {:>12}  {}",
                            p["partition"],
                            p["range"],
                            p["first_offset"],
                            p["end_offset"],
                            p["bytes"],
                            p["commits"]
                        );
                    }
                }
            }
        }
        StreamCmd::Delete { name } => {
            let v = c.call(reqwest::Method::DELETE, &[&name], &[], None).await?;
            match (out, v["deleted"] == true) {
                (Output::Json, _) => println!("{v}"),
                (Output::Text, true) => println!("deleted"),
                (Output::Text, false) => println!("no stream named {name:?}"),
            }
        }
        StreamCmd::Publish {
            name,
            value,
            key,
            partition,
            dedup_id,
            headers,
        } => {
            let mut hs = serde_json::Map::new();
            for h in &headers {
                let (k, v) = h
                    .split_once('=')
                    .with_context(|| format!("header {h:?} is not name=value"))?;
                hs.insert(k.to_string(), Value::String(v.to_string()));
            }
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(p) = partition {
                q.push(("partition", p.to_string()));
            }
            let one = |value: String| json!({"key": key, "value": value, "headers": hs, "dedup_id": dedup_id});
            let path = [name.as_str(), "messages"];
            match value {
                Some(v) => {
                    let r = c
                        .call(reqwest::Method::POST, &path, &q, Some(one(v)))
                        .await?;
                    print_acks(out, &r)?;
                }
                None => {
                    let stdin = std::io::stdin();
                    let mut batch = Vec::new();
                    for line in stdin.lock().lines() {
                        batch.push(one(line.context("read stdin")?));
                        if batch.len() == STDIN_BATCH {
                            let body = json!({ "messages": std::mem::take(&mut batch) });
                            let r = c.call(reqwest::Method::POST, &path, &q, Some(body)).await?;
                            print_acks(out, &r)?;
                        }
                    }
                    if !batch.is_empty() {
                        let body = json!({ "messages": batch });
                        let r = c.call(reqwest::Method::POST, &path, &q, Some(body)).await?;
                        print_acks(out, &r)?;
                    }
                }
            }
        }
        StreamCmd::Read {
            name,
            partition,
            from,
            max,
            wait_ms,
        } => {
            let mut q = from_query(&from);
            q.push(("max", max.to_string()));
            q.push(("wait_ms", wait_ms.to_string()));
            let p = partition.to_string();
            let v = c
                .call(
                    reqwest::Method::GET,
                    &[&name, "partitions", &p, "messages"],
                    &q,
                    None,
                )
                .await?;
            print_messages(out, partition, &v)?;
        }
        StreamCmd::Follow {
            name,
            partition,
            from,
        } => {
            let p = partition.to_string();
            let mut q = from_query(&from);
            loop {
                let mut qq = q.clone();
                qq.push(("wait_ms", FOLLOW_WAIT_MS.to_string()));
                let v = c
                    .call(
                        reqwest::Method::GET,
                        &[&name, "partitions", &p, "messages"],
                        &qq,
                        None,
                    )
                    .await?;
                print_messages(out, partition, &v)?;
                let next = v["next_offset"]
                    .as_u64()
                    .context("read answer without next_offset")?;
                q = vec![("offset", next.to_string())];
            }
        }
        StreamCmd::Groups { name, group } => {
            let v = c
                .call(reqwest::Method::GET, &[&name, "groups", &group], &[], None)
                .await?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Text => {
                    println!(
                        "group {group} of stream {name}: generation {}",
                        v["generation"]
                    );
                    for (m, ps) in v["members"].as_object().into_iter().flatten() {
                        println!("  member {m}: partitions {ps}");
                    }
                    println!(
                        "{:>9} {:>12} {:>12} {:>10}",
                        "PARTITION", "COMMITTED", "END", "LAG"
                    );
                    for p in v["partitions"].as_array().into_iter().flatten() {
                        let committed = match &p[1] {
                            Value::Null => "-".to_string(),
                            c => c.to_string(),
                        };
                        println!("{:>9} {:>12} {:>12} {:>10}", p[0], committed, p[2], p[3]);
                    }
                    println!("total lag {}", v["lag"]);
                }
            }
        }
    }
    Ok(())
}

fn from_query(f: &FromArgs) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(o) = f.offset {
        q.push(("offset", o.to_string()));
    }
    if let Some(t) = f.time_ms {
        q.push(("time_ms", t.to_string()));
    }
    if let Some(s) = &f.from {
        q.push(("from", s.clone()));
    }
    if let Some(g) = &f.group {
        q.push(("group", g.clone()));
    }
    q
}

fn print_acks(out: Output, v: &Value) -> anyhow::Result<()> {
    match out {
        Output::Json => println!("{v}"),
        Output::Text => {
            for a in v["acks"].as_array().into_iter().flatten() {
                let dup = if a["duplicate"] == true {
                    " (duplicate)"
                } else {
                    ""
                };
                println!("partition {} offset {}{dup}", a["partition"], a["offset"]);
            }
        }
    }
    Ok(())
}

fn print_messages(out: Output, partition: u32, v: &Value) -> anyhow::Result<()> {
    for m in v["messages"].as_array().into_iter().flatten() {
        match out {
            Output::Json => println!("{m}"),
            Output::Text => println!(
                "{partition}/{}\t{}\t{}\t{}",
                m["offset"],
                m["timestamp_ms"],
                m["key"].as_str().unwrap_or("-"),
                m["value"].as_str().unwrap_or("")
            ),
        }
    }
    Ok(())
}

/// The stream routes (`/v1/streams/...`) of [`HttpApi`].
struct Caller {
    api: HttpApi,
}

impl Caller {
    /// One call; a long poll (`wait_ms`) may hold it up to [`FOLLOW_WAIT_MS`] on top.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &[&str],
        q: &[(&str, String)],
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let segs: Vec<&str> = ["v1", "streams"].iter().chain(path).copied().collect();
        let wait = Duration::from_millis(FOLLOW_WAIT_MS);
        self.api.call(method, &segs, q, body.as_ref(), wait).await
    }
}
