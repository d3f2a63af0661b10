//! The picture `meridian cluster status` prints: regions and their nodes (with the replicas and
//! leaderships each holds), the placement rules, and every range with the rule governing it, its
//! replicas and learners by region, and where its leader is.

use crate::placement_cmd::render_table;
use meridian_node::{ClusterView, RangeView};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Left-aligned columns as wide as their widest cell; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut s = String::new();
    let line = |cells: Vec<&str>, s: &mut String| {
        let n = cells.len();
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = widths[i]);
            }
        }
        let _ = writeln!(s, "{}", out.trim_end());
    };
    line(headers.to_vec(), &mut s);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut s);
    }
    s
}

/// Renders the whole view.
pub fn render(v: &ClusterView) -> String {
    let region_of: BTreeMap<u64, &str> =
        v.nodes.iter().map(|n| (n.id, n.region.as_str())).collect();
    let at = |id: u64| match region_of.get(&id) {
        Some(r) => format!("{id}@{r}"),
        None => id.to_string(),
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cluster {:016x} (answered by node {})",
        v.cluster_id, v.node_id
    );

    // Regions → nodes.
    let mut held: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    let mut meta_role: BTreeMap<u64, &str> = BTreeMap::new();
    for r in &v.ranges {
        if r.id == 0 {
            for n in &r.replicas {
                meta_role.insert(*n, "voter");
            }
            if let Some(l) = r.leader {
                meta_role.insert(l, "leader");
            }
            continue;
        }
        for n in &r.replicas {
            held.entry(*n).or_default().0 += 1;
        }
        if let Some(l) = r.leader {
            held.entry(l).or_default().1 += 1;
        }
    }
    let mut by_region: BTreeMap<&str, Vec<&meridian_node::NodeView>> = BTreeMap::new();
    for n in &v.nodes {
        by_region.entry(n.region.as_str()).or_default().push(n);
    }
    let _ = writeln!(s, "\nREGIONS AND NODES");
    let mut rows = Vec::new();
    for (region, nodes) in &by_region {
        for (i, n) in nodes.iter().enumerate() {
            let (replicas, leads) = held.get(&n.id).copied().unwrap_or((0, 0));
            rows.push(vec![
                if i == 0 {
                    region.to_string()
                } else {
                    String::new()
                },
                n.id.to_string(),
                n.zone.clone(),
                n.addr.clone(),
                n.state.clone(),
                if n.healthy { "ok" } else { "unreachable" }.to_string(),
                replicas.to_string(),
                leads.to_string(),
                meta_role.get(&n.id).copied().unwrap_or("-").to_string(),
            ]);
        }
    }
    s.push_str(&table(
        &[
            "REGION", "NODE", "ZONE", "ADDRESS", "STATE", "HEALTH", "REPLICAS", "LEADS", "META",
        ],
        &rows,
    ));

    if !v.placements.is_empty() {
        let _ = writeln!(s, "\nPLACEMENT RULES");
        s.push_str(&render_table(&v.placements));
    }

    let _ = writeln!(s, "\nRANGES");
    let rows: Vec<Vec<String>> = v.ranges.iter().map(|r| range_row(v, r, &at)).collect();
    s.push_str(&table(
        &[
            "RANGE", "START", "END", "RULE", "REPLICAS", "LEARNERS", "LEADER", "TERM", "APPLIED",
            "HEALTH",
        ],
        &rows,
    ));
    if !v.placement.is_empty() {
        let _ = writeln!(s, "\nPLACEMENT (steps under way)");
        let rows: Vec<Vec<String>> = v
            .placement
            .iter()
            .map(|p| {
                let range = if p.range == 0 {
                    "meta".to_string()
                } else {
                    p.range.to_string()
                };
                vec![range, p.step.clone(), p.reason.clone()]
            })
            .collect();
        s.push_str(&table(&["RANGE", "STEP", "WHY"], &rows));
    }
    s
}

fn range_row(v: &ClusterView, r: &RangeView, at: &dyn Fn(u64) -> String) -> Vec<String> {
    let meta = r.id == 0;
    let bound = |k: &str| {
        if meta || k.is_empty() {
            "-".to_string()
        } else {
            format!("{k:?}")
        }
    };
    let rule = match &r.rule {
        None => "-".to_string(),
        Some(p) if p.is_empty() => "(default)".to_string(),
        Some(p) => format!("{p:?}"),
    };
    let join = |ids: &[u64]| ids.iter().map(|n| at(*n)).collect::<Vec<_>>().join(",");
    let learners = if r.learners.is_empty() {
        "-".to_string()
    } else {
        format!("adding {}", join(&r.learners))
    };
    let leader = match (r.leader, &r.leader_region) {
        (None, _) => "-".to_string(),
        (Some(l), Some(region)) => format!("{l}@{region}"),
        (Some(l), None) => at(l),
    };
    let health = match r.leader {
        None => "no leader",
        Some(l) if v.nodes.iter().any(|n| n.id == l && n.healthy) => "ok",
        Some(_) => "leader unreachable",
    };
    vec![
        if meta {
            "meta".into()
        } else {
            r.id.to_string()
        },
        match &r.system {
            Some(label) => label.clone(),
            None => bound(&r.start),
        },
        if r.system.is_some() {
            "-".into()
        } else {
            bound(&r.end)
        },
        rule,
        join(&r.replicas),
        learners,
        leader,
        r.term.to_string(),
        r.applied_index
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into()),
        health.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_node::{NodeView, PlacementView};

    fn node(id: u64, region: &str, zone: &str, healthy: bool) -> NodeView {
        NodeView {
            id,
            addr: format!("10.0.0.{id}:2379"),
            region: region.into(),
            zone: zone.into(),
            state: "active".into(),
            healthy,
        }
    }

    fn range(
        id: u64,
        start: &str,
        end: &str,
        replicas: Vec<u64>,
        leader: Option<u64>,
    ) -> RangeView {
        RangeView {
            id,
            start: start.into(),
            end: end.into(),
            replicas,
            leader,
            term: 3,
            applied_index: Some(42),
            revision: None,
            version: 1,
            rule: (id != 0).then(String::new),
            learners: vec![],
            leader_region: None,
            system: None,
        }
    }

    #[test]
    fn shows_regions_rules_and_where_leaders_are() {
        let mut r2 = range(2, "eu/", "eu0", vec![1, 2, 3], Some(2));
        r2.rule = Some("eu/".into());
        r2.learners = vec![4];
        r2.leader_region = Some("eu-west".into());
        let v = ClusterView {
            cluster_id: 0xab,
            node_id: 1,
            nodes: vec![
                node(1, "us-east", "a", true),
                node(2, "eu-west", "a", true),
                node(3, "ap-south", "a", false),
                node(4, "eu-west", "b", true),
            ],
            ranges: vec![
                range(0, "", "", vec![1, 2, 3], Some(1)),
                range(1, "", "eu/", vec![1, 2, 3], Some(1)),
                r2,
                range(3, "eu0", "", vec![1, 2, 3], None),
            ],
            latency: vec![],
            placement: vec![],
            placements: vec![PlacementView {
                prefix: "eu/".into(),
                replicas: 3,
                regions: vec![],
                zones: vec![],
                survival: "region".into(),
                leader_regions: vec!["eu-west".into()],
                ranges: vec![2],
                implicit: false,
            }],
        };
        let s = render(&v);
        let line = |needle: &str| {
            s.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("no line starting {needle:?} in\n{s}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        // Regions in order, node 2 holds 3 replicas and leads range 2.
        assert_eq!(
            line("eu-west"),
            "eu-west 2 a 10.0.0.2:2379 active ok 3 1 voter"
        );
        assert!(s.contains("ap-south  3"), "{s}");
        assert!(line("ap-south").contains("unreachable"), "{s}");
        assert_eq!(
            line("2 "),
            "2 \"eu/\" \"eu0\" \"eu/\" 1@us-east,2@eu-west,3@ap-south adding 4@eu-west 2@eu-west 3 42 ok"
        );
        assert!(line("1 ").contains("(default)"), "{s}");
        assert!(line("3 ").ends_with("no leader"), "{s}");
        assert!(line("meta").contains(" - - - "), "{s}");
        assert!(s.contains("PLACEMENT RULES"), "{s}");
    }
}
