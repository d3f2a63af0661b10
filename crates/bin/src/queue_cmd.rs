//! `meridian queue create|list|delete|stats|send|receive|ack|nack|extend`: work queues through
//! `/v1/queues`.

use crate::http_api::HttpApi;
use crate::kv_cmd::{Output, Target};
use anyhow::bail;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(clap::Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    cmd: QueueCmd,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Subcommand)]
enum QueueCmd {
    /// Create a queue (the same configuration again is no change).
    Create {
        name: String,
        /// How long a delivered message stays invisible before it is delivered again.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        visibility_timeout: Duration,
        /// Deliveries before a message is dead (moved to the dead-letter queue).
        #[arg(long, default_value_t = 5)]
        max_deliveries: u32,
        /// Where dead messages go (an existing queue).
        #[arg(long)]
        dead_letter: Option<String>,
        /// Delay of a message sent without one.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        delay: Duration,
        /// Put the queue in the range holding this key, so a transaction can write both.
        #[arg(long)]
        colocate: Option<String>,
    },
    /// List the queues.
    List,
    /// Delete a queue and its messages.
    Delete { name: String },
    /// Show a queue's depth and totals.
    Stats { name: String },
    /// Send one message.
    Send {
        name: String,
        body: String,
        /// Messages of one group are delivered one at a time, in order.
        #[arg(long)]
        group: Option<String>,
        /// A second send with this id within the window is a no-op returning the first id.
        #[arg(long)]
        dedup_id: Option<String>,
        #[arg(long, value_parser = parse_duration)]
        delay: Option<Duration>,
        /// An attribute `name=value` (repeatable).
        #[arg(long = "attr", value_parser = parse_attr)]
        attrs: Vec<(String, String)>,
    },
    /// Receive up to MAX messages, waiting up to WAIT for the first.
    Receive {
        name: String,
        #[arg(long, default_value_t = 1)]
        max: u32,
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        wait: Duration,
        /// This delivery's visibility timeout [default: the queue's].
        #[arg(long, value_parser = parse_duration)]
        visibility_timeout: Option<Duration>,
    },
    /// Ack deliveries by receipt.
    Ack {
        name: String,
        #[arg(required = true)]
        receipts: Vec<String>,
    },
    /// Give a delivery up: ready again after DELAY, or dead after its last delivery.
    Nack {
        name: String,
        receipt: String,
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        delay: Duration,
        /// Why (kept as the message's last error).
        #[arg(long, default_value = "")]
        error: String,
    },
    /// Keep a delivery invisible for TIMEOUT from now.
    Extend {
        name: String,
        receipt: String,
        #[arg(long, value_parser = parse_duration)]
        timeout: Duration,
    },
}

/// `500ms`, `30s`, `5m`, `2h`, `7d` or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("bad duration {s:?}; expected e.g. 500ms, 30s, 5m, 2h"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "bad duration {s:?}; the unit is one of ms, s, m, h, d"
            ));
        }
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

fn parse_attr(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("bad attribute {s:?}; expected name=value"))
}

fn ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

pub async fn run(a: QueueArgs) -> anyhow::Result<()> {
    let api = HttpApi::new(a.target.endpoints)?;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let (v, text) = match a.cmd {
        QueueCmd::Create {
            name,
            visibility_timeout,
            max_deliveries,
            dead_letter,
            delay,
            colocate,
        } => {
            let body = json!({
                "visibility_timeout_ms": ms(visibility_timeout),
                "max_deliveries": max_deliveries,
                "dead_letter": dead_letter,
                "delay_ms": ms(delay),
                "colocate": colocate,
            });
            let v = call(&api, reqwest::Method::PUT, &[&name], Some(body), None).await?;
            let text = format!("created queue {name} in range {}", v["range"]);
            (v, text)
        }
        QueueCmd::List => {
            let v = call(&api, get, &[], None, None).await?;
            let mut text = String::from("NAME\tRANGE\tVISIBILITY_MS\tMAX_DELIVERIES\tDEAD_LETTER");
            for q in v["queues"].as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "\n{}\t{}\t{}\t{}\t{}",
                    q["name"].as_str().unwrap_or(""),
                    q["range"],
                    q["config"]["visibility_timeout_ms"],
                    q["config"]["max_deliveries"],
                    q["config"]["dead_letter"].as_str().unwrap_or("-"),
                ));
            }
            (v, text)
        }
        QueueCmd::Delete { name } => {
            let v = call(&api, reqwest::Method::DELETE, &[&name], None, None).await?;
            let text = if v["deleted"] == true {
                format!("deleted queue {name}")
            } else {
                format!("no queue named {name}")
            };
            (v, text)
        }
        QueueCmd::Stats { name } => {
            let v = call(&api, get, &[&name, "stats"], None, None).await?;
            let c = &v["counters"];
            let text = format!(
                "ready {} (delayed {})  in flight {}  dead {}\nsent {}  delivered {}  redelivered {}  acked {}  nacked {}  expired {}  dead-lettered {}",
                v["ready"],
                v["delayed"],
                v["in_flight"],
                v["dead"],
                c["sent"],
                c["delivered"],
                c["redelivered"],
                c["acked"],
                c["nacked"],
                c["expired"],
                c["dead_lettered"]
            );
            (v, text)
        }
        QueueCmd::Send {
            name,
            body,
            group,
            dedup_id,
            delay,
            attrs,
        } => {
            let attributes: serde_json::Map<String, Value> = attrs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let msg = json!({
                "body": body,
                "group": group,
                "dedup_id": dedup_id,
                "delay_ms": delay.map(ms),
                "attributes": attributes,
            });
            let v = call(&api, post, &[&name, "messages"], Some(msg), None).await?;
            let m = &v["messages"][0];
            let text = if m["duplicate"] == true {
                format!("duplicate of message {}", m["id"])
            } else {
                format!("sent message {}", m["id"])
            };
            (v, text)
        }
        QueueCmd::Receive {
            name,
            max,
            wait,
            visibility_timeout,
        } => {
            let mut query = vec![("max", max.to_string()), ("wait_ms", ms(wait).to_string())];
            if let Some(vt) = visibility_timeout {
                query.push(("visibility_timeout_ms", ms(vt).to_string()));
            }
            let v = call(&api, post, &[&name, "receive"], None, Some((&query, wait))).await?;
            let mut text = String::new();
            for m in v["messages"].as_array().into_iter().flatten() {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&format!(
                    "{}\tdelivery {}\t{}",
                    m["receipt"].as_str().unwrap_or(""),
                    m["deliveries"],
                    m["body"].as_str().unwrap_or("")
                ));
            }
            if text.is_empty() {
                text = "no message".into();
            }
            (v, text)
        }
        QueueCmd::Ack { name, receipts } => {
            let body = json!({ "receipts": receipts });
            let v = call(&api, post, &[&name, "ack"], Some(body), None).await?;
            let mut text = String::new();
            let mut failed = false;
            for r in v["results"].as_array().into_iter().flatten() {
                let what = match (&r["acked"], &r["error"]) {
                    (Value::Bool(true), _) => "acked".to_string(),
                    (Value::Bool(false), _) => "already gone".to_string(),
                    (_, e) => {
                        failed = true;
                        format!(
                            "{}: {}",
                            e["code"].as_str().unwrap_or("error"),
                            e["message"].as_str().unwrap_or("")
                        )
                    }
                };
                text.push_str(&format!(
                    "{}\t{what}\n",
                    r["receipt"].as_str().unwrap_or("")
                ));
            }
            if failed && a.target.output == Output::Text {
                print!("{text}");
                bail!("some receipts were not acked");
            }
            (v, text.trim_end().to_string())
        }
        QueueCmd::Nack {
            name,
            receipt,
            delay,
            error,
        } => {
            let body = json!({ "receipt": receipt, "delay_ms": ms(delay), "error": error });
            let v = call(&api, post, &[&name, "nack"], Some(body), None).await?;
            (v, format!("nacked {receipt}"))
        }
        QueueCmd::Extend {
            name,
            receipt,
            timeout,
        } => {
            let body = json!({ "receipt": receipt, "timeout_ms": ms(timeout) });
            let v = call(&api, post, &[&name, "extend"], Some(body), None).await?;
            let text = format!("{receipt} invisible until {} ms", v["deadline_ms"]);
            (v, text)
        }
    };
    match a.target.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Output::Text => println!("{text}"),
    }
    Ok(())
}

/// One call to `/v1/queues/<segments...>`; `query` carries a query string and how long the
/// server may wait (a receive's long poll).
async fn call(
    api: &HttpApi,
    method: reqwest::Method,
    segments: &[&str],
    body: Option<Value>,
    query: Option<(&[(&str, String)], Duration)>,
) -> anyhow::Result<Value> {
    let segs: Vec<&str> = ["v1", "queues"].iter().chain(segments).copied().collect();
    let (q, wait) = query.unwrap_or((&[], Duration::ZERO));
    api.call(method, &segs, q, body.as_ref(), wait).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "s", "1.5s", "3x", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
