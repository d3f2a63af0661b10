//! Black-box: three real servers (one each in us-east, eu-west, ap-south) initialised with
//! `cluster init --split-at`, placement rules set, read, listed and deleted with
//! `meridian placement`, and `cluster status` showing which rule governs which range.

use meridian_tests::process::start_nodes;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

fn meridian(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run meridian")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn placement_rules_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, eps) = start_nodes(Path::new(BIN), dir.path(), 3).expect("start nodes");

    // Split keys must be sorted.
    let out = meridian(&[
        "cluster",
        "init",
        "--endpoints",
        &eps,
        "--split-at",
        "eu0,eu/",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sorted and distinct"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ok(&meridian(&[
        "cluster",
        "init",
        "--endpoints",
        &eps,
        "--split-at",
        "eu/,eu0",
    ]));
    assert!(out.contains("3 range(s)"), "{out}");

    let set = |extra: &[&str]| {
        let mut args = vec!["placement", "--endpoints", &eps, "set"];
        args.extend_from_slice(extra);
        meridian(&args)
    };
    // Three regions of one node each cannot hold 5 replicas.
    let out = set(&["eu/", "--replicas", "5"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("placement_unsatisfiable: rule wants 5 replicas but only 3 active nodes are in the cluster"),
        "{err}"
    );
    let text = ok(&set(&[
        "eu/",
        "--replicas",
        "3",
        "--survival",
        "region",
        "--leader-regions",
        "eu-west,us-east",
    ]));
    assert!(text.contains("governs ranges  2"), "{text}");

    // Another node answers with the same rule.
    let other = &nodes[2].addr;
    let j: Value = serde_json::from_str(&ok(&meridian(&[
        "placement",
        "--endpoints",
        other,
        "--output",
        "json",
        "get",
        "eu/",
    ])))
    .unwrap();
    assert_eq!(j["leader_regions"][0], "eu-west");
    assert_eq!(j["survival"], "region");

    let list = ok(&meridian(&["placement", "--endpoints", &eps, "list"]));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[1].starts_with("(default)"), "{list}");
    assert!(lines[2].starts_with("\"eu/\""), "{list}");

    // The status picture names the rule of each range and the leader's region.
    let status = ok(&meridian(&["cluster", "status", "--endpoints", &eps]));
    assert!(status.contains("REGIONS AND NODES"), "{status}");
    let range2 = status
        .lines()
        .find(|l| l.starts_with("2 "))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(range2.contains("\"eu/\"  \"eu0\"  \"eu/\""), "{status}");
    assert!(range2.contains("@eu-west"), "{status}");
    let j: Value = serde_json::from_str(&ok(&meridian(&[
        "cluster",
        "status",
        "--endpoints",
        &eps,
        "--output",
        "json",
    ])))
    .unwrap();
    let ranges = j["ranges"].as_array().unwrap();
    assert_eq!(ranges[2]["rule"], "eu/");
    assert_eq!(ranges[1]["rule"], "");
    assert_eq!(ranges[0]["rule"], Value::Null);

    assert_eq!(
        ok(&meridian(&[
            "placement",
            "--endpoints",
            &eps,
            "delete",
            "eu/"
        ]))
        .trim(),
        "deleted"
    );
    let out = meridian(&["placement", "--endpoints", &eps, "get", "eu/"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("key_not_found"));
}
