//! `meridian placement set|get|list|delete`: placement rules through `/v1/placement`.
//!
//! The cluster default rule is the empty prefix: `meridian placement set '' --replicas 3 ...`.
//! A rule governs only ranges whose keys all begin with its prefix; ranges do not split on their
//! own yet, so create the cluster with `cluster init --split-at` at the prefixes rules will name.

use crate::http_api::HttpApi;
use crate::kv_cmd::{Output, Target};
use anyhow::Context;
use meridian_node::PlacementView;
use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;

/// Time allowed for one call (a rule change waits for the meta group to commit it).

#[derive(clap::Args)]
pub struct PlacementArgs {
    #[command(subcommand)]
    cmd: PlacementCmd,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Subcommand)]
enum PlacementCmd {
    /// Set the rule for keys starting with PREFIX ('' is the cluster default); replaces any rule
    /// for the same prefix. Refused with what is missing if the cluster's nodes cannot meet it.
    Set {
        prefix: String,
        /// Voters per range: 3 or 5.
        #[arg(long)]
        replicas: u8,
        /// Regions replicas may live in (comma-separated) [default: any].
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        /// Zones replicas may live in, `region/zone` or `zone` (comma-separated) [default: any].
        #[arg(long, value_delimiter = ',')]
        zones: Vec<String>,
        /// The failure a range must survive with a majority left.
        #[arg(long, value_enum, default_value_t = SurvivalArg::Zone)]
        survival: SurvivalArg,
        /// Where leaders should live, the home region first, then the failover order.
        #[arg(long, value_delimiter = ',')]
        leader_regions: Vec<String>,
    },
    /// Show the rule for exactly PREFIX ('' shows the default).
    Get { prefix: String },
    /// Show every rule and the ranges each governs.
    List,
    /// Delete the rule for PREFIX; its ranges fall back to the next shorter prefix's rule.
    Delete { prefix: String },
}

/// `--survival`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SurvivalArg {
    /// Losing any one zone leaves a majority.
    Zone,
    /// Losing any one region leaves a majority.
    Region,
}

#[derive(Serialize)]
struct RuleBody<'a> {
    replicas: u8,
    regions: &'a [String],
    zones: &'a [String],
    survival: &'static str,
    leader_regions: &'a [String],
}

pub async fn run(a: PlacementArgs) -> anyhow::Result<()> {
    let api = HttpApi::new(a.target.endpoints)?;
    match a.cmd {
        PlacementCmd::Set {
            prefix,
            replicas,
            regions,
            zones,
            survival,
            leader_regions,
        } => {
            let body = serde_json::to_value(RuleBody {
                replicas,
                regions: &regions,
                zones: &zones,
                survival: match survival {
                    SurvivalArg::Zone => "zone",
                    SurvivalArg::Region => "region",
                },
                leader_regions: &leader_regions,
            })?;
            let v = call(&api, reqwest::Method::PUT, Some(&prefix), Some(body)).await?;
            print_rule(a.target.output, &v)
        }
        PlacementCmd::Get { prefix } => {
            let v = call(&api, reqwest::Method::GET, Some(&prefix), None).await?;
            print_rule(a.target.output, &v)
        }
        PlacementCmd::List => {
            let v = call(&api, reqwest::Method::GET, None, None).await?;
            match a.target.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Text => {
                    let rules: Vec<PlacementView> =
                        serde_json::from_value(v["rules"].clone()).context("decode the rules")?;
                    print!("{}", render_table(&rules));
                }
            }
            Ok(())
        }
        PlacementCmd::Delete { prefix } => {
            let v = call(&api, reqwest::Method::DELETE, Some(&prefix), None).await?;
            match a.target.output {
                Output::Json => println!("{v}"),
                Output::Text if v["deleted"] == true => println!("deleted"),
                Output::Text => println!("no rule for prefix {prefix:?}"),
            }
            Ok(())
        }
    }
}

fn print_rule(out: Output, v: &serde_json::Value) -> anyhow::Result<()> {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(v)?),
        Output::Text => {
            let r: PlacementView = serde_json::from_value(v.clone()).context("decode the rule")?;
            print!("{}", render_rule(&r));
        }
    }
    Ok(())
}

/// One call to `/v1/placement` (no prefix) or `/v1/placement/<prefix, one segment>`.
async fn call(
    api: &HttpApi,
    method: reqwest::Method,
    prefix: Option<&str>,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let mut segs = vec!["v1", "placement"];
    // One segment even if the prefix holds '/': it is sent as %2F.
    segs.extend(prefix);
    api.call(method, &segs, &[], body.as_ref(), Duration::ZERO)
        .await
}

fn show_prefix(p: &str) -> String {
    if p.is_empty() {
        "(default)".into()
    } else {
        format!("{p:?}")
    }
}

fn show_list(v: &[String], empty: &str) -> String {
    if v.is_empty() {
        empty.into()
    } else {
        v.join(",")
    }
}

fn show_ranges(v: &[u64]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One rule, one field a line.
pub fn render_rule(r: &PlacementView) -> String {
    let mut s = String::new();
    let implicit = if r.implicit {
        " (built in: no rule is stored for the empty prefix)"
    } else {
        ""
    };
    let _ = writeln!(s, "prefix          {}{implicit}", show_prefix(&r.prefix));
    let _ = writeln!(s, "replicas        {}", r.replicas);
    let _ = writeln!(s, "survival        {}", r.survival);
    let _ = writeln!(s, "regions         {}", show_list(&r.regions, "any"));
    let _ = writeln!(s, "zones           {}", show_list(&r.zones, "any"));
    let _ = writeln!(
        s,
        "leader regions  {}",
        show_list(&r.leader_regions, "no preference")
    );
    let _ = writeln!(s, "governs ranges  {}", show_ranges(&r.ranges));
    if r.ranges.is_empty() {
        let _ = writeln!(
            s,
            "note: no range lies wholly under this prefix; ranges do not split on their own yet, \
             so create the cluster with `cluster init --split-at` at this prefix"
        );
    }
    s
}

/// Every rule as a table.
pub fn render_table(rules: &[PlacementView]) -> String {
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                show_prefix(&r.prefix),
                r.replicas.to_string(),
                r.survival.clone(),
                show_list(&r.regions, "any"),
                show_list(&r.zones, "any"),
                show_list(&r.leader_regions, "-"),
                show_ranges(&r.ranges),
            ]
        })
        .collect();
    crate::status_view::table(
        &[
            "PREFIX",
            "REPLICAS",
            "SURVIVAL",
            "REGIONS",
            "ZONES",
            "LEADER REGIONS",
            "RANGES",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(prefix: &str, ranges: Vec<u64>) -> PlacementView {
        PlacementView {
            prefix: prefix.into(),
            replicas: 3,
            regions: vec!["eu-west".into(), "us-east".into()],
            zones: vec![],
            survival: "region".into(),
            leader_regions: vec!["eu-west".into()],
            ranges,
            implicit: false,
        }
    }

    #[test]
    fn renders_rules_and_tables() {
        let one = render_rule(&view("eu/", vec![2]));
        assert!(one.contains("prefix          \"eu/\"\n"), "{one}");
        assert!(one.contains("regions         eu-west,us-east\n"), "{one}");
        assert!(one.contains("zones           any\n"), "{one}");
        assert!(!one.contains("note:"), "{one}");
        assert!(render_rule(&view("x/", vec![])).contains("--split-at"));
        let t = render_table(&[view("", vec![1, 3]), view("eu/", vec![2])]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[1].starts_with("(default)"), "{t}");
        assert!(lines[2].ends_with(" 2"), "{t}");
    }
}
