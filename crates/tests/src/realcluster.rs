//! Real `meridian server` processes, one per host of a [`Net`], each behind its host's
//! delaying [`Proxy`]: node `i` listens on `127.0.0.1:NODE_PORT` inside host `i`'s namespace and
//! advertises `10.77.k.i:PROXY_PORT`, so every byte between nodes, and from clients, crosses the
//! bridge, the host's nftables rules and the proxy.
//!
//! Processes are started from one long-lived thread with `PR_SET_PDEATHSIG = SIGKILL`, so they
//! die with the test even when it is killed; `Drop` kills them too, and [`Net`]'s `Drop` kills
//! anything left in the namespaces.

use crate::netns::Net;
use crate::proxy::{LinkTable, Proxy};
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Each node's real listener, on its host's loopback (namespaces keep ports apart).
pub const NODE_PORT: u16 = 7000;
/// The advertised address's port: the proxy.
pub const PROXY_PORT: u16 = 7001;
/// How long a node may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

type SpawnRequest = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);

/// Spawns children from one thread that lives as long as the cluster: a child's parent-death
/// signal fires when the *thread* that forked it exits.
struct Spawner {
    tx: Option<std::sync::mpsc::Sender<SpawnRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spawner {
    fn new() -> anyhow::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<SpawnRequest>();
        let thread = std::thread::Builder::new()
            .name("realnet-spawner".into())
            .spawn(move || {
                while let Ok((mut cmd, reply)) = rx.recv() {
                    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
                    // memory of the parent.
                    unsafe {
                        cmd.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn spawn(&self, cmd: Command) -> anyhow::Result<Child> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.tx
            .as_ref()
            .context("spawner stopped")?
            .send((cmd, tx))
            .ok()
            .context("spawner gone")?;
        Ok(rx.recv().context("spawner gone")??)
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One node process.
pub struct RealNode {
    pub id: u64,
    /// Where clients and other nodes reach it (its proxy).
    pub advertise: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl RealNode {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child, which has not been reaped.
            unsafe {
                libc::kill(pid as i32, sig);
            }
        }
    }
}

pub struct ClusterConfig {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub n_nodes: usize,
    pub n_ranges: u32,
    /// A simulated WAN table every server gets as `--wan` (node i is in region
    /// `us-east`, `eu-west`, `ap-south`, round-robin); `None` for the plain network.
    pub wan: Option<String>,
}

/// Nodes on a [`Net`]; dropping it kills them, stops the proxies and removes the network.
pub struct RealCluster {
    pub nodes: Vec<RealNode>,
    pub links: Arc<LinkTable>,
    proxies: Vec<Proxy>,
    spawner: Spawner,
    bin: PathBuf,
    wan: Option<String>,
    // Last: removed after everything that runs in it.
    pub net: Net,
}

impl RealCluster {
    /// Makes the network, starts the proxies and nodes, and initialises the cluster.
    pub fn start(cfg: &ClusterConfig) -> anyhow::Result<RealCluster> {
        let net = Net::create(cfg.n_nodes)?;
        let links = Arc::new(LinkTable::default());
        let mut proxies = Vec::new();
        for h in &net.hosts {
            proxies.push(Proxy::start(
                &h.ns,
                h.idx,
                SocketAddr::from((h.addr, PROXY_PORT)),
                SocketAddr::from(([127, 0, 0, 1], NODE_PORT)),
                links.clone(),
            )?);
        }
        let nodes = net
            .hosts
            .iter()
            .map(|h| RealNode {
                id: h.idx as u64,
                advertise: format!("{}:{PROXY_PORT}", h.addr),
                data_dir: cfg.dir.join(format!("node{}", h.idx)),
                log: cfg.dir.join(format!("node{}.log", h.idx)),
                child: None,
                paused: false,
            })
            .collect();
        let mut c = RealCluster {
            nodes,
            links,
            proxies,
            spawner: Spawner::new()?,
            bin: cfg.bin.clone(),
            wan: cfg.wan.clone(),
            net,
        };
        for i in 1..=cfg.n_nodes {
            c.start_node(i)?;
        }
        let out = Command::new(&c.bin)
            .args([
                "cluster",
                "init",
                "--endpoints",
                &c.endpoints().join(","),
                "--ranges",
                &cfg.n_ranges.to_string(),
            ])
            .output()
            .context("run meridian cluster init")?;
        if !out.status.success() {
            bail!(
                "cluster init failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(c)
    }

    /// Every node's advertised address.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.advertise.clone()).collect()
    }

    pub fn node(&self, id: usize) -> &RealNode {
        &self.nodes[id - 1]
    }

    /// Starts node `id` (again) with its data dir and waits for it to listen.
    pub fn start_node(&mut self, id: usize) -> anyhow::Result<()> {
        let n = &self.nodes[id - 1];
        if n.child.is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(&n.data_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)?;
        let mut cmd = self.net.command(id, &self.bin.to_string_lossy());
        cmd.args(["server", "--id", &id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{NODE_PORT}")])
            .args(["--advertise", &n.advertise])
            .arg("--data-dir")
            .arg(&n.data_dir)
            .args(["--region", ["us-east", "eu-west", "ap-south"][(id - 1) % 3]])
            .args(["--wan", self.wan.as_deref().unwrap_or("none")])
            .env("MERIDIAN_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = self.spawner.spawn(cmd)?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
        // Read the address line, then keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut told = false;
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if !told && line.contains(" listening on ") {
                            told = true;
                            let _ = tx.send(Some(line.trim().to_string()));
                        }
                    }
                }
            }
            if !told {
                let _ = tx.send(None);
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(_)) => {
                self.nodes[id - 1].child = Some(child);
                self.nodes[id - 1].paused = false;
                Ok(())
            }
            other => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "node {id} did not start ({}); see {}",
                    if other.is_err() {
                        "timed out"
                    } else {
                        "exited"
                    },
                    self.nodes[id - 1].log.display()
                )
            }
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self, id: usize) {
        let n = &mut self.nodes[id - 1];
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        n.paused = false;
    }

    /// SIGSTOP.
    pub fn pause(&mut self, id: usize) {
        let n = &mut self.nodes[id - 1];
        if n.child.is_some() && !n.paused {
            n.signal(libc::SIGSTOP);
            n.paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: usize) {
        let n = &mut self.nodes[id - 1];
        if n.paused {
            n.signal(libc::SIGCONT);
            n.paused = false;
        }
    }

    /// Undoes every fault: partitions, links, latency, pauses, dead nodes.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        self.net.heal_partitions()?;
        for i in 1..=self.nodes.len() {
            self.net.set_link(i, true)?;
            self.resume(i);
        }
        self.links.reset();
        for i in 1..=self.nodes.len() {
            self.start_node(i)?;
        }
        Ok(())
    }

    pub fn log_dir(&self) -> Option<&Path> {
        self.nodes.first().and_then(|n| n.log.parent())
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        for i in 1..=self.nodes.len() {
            self.kill9(i);
        }
        self.proxies.clear();
    }
}
