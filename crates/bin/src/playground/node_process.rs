//! One playground node: a `meridian server` child process, its log file, and the address it
//! announced on stdout.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;

/// Longest a node may take to print its listening line.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a listening line may be; longer stdout lines are logged, not parsed.
const STDOUT_LINE_BYTES_MAX: usize = 4096;

/// Most bytes of a node's log shown when it failed.
const LOG_TAIL_BYTES_MAX: u64 = 4096;

/// Environment a node must not inherit from the playground's caller: it would change what the
/// node does (join another cluster, read a config file, advertise another address).
const ENV_NOT_INHERITED: [&str; 4] = [
    "MERIDIAN_JOIN",
    "MERIDIAN_CONFIG",
    "MERIDIAN_ADVERTISE",
    "MERIDIAN_ENDPOINTS",
];

/// How to start one node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: u32,
    pub region: &'static str,
    pub zone: String,
    /// `127.0.0.1:PORT`, port 0 for any free port.
    pub listen: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// The simulated WAN table (`--wan`).
    pub wan: String,
    /// The node's share of the machine's cores (`--worker-threads`).
    pub worker_threads: usize,
}

/// A running node.
#[derive(Debug)]
pub struct NodeProcess {
    pub spec: NodeSpec,
    /// The address the node listens on, from its stdout.
    pub addr: String,
    pub child: Child,
    /// Copies the rest of the node's stdout into its log.
    forward: Option<JoinHandle<()>>,
}

impl NodeProcess {
    /// Starts `exe server ...` for `spec`, in its own process group (so a Ctrl-C in the
    /// terminal reaches only the playground, which then stops the nodes in order), and waits
    /// for its listening line.
    pub async fn start(exe: &Path, spec: NodeSpec) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&spec.data_dir)
            .with_context(|| format!("create {}", spec.data_dir.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_path)
            .with_context(|| format!("open {}", spec.log_path.display()))?;
        let stderr = log.try_clone().context("clone the log file handle")?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("server")
            .arg("--id")
            .arg(spec.id.to_string())
            .arg("--listen")
            .arg(&spec.listen)
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .arg("--region")
            .arg(spec.region)
            .arg("--zone")
            .arg(&spec.zone)
            .arg("--wan")
            .arg(&spec.wan)
            .arg("--worker-threads")
            .arg(spec.worker_threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .process_group(0);
        for var in ENV_NOT_INHERITED {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start node {} ({})", spec.id, exe.display()))?;
        let Some(stdout) = child.stdout.take() else {
            bail!("node {}: no stdout pipe", spec.id);
        };
        let mut log = tokio::fs::File::from_std(log);
        let mut reader = BufReader::new(stdout);
        let found = tokio::time::timeout(
            LISTEN_TIMEOUT,
            read_listening_line(&mut reader, &mut log, spec.id),
        )
        .await;
        let addr = match found {
            Ok(Ok(Some(addr))) => addr,
            Ok(Ok(None)) => bail!(
                "node {} exited before it listened; its log ({}) ends with:\n{}",
                spec.id,
                spec.log_path.display(),
                log_tail(&spec.log_path)
            ),
            Ok(Err(e)) => {
                return Err(e).with_context(|| format!("read the stdout of node {}", spec.id));
            }
            Err(_) => bail!(
                "node {} did not listen within {LISTEN_TIMEOUT:?}; see {}",
                spec.id,
                spec.log_path.display()
            ),
        };
        let forward = tokio::spawn(async move {
            // The log is best effort: a node keeps running if its log cannot be written.
            let _ = tokio::io::copy(&mut reader, &mut log).await;
            let _ = log.flush().await;
        });
        Ok(Self {
            spec,
            addr,
            child,
            forward: Some(forward),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process has not been seen to exit.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit, then for the last of its stdout to reach the log.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        if let Some(forward) = self.forward.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), forward).await;
        }
        Ok(status)
    }
}

/// Reads stdout lines into the log until the listening line; its address, `None` at EOF.
async fn read_listening_line(
    reader: &mut BufReader<ChildStdout>,
    log: &mut tokio::fs::File,
    id: u32,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut *reader)
            .take(STDOUT_LINE_BYTES_MAX as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        log.write_all(&line).await?;
        if let Some(addr) = parse_listening_line(&String::from_utf8_lossy(&line), id) {
            log.flush().await?;
            return Ok(Some(addr));
        }
    }
}

/// The last lines of a log (at most [`LOG_TAIL_BYTES_MAX`] bytes), indented, to show why a
/// node failed even when its log is about to be deleted with a temporary directory.
pub fn log_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let read = || -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES_MAX)))?;
        let mut buf = Vec::new();
        f.take(LOG_TAIL_BYTES_MAX).read_to_end(&mut buf)?;
        Ok(buf)
    };
    match read() {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            // The first line may have been cut by the byte limit.
            let skip = usize::from(bytes.len() as u64 == LOG_TAIL_BYTES_MAX && lines.len() > 1);
            lines[skip..].iter().map(|l| format!("    {l}\n")).collect()
        }
        Err(e) => format!("    (could not read it: {e})\n"),
    }
}

/// The address in `meridian node <id> listening on <addr>`, for this node's id.
pub fn parse_listening_line(line: &str, id: u32) -> Option<String> {
    let rest = line.trim().strip_prefix("meridian node ")?;
    let (line_id, addr) = rest.split_once(" listening on ")?;
    let addr = addr.trim();
    (line_id == id.to_string() && !addr.is_empty() && !addr.contains(char::is_whitespace))
        .then(|| addr.to_owned())
}

/// Sends SIGTERM to `pid` with the `kill` command. Only for children not yet reaped, so the
/// pid cannot have been reused.
pub fn send_sigterm(pid: u32) -> std::io::Result<()> {
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill -TERM {pid}: {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        let line = "meridian node 3 listening on 127.0.0.1:41234\n";
        assert_eq!(
            parse_listening_line(line, 3).as_deref(),
            Some("127.0.0.1:41234")
        );
        assert_eq!(parse_listening_line(line, 4), None, "another node's line");
        assert_eq!(
            parse_listening_line("meridian node 3 listening on \n", 3),
            None
        );
        assert_eq!(parse_listening_line("some log line", 3), None);
        assert_eq!(
            parse_listening_line("meridian node 13 listening on [::1]:5", 13).as_deref(),
            Some("[::1]:5")
        );
    }

    #[test]
    fn log_tail_shows_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.log");
        std::fs::write(&path, "one\ntwo\n").unwrap();
        assert_eq!(log_tail(&path), "    one\n    two\n");
        let long: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, long).unwrap();
        let tail = log_tail(&path);
        assert!(tail.ends_with("    line 1999\n"), "{tail}");
        assert!(tail.len() <= LOG_TAIL_BYTES_MAX as usize * 2);
        assert!(tail.lines().all(|l| l.starts_with("    line ")), "{tail}");
        assert!(log_tail(&dir.path().join("missing")).contains("could not read"));
    }

    #[tokio::test]
    async fn sigterm_stops_a_child() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        send_sigterm(child.id().unwrap()).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(!status.success());
    }
}
