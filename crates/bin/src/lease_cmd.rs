//! `meridian lease grant|revoke|ttl|list|keep-alive`: leases through `/v1/leases`.
//!
//! Ids print in hexadecimal, as `etcdctl` prints them; both forms are accepted (`0x...` or
//! decimal). A key is attached with `meridian kv put KEY VALUE --lease ID`.

use crate::http_api::HttpApi;
use crate::kv_cmd::{Output, Target};
use anyhow::Context;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(clap::Args)]
pub struct LeaseArgs {
    #[command(subcommand)]
    cmd: LeaseCmd,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Subcommand)]
enum LeaseCmd {
    /// Grant a lease of TTL seconds (at least 2); prints its id.
    Grant {
        ttl: i64,
        /// Ask for this id [default: the cluster picks one].
        #[arg(long, value_parser = parse_id)]
        id: Option<i64>,
    },
    /// Revoke a lease: its keys are deleted when this returns.
    Revoke {
        #[arg(value_parser = parse_id)]
        id: i64,
    },
    /// Show a lease's time to live (and its keys with --keys).
    Ttl {
        #[arg(value_parser = parse_id)]
        id: i64,
        #[arg(long)]
        keys: bool,
    },
    /// List the live leases.
    List,
    /// Keep a lease alive: renew it every third of its TTL until Ctrl-C (or once with --once).
    KeepAlive {
        #[arg(value_parser = parse_id)]
        id: i64,
        #[arg(long)]
        once: bool,
    },
}

/// A lease id: `0x` hexadecimal (as printed) or decimal.
pub fn parse_id(s: &str) -> Result<i64, String> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("lease id {s:?} is neither 0x-hexadecimal nor decimal"))
}

fn hex(id: i64) -> String {
    format!("{id:#x}")
}

pub async fn run(a: LeaseArgs) -> anyhow::Result<()> {
    let api = HttpApi::new(a.target.endpoints)?;
    let out = a.target.output;
    let print = |v: &Value, text: String| match out {
        Output::Json => println!("{v}"),
        Output::Text => println!("{text}"),
    };
    let post = reqwest::Method::POST;
    let no_wait = Duration::ZERO;
    match a.cmd {
        LeaseCmd::Grant { ttl, id } => {
            let body = json!({ "ttl": ttl, "id": id.unwrap_or(0) });
            let v = api
                .call(post, &["v1", "leases"], &[], Some(&body), no_wait)
                .await?;
            let id = v["id"].as_i64().context("grant answer without id")?;
            print(
                &v,
                format!("lease {} granted with TTL({}s)", hex(id), v["ttl"]),
            );
        }
        LeaseCmd::Revoke { id } => {
            let ids = id.to_string();
            let del = reqwest::Method::DELETE;
            let v = api
                .call(del, &["v1", "leases", &ids], &[], None, no_wait)
                .await?;
            print(&v, format!("lease {} revoked", hex(id)));
        }
        LeaseCmd::Ttl { id, keys } => {
            let ids = id.to_string();
            let q = [("keys", keys.to_string())];
            let get = reqwest::Method::GET;
            let v = api
                .call(get, &["v1", "leases", &ids], &q, None, no_wait)
                .await?;
            let mut text = format!(
                "lease {} granted with TTL({}s), remaining({}s)",
                hex(id),
                v["granted_ttl"],
                v["ttl"]
            );
            if keys {
                let names: Vec<&str> = v["keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                text.push_str(&format!(", attached keys({})", names.join(", ")));
            }
            print(&v, text);
        }
        LeaseCmd::List => {
            let get = reqwest::Method::GET;
            let v = api.call(get, &["v1", "leases"], &[], None, no_wait).await?;
            let ids: Vec<i64> = v["leases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect();
            let mut text = format!("found {} leases", ids.len());
            for id in ids {
                text.push('\n');
                text.push_str(&hex(id));
            }
            print(&v, text);
        }
        LeaseCmd::KeepAlive { id, once } => {
            let ids = id.to_string();
            let path = ["v1", "leases", ids.as_str(), "keepalive"];
            loop {
                let v = api.call(post.clone(), &path, &[], None, no_wait).await?;
                let ttl = v["ttl"].as_i64().context("keep-alive answer without ttl")?;
                print(&v, format!("lease {} keepalived with TTL({ttl})", hex(id)));
                if once {
                    break;
                }
                // Renew at a third of the TTL, as etcd's client does.
                let pause = Duration::from_millis((ttl.max(1) as u64) * 1000 / 3);
                tokio::time::sleep(pause).await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_in_both_forms_and_print_in_hex() {
        assert_eq!(parse_id("0x2a"), Ok(42));
        assert_eq!(parse_id("42"), Ok(42));
        assert!(parse_id("0xzz").is_err() && parse_id("").is_err());
        assert_eq!(hex(42), "0x2a");
    }
}
