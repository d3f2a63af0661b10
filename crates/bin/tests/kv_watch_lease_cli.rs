//! Three real processes and Meridian's own CLI: `meridian kv watch` prints every change once, in
//! order, across a `kill -9` of the node it watches through (it resumes on another node from
//! the last revision it printed); `meridian lease grant|ttl|keep-alive|list|revoke` with
//! `kv put --lease`, and the clear errors of a bad id or an unknown lease.

use meridian_tests::process::start_nodes;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

fn meridian(eps: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .args(["--endpoints", eps])
        .output()
        .expect("run meridian")
}

/// Runs the CLI; panics with its stderr when it fails; answers stdout.
fn ok(eps: &str, args: &[&str]) -> String {
    let out = meridian(eps, args);
    assert!(
        out.status.success(),
        "meridian {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the CLI expecting a failure; answers stderr.
fn fails(eps: &str, args: &[&str]) -> String {
    let out = meridian(eps, args);
    assert!(!out.status.success(), "meridian {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kv_watch_resumes_across_a_killed_node_and_lease_commands_work() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, all) = start_nodes(Path::new(BIN), dir.path(), 3).expect("start nodes");
    let out = Command::new(BIN)
        .args(["cluster", "init", "--endpoints", &all, "--ranges", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, b) = (nodes[0].addr.clone(), nodes[1].addr.clone());
    let rest = format!("{},{}", nodes[1].addr, nodes[2].addr);

    // The watch talks to node 1 first.
    let first = ok(&all, &["kv", "put", "w/0", "v0"]);
    let from: u64 = first.trim().parse().unwrap();
    let mut watch = Command::new(BIN)
        .args(["kv", "watch", "w/", "--prefix", "--from-revision"])
        .arg(from.to_string())
        .args(["--endpoints", &all])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = watch.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        })
    };
    let puts = || lines.lock().unwrap().iter().filter(|l| *l == "PUT").count();
    for i in 1..=5 {
        ok(&a, &["kv", "put", &format!("w/{i}"), &format!("v{i}")]);
    }
    ok(&a, &["kv", "del", "w/1"]);
    wait_for("the first events", Duration::from_secs(20), || puts() == 6);

    // Kill the node the watch reads from, and write while it is down and after.
    nodes[0].kill9();
    for i in 6..=10 {
        ok(&rest, &["kv", "put", &format!("w/{i}"), &format!("v{i}")]);
    }
    wait_for("the events after the kill", Duration::from_secs(30), || {
        puts() == 11
    });
    nodes[0].restart().unwrap();
    ok(&b, &["kv", "put", "w/11", "v11"]);
    wait_for("the last event", Duration::from_secs(20), || puts() == 12);
    let _ = watch.kill();
    let _ = watch.wait();
    reader.join().unwrap();
    let got = lines.lock().unwrap().clone();
    // Every change once, in order: PUT w/0..w/5, DELETE w/1, PUT w/6..w/11.
    let mut want: Vec<String> = Vec::new();
    for i in 0..=11 {
        if i == 6 {
            want.extend(["DELETE".into(), "w/1".into()]);
        }
        want.extend(["PUT".into(), format!("w/{i}"), format!("v{i}")]);
    }
    assert_eq!(got, want);

    // Leases.
    let granted = ok(&b, &["lease", "grant", "30"]);
    let id = granted
        .split_whitespace()
        .nth(1)
        .filter(|w| w.starts_with("0x"))
        .unwrap_or_else(|| panic!("{granted}"))
        .to_string();
    assert!(granted.contains("TTL(30s)"), "{granted}");
    ok(&b, &["kv", "put", "l/k", "v", "--lease", &id]);
    let ttl = ok(&all, &["lease", "ttl", &id, "--keys"]);
    assert!(
        ttl.contains("granted with TTL(30s)") && ttl.contains("attached keys(l/k)"),
        "{ttl}"
    );
    let kept = ok(&all, &["lease", "keep-alive", &id, "--once"]);
    assert!(kept.contains("keepalived with TTL(30)"), "{kept}");
    assert!(ok(&all, &["lease", "list"]).contains(&id));
    ok(&b, &["lease", "revoke", &id]);
    // Its key went with it, and the lease is gone.
    let e = fails(&b, &["kv", "get", "l/k"]);
    assert!(e.contains("key_not_found"), "{e}");
    let e = fails(&b, &["lease", "ttl", &id]);
    assert!(e.contains("lease_not_found"), "{e}");
    let e = fails(&b, &["kv", "put", "l/k2", "v", "--lease", &id]);
    assert!(e.contains("lease_not_found"), "{e}");
    let e = fails(&b, &["lease", "revoke", "zz"]);
    assert!(e.contains("neither 0x-hexadecimal nor decimal"), "{e}");
}
