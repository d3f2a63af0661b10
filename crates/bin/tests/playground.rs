//! Black-box: `meridian playground --nodes 3` as a newcomer runs it: the banner names the
//! endpoints, the demo stream and queue hold their one message each, and Ctrl-C (SIGINT) stops
//! the playground and every node it started.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");
/// A debug build on a busy 2-core machine can take a while to elect and seed.
const BANNER_WAIT: Duration = Duration::from_secs(120);

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

/// Kills the playground if the test fails before it stops it.
struct Playground(Child);

impl Drop for Playground {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_pids(dir: &str) -> Vec<String> {
    let out = Command::new("pgrep").args(["-f", dir]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_playground_starts_seeds_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pg");
    let data_s = data.to_str().unwrap().to_string();
    let child = Command::new(BIN)
        .args(["playground", "--nodes", "3", "--data-dir", &data_s])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the playground");
    let mut pg = Playground(child);
    let stdout = pg.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + BANNER_WAIT;
    let mut banner = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains("Press Ctrl-C");
                banner.push(line);
                if done {
                    break;
                }
            }
            Err(e) => panic!("no banner ({e}); printed so far:\n{}", banner.join("\n")),
        }
    }
    let text = banner.join("\n");
    let addr = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--endpoints="))
        .or_else(|| {
            let i = text.find("--endpoints ")?;
            text[i + 12..].split_whitespace().next()
        })
        .expect("an endpoint in the banner")
        .to_string();
    assert!(text.contains("demo-events"), "{text}");

    // Every partition holds its welcome message, so the banner's hint (partition 0) shows one.
    for p in ["0", "1", "2"] {
        let out = ok(&meridian(&[
            "stream",
            "read",
            "demo-events",
            "--partition",
            p,
            "--endpoints",
            &addr,
        ]));
        let welcome = format!("hello from the playground (partition {p})");
        let found = out.lines().filter(|l| l.contains(&welcome)).count();
        assert_eq!(found, 1, "partition {p} holds its one demo message: {out}");
    }
    let out = ok(&meridian(&[
        "queue",
        "receive",
        "demo-jobs",
        "--wait",
        "5s",
        "--endpoints",
        &addr,
    ]));
    assert!(out.contains("resize image 42"), "{out}");
    assert!(!node_pids(&data_s).is_empty(), "the nodes run");

    let pid = pg.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = pg.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the playground did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "playground exit: {status}");
    assert!(
        node_pids(&data_s).is_empty(),
        "a node outlived the playground"
    );
}
