//! A small real network for black-box fault tests: one Linux network namespace per host, each
//! joined by a veth pair to one bridge in the root namespace, which also has an address on it
//! (the clients' side). Partitions are nftables rules inside the hosts' namespaces; a host can
//! also be cut off by bringing its veth down.
//!
//! Every run takes a *slot* `k` (0..[`SLOTS`]): subnet `10.77.k.0/24`, namespaces `mrnK-hI`,
//! bridge `mrbK`, veths `mrvKhI`. A slot is owned by holding an exclusive `flock` on
//! `/run/meridian-realnet/slot-K.lock`; the kernel drops it when the owner dies, so anything
//! named for a slot whose lock is free is left over from a crashed run and is removed at start.
//! [`Net`]'s `Drop` kills every process in its namespaces and deletes them and the bridge.

use anyhow::{Context, bail};
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// How many runs may hold a network at once on one machine.
pub const SLOTS: u32 = 200;
const LOCK_DIR: &str = "/run/meridian-realnet";
/// The nft table each host's partition rules live in.
const NFT_TABLE: &str = "meridian_nemesis";

/// One host: a namespace with an address on the bridge.
#[derive(Clone, Debug)]
pub struct Host {
    /// 1-based.
    pub idx: usize,
    pub ns: String,
    /// The veth end in the root namespace (on the bridge).
    pub veth: String,
    pub addr: Ipv4Addr,
}

/// The network of one run. Dropping it removes everything it made.
pub struct Net {
    pub slot: u32,
    pub bridge: String,
    /// The root namespace's address on the bridge (where clients connect from).
    pub root_addr: Ipv4Addr,
    pub hosts: Vec<Host>,
    _lock: File,
}

/// Runs a command, failing with its stderr.
pub fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command whose failure does not matter (cleanup of what may already be gone).
fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Why this machine cannot run the network, if it cannot: not root, no `ip`, no `nft`, or
/// namespaces not allowed.
pub fn unavailable_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!(
                "`{tool}` is not installed (apt-get install iproute2 nftables)"
            ));
        }
    }
    if let Err(e) = run(&["ip", "netns", "list"]) {
        return Some(format!("`ip netns` does not work: {e}"));
    }
    None
}

fn try_lock(slot: u32) -> anyhow::Result<Option<File>> {
    std::fs::create_dir_all(LOCK_DIR).context("create the slot lock directory")?;
    let f = File::create(format!("{LOCK_DIR}/slot-{slot}.lock")).context("open a slot lock")?;
    // SAFETY: flock on a file descriptor we own; the lock lives as long as `f`.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    Ok((r == 0).then_some(f))
}

fn ns_name(slot: u32, idx: usize) -> String {
    format!("mrn{slot}-h{idx}")
}

/// Slots named by leftover namespaces and links.
fn slots_in_use() -> anyhow::Result<Vec<(u32, String)>> {
    let mut found = Vec::new();
    for line in run(&["ip", "netns", "list"])?.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if let Some(rest) = name.strip_prefix("mrn")
            && let Some((k, _)) = rest.split_once("-h")
            && let Ok(k) = k.parse::<u32>()
        {
            found.push((k, format!("netns:{name}")));
        }
    }
    for line in run(&["ip", "-o", "link", "show"])?.lines() {
        // "12: mrb3: <...>" or "13: mrv3h1@if2: <...>"
        let name = line
            .split(": ")
            .nth(1)
            .unwrap_or("")
            .split('@')
            .next()
            .unwrap_or("");
        let slot = name
            .strip_prefix("mrb")
            .or_else(|| name.strip_prefix("mrv").and_then(|r| r.split('h').next()))
            .and_then(|k| k.parse::<u32>().ok());
        if let Some(k) = slot {
            found.push((k, format!("link:{name}")));
        }
    }
    Ok(found)
}

/// Kills every process in a namespace and deletes it.
fn remove_ns(ns: &str) {
    if let Ok(pids) = run(&["ip", "netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) with a pid read from the kernel; at worst ESRCH.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    run_quiet(&["ip", "netns", "del", ns]);
}

/// Removes whatever a crashed earlier run left in slots no live run holds.
pub fn remove_stale() -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for (slot, what) in slots_in_use()? {
        let Some(_lock) = try_lock(slot)? else {
            continue; // a live run owns it
        };
        match what.split_once(':') {
            Some(("netns", name)) => remove_ns(name),
            Some(("link", name)) => run_quiet(&["ip", "link", "del", name]),
            _ => {}
        }
        removed.push(what);
    }
    Ok(removed)
}

impl Net {
    /// Builds a network of `n_hosts` hosts in a free slot, after removing stale leftovers.
    pub fn create(n_hosts: usize) -> anyhow::Result<Net> {
        assert!((1..=250).contains(&n_hosts));
        let removed = remove_stale()?;
        if !removed.is_empty() {
            eprintln!("realnet: removed leftovers of a crashed run: {removed:?}");
        }
        let used_addrs = run(&["ip", "-4", "-o", "addr", "show"])?;
        let (slot, lock) = (0..SLOTS)
            .find_map(|k| {
                if used_addrs.contains(&format!(" 10.77.{k}.")) {
                    return None;
                }
                try_lock(k).ok().flatten().map(|l| (k, l))
            })
            .context("every network slot is in use")?;
        let mut net = Net {
            slot,
            bridge: format!("mrb{slot}"),
            root_addr: Ipv4Addr::new(10, 77, slot as u8, 254),
            hosts: Vec::new(),
            _lock: lock,
        };
        // From here on Drop cleans up whatever was made.
        let br = net.bridge.clone();
        run(&["ip", "link", "add", &br, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", net.root_addr),
            "dev",
            &br,
        ])?;
        run(&["ip", "link", "set", &br, "up"])?;
        for idx in 1..=n_hosts {
            let host = Host {
                idx,
                ns: ns_name(slot, idx),
                veth: format!("mrv{slot}h{idx}"),
                addr: Ipv4Addr::new(10, 77, slot as u8, idx as u8),
            };
            let peer = format!("mrp{slot}h{idx}");
            net.hosts.push(host.clone());
            run(&["ip", "netns", "add", &host.ns])?;
            run(&[
                "ip", "link", "add", &host.veth, "type", "veth", "peer", "name", &peer,
            ])?;
            run(&["ip", "link", "set", &peer, "netns", &host.ns])?;
            run(&["ip", "link", "set", &host.veth, "master", &br])?;
            run(&["ip", "link", "set", &host.veth, "up"])?;
            let x = |args: &[&str]| {
                let mut v = vec!["ip", "netns", "exec", &host.ns];
                v.extend_from_slice(args);
                run(&v)
            };
            x(&["ip", "link", "set", &peer, "name", "eth0"])?;
            x(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", host.addr),
                "dev",
                "eth0",
            ])?;
            x(&["ip", "link", "set", "eth0", "up"])?;
            x(&["ip", "link", "set", "lo", "up"])?;
            net.nft(
                idx,
                &format!(
                    "add table inet {NFT_TABLE}\n\
                     add set inet {NFT_TABLE} blocked {{ type ipv4_addr; }}\n\
                     add chain inet {NFT_TABLE} input {{ type filter hook input priority 0; policy accept; }}\n\
                     add rule inet {NFT_TABLE} input ip saddr @blocked drop\n"
                ),
            )?;
        }
        Ok(net)
    }

    pub fn host(&self, idx: usize) -> &Host {
        &self.hosts[idx - 1]
    }

    /// A command run inside host `idx`'s namespace.
    pub fn command(&self, idx: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host(idx).ns, program]);
        c
    }

    fn nft(&self, idx: usize, script: &str) -> anyhow::Result<()> {
        let mut child = self
            .command(idx, "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("run nft")?;
        use std::io::Write;
        child
            .stdin
            .take()
            .context("nft stdin")?
            .write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "nft in {}: {}",
                self.host(idx).ns,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Host `idx` drops every packet from the hosts `from` (one-way; call both ways for a
    /// symmetric cut).
    pub fn block(&self, idx: usize, from: &[usize]) -> anyhow::Result<()> {
        if from.is_empty() {
            return Ok(());
        }
        let addrs: Vec<String> = from
            .iter()
            .map(|&f| self.host(f).addr.to_string())
            .collect();
        self.nft(
            idx,
            &format!(
                "add element inet {NFT_TABLE} blocked {{ {} }}\n",
                addrs.join(", ")
            ),
        )
    }

    /// Splits the hosts into groups that cannot reach one another (the clients still reach all).
    pub fn partition(&self, groups: &[Vec<usize>]) -> anyhow::Result<()> {
        for g in groups {
            let others: Vec<usize> = self
                .hosts
                .iter()
                .map(|h| h.idx)
                .filter(|i| !g.contains(i))
                .collect();
            for &i in g {
                self.block(i, &others)?;
            }
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal_partitions(&self) -> anyhow::Result<()> {
        for h in &self.hosts {
            self.nft(h.idx, &format!("flush set inet {NFT_TABLE} blocked\n"))?;
        }
        Ok(())
    }

    /// Brings host `idx`'s link up or down (down: it reaches no one, and no client reaches it).
    pub fn set_link(&self, idx: usize, up: bool) -> anyhow::Result<()> {
        let state = if up { "up" } else { "down" };
        run(&["ip", "link", "set", &self.host(idx).veth, state])?;
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            remove_ns(&h.ns);
            run_quiet(&["ip", "link", "del", &h.veth]);
        }
        run_quiet(&["ip", "link", "del", &self.bridge]);
    }
}

/// Enters a namespace on the calling thread: sockets the thread creates afterwards live there.
pub fn enter_ns(ns: &str) -> anyhow::Result<()> {
    let f = File::open(format!("/run/netns/{ns}")).with_context(|| format!("open netns {ns}"))?;
    // SAFETY: setns on a namespace fd we opened; it only affects the calling thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        bail!("setns {ns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
