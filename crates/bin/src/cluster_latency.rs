//! `meridian cluster latency`: the round-trip matrix of `GET /v1/cluster`, as a region × region
//! table (mean of the EWMAs between the nodes of each pair of regions, worst p99) and a node ×
//! node table.

use meridian_node::{ClusterView, LatencyView};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// One cell of the region × region table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegionLatency {
    pub from: String,
    pub to: String,
    /// Mean of the EWMAs of every measured node pair from `from` to `to`.
    pub mean_ewma_ms: f64,
    /// Largest p99 among those node pairs.
    pub worst_p99_ms: f64,
    /// How many node pairs were measured.
    pub pairs: usize,
}

/// What `--output json` prints.
#[derive(Serialize)]
struct LatencyReport<'a> {
    answered_by: u64,
    regions: Vec<RegionLatency>,
    nodes: &'a [LatencyView],
}

/// The region × region cells that have measurements, in region order.
pub fn region_table(v: &ClusterView) -> Vec<RegionLatency> {
    let region: BTreeMap<u64, &str> = v.nodes.iter().map(|n| (n.id, n.region.as_str())).collect();
    let mut cells: BTreeMap<(&str, &str), (f64, f64, usize)> = BTreeMap::new();
    for e in &v.latency {
        let (Some(a), Some(b)) = (region.get(&e.from), region.get(&e.to)) else {
            continue;
        };
        let c = cells.entry((a, b)).or_insert((0.0, 0.0, 0));
        c.0 += e.ewma_ms;
        c.1 = c.1.max(e.p99_ms);
        c.2 += 1;
    }
    cells
        .into_iter()
        .map(|((a, b), (sum, worst, n))| RegionLatency {
            from: a.to_string(),
            to: b.to_string(),
            mean_ewma_ms: sum / n as f64,
            worst_p99_ms: worst,
            pairs: n,
        })
        .collect()
}

pub fn render_json(v: &ClusterView) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&LatencyReport {
        answered_by: v.node_id,
        regions: region_table(v),
        nodes: &v.latency,
    })?)
}

pub fn render(v: &ClusterView) -> String {
    let mut s = String::new();
    if v.latency.is_empty() {
        let _ = writeln!(
            s,
            "no round trips measured yet (node {} probes its peers every second)",
            v.node_id
        );
        return s;
    }
    let cells = region_table(v);
    let regions: BTreeSet<&str> = v.nodes.iter().map(|n| n.region.as_str()).collect();
    let w = regions.iter().map(|r| r.len()).max().unwrap_or(4).max(15);
    let _ = writeln!(
        s,
        "REGIONS: round trip, mean EWMA / worst p99 in ms (row: from, column: to; as node {} knows it)",
        v.node_id
    );
    let _ = write!(s, "{:<w$}", "");
    for r in &regions {
        let _ = write!(s, " {r:>w$}");
    }
    let _ = writeln!(s);
    for a in &regions {
        let _ = write!(s, "{a:<w$}");
        for b in &regions {
            let cell = cells
                .iter()
                .find(|c| c.from == *a && c.to == *b)
                .map(|c| format!("{:.1} / {:.1}", c.mean_ewma_ms, c.worst_p99_ms))
                .unwrap_or_else(|| "-".into());
            let _ = write!(s, " {cell:>w$}");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "\nNODES: round trip EWMA in ms (row: from, column: to)");
    let ids: Vec<u64> = v.nodes.iter().map(|n| n.id).collect();
    let label = |id: u64| {
        let n = v.nodes.iter().find(|n| n.id == id);
        format!("{id} {}", n.map_or("?", |n| n.region.as_str()))
    };
    let lw = ids
        .iter()
        .map(|i| label(*i).len())
        .max()
        .unwrap_or(4)
        .max(8);
    let _ = write!(s, "{:<lw$}", "");
    for id in &ids {
        let _ = write!(s, " {:>8}", id);
    }
    let _ = writeln!(s);
    for a in &ids {
        let _ = write!(s, "{:<lw$}", label(*a));
        for b in &ids {
            let cell = v
                .latency
                .iter()
                .find(|e| e.from == *a && e.to == *b)
                .map(|e| format!("{:.1}", e.ewma_ms))
                .unwrap_or_else(|| "-".into());
            let _ = write!(s, " {cell:>8}");
        }
        let _ = writeln!(s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_node::NodeView;

    fn node(id: u64, region: &str) -> NodeView {
        NodeView {
            id,
            addr: format!("127.0.0.1:{}", 4000 + id),
            region: region.into(),
            zone: "a".into(),
            state: "active".into(),
            healthy: true,
        }
    }

    fn edge(from: u64, to: u64, ewma_ms: f64, p99_ms: f64) -> LatencyView {
        LatencyView {
            from,
            to,
            ewma_ms,
            p99_ms,
            samples: 10,
            age_ms: 0,
        }
    }

    #[test]
    fn averages_region_pairs_and_keeps_the_worst_p99() {
        let v = ClusterView {
            cluster_id: 1,
            node_id: 1,
            nodes: vec![node(1, "us-east"), node(2, "eu-west"), node(3, "eu-west")],
            ranges: vec![],
            latency: vec![
                edge(1, 2, 70.0, 80.0),
                edge(1, 3, 80.0, 95.0),
                edge(2, 3, 1.0, 2.0),
                edge(2, 1, 76.0, 77.0),
                edge(9, 1, 5.0, 5.0),
            ],
            placements: vec![],
            placement: vec![],
        };
        let t = region_table(&v);
        let us_eu = t
            .iter()
            .find(|c| c.from == "us-east" && c.to == "eu-west")
            .unwrap();
        assert_eq!(
            (us_eu.mean_ewma_ms, us_eu.worst_p99_ms, us_eu.pairs),
            (75.0, 95.0, 2)
        );
        let eu_eu = t
            .iter()
            .find(|c| c.from == "eu-west" && c.to == "eu-west")
            .unwrap();
        assert_eq!(eu_eu.pairs, 1);
        assert_eq!(t.len(), 3, "node 9 is not in the map: {t:?}");
        let text = render(&v);
        assert!(text.contains("75.0 / 95.0"), "{text}");
        assert!(text.contains("1 us-east"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&render_json(&v).unwrap()).unwrap();
        assert_eq!(json["regions"].as_array().unwrap().len(), 3);
        assert_eq!(json["nodes"].as_array().unwrap().len(), 5);
    }
}
