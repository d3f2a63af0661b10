//! Black-box helpers: real `meridian server` processes on loopback, killed and restarted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Extra flags and environment for a server process (kept across restarts).
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Added after the usual flags, e.g. `["--snapshot-logs-max", "50"]`.
    pub args: Vec<String>,
    /// Environment variables set for every start (see [`ServerProcess::set_env`]).
    pub env: Vec<(String, String)>,
    /// Working directory of the process (where a core file would land); the caller's if `None`.
    pub cwd: Option<PathBuf>,
}

/// One real server process.
pub struct ServerProcess {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    opts: ServerOptions,
}

impl ServerProcess {
    /// Starts `meridian server` with a free port and waits for its "listening" line.
    pub fn start(
        bin: &Path,
        id: u64,
        data_dir: &Path,
        listen: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::start_with(bin, id, data_dir, listen, ServerOptions::default())
    }

    /// [`start`](Self::start) with extra flags and environment.
    pub fn start_with(
        bin: &Path,
        id: u64,
        data_dir: &Path,
        listen: Option<&str>,
        opts: ServerOptions,
    ) -> anyhow::Result<Self> {
        let log = data_dir.with_extension("log");
        let mut p = ServerProcess {
            id,
            addr: String::new(),
            data_dir: data_dir.to_path_buf(),
            bin: bin.to_path_buf(),
            child: None,
            log,
            opts,
        };
        p.spawn(listen.unwrap_or("127.0.0.1:0"))?;
        Ok(p)
    }

    fn spawn(&mut self, listen: &str) -> anyhow::Result<()> {
        if let Some(parent) = self.log.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.bin);
        if let Some(cwd) = &self.opts.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd
            .args(["server", "--id", &self.id.to_string(), "--listen", listen])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "--region",
                ["us-east", "eu-west", "ap-south"][(self.id as usize - 1) % 3],
            ])
            .env("MERIDIAN_LOG", "info,openraft=warn")
            .args(&self.opts.args)
            .envs(self.opts.env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                let _ = child.kill();
                anyhow::bail!(
                    "node {} exited before listening; see {}",
                    self.id,
                    self.log.display()
                );
            }
            if let Some(addr) = line
                .trim()
                .strip_prefix(&format!("meridian node {} listening on ", self.id))
            {
                self.addr = addr.to_string();
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("node {} did not print its address", self.id);
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if c.try_wait()?.is_some() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    anyhow::bail!("node {} did not stop on SIGTERM", self.id);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Starts the process again on the same address and data dir.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let addr = self.addr.clone();
        self.spawn(&addr)
    }

    /// Sets (or with `None` removes) an environment variable for the next starts.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.opts.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.opts.env.push((key.to_string(), v.to_string()));
        }
    }

    /// Waits up to `timeout` for the process to exit on its own (a crash point, say); returns
    /// how it ended, or `None` if it is still running (or was not).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The server binary: `MERIDIAN_BIN`, or `meridian` beside the running test's `deps/` directory.
pub fn server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("MERIDIAN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .join("meridian")
}

/// Starts `n` nodes (ids 1 to `n`, data dirs `dir/n<id>`) on free ports and returns them with
/// their addresses joined by commas (an `--endpoints` value).
pub fn start_nodes(bin: &Path, dir: &Path, n: u64) -> anyhow::Result<(Vec<ServerProcess>, String)> {
    let nodes = (1..=n)
        .map(|i| ServerProcess::start(bin, i, &dir.join(format!("n{i}")), None))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let endpoints = nodes
        .iter()
        .map(|n| n.addr.clone())
        .collect::<Vec<_>>()
        .join(",");
    Ok((nodes, endpoints))
}
