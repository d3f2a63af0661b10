//! Server configuration from a TOML file, `MERIDIAN_*` environment variables and flags. A flag
//! beats the environment, which beats the file, which beats the default.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The TOML file's shape; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub id: Option<u64>,
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub join: Option<Vec<String>>,
    pub fsync: Option<bool>,
    pub heartbeat_interval_ms: Option<u64>,
    pub election_timeout_min_ms: Option<u64>,
    pub election_timeout_max_ms: Option<u64>,
    pub snapshot_logs_max: Option<u64>,
    pub snapshot_log_bytes: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub node_dead_after_secs: Option<u64>,
    pub unclaimed_range_grace_secs: Option<u64>,
    /// Simulated WAN table (`--wan`).
    pub wan: Option<String>,
    /// Threads that run the node's async work (`--worker-threads`).
    pub worker_threads: Option<usize>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parse config file {}", path.display()))
    }
}

/// Picks the first value present: flag/env (clap merges those), then file, then default.
pub fn pick<T>(flag: Option<T>, file: Option<T>, default: impl FnOnce() -> T) -> T {
    flag.or(file).unwrap_or_else(default)
}

/// Checks a `host:port` address.
pub fn check_addr(what: &str, addr: &str) -> anyhow::Result<()> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => bail!("{what} {addr:?} is not host:port"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_beats_default() {
        assert_eq!(pick(Some(1), Some(2), || 3), 1);
        assert_eq!(pick(None, Some(2), || 3), 2);
        assert_eq!(pick(None::<i32>, None, || 3), 3);
    }

    #[test]
    fn parses_file_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(
            &p,
            "id = 3\nregion = \"eu-west\"\njoin = [\"a:1\"]\nwan = \"a:b=5ms\"\n",
        )
        .unwrap();
        let c = FileConfig::load(&p).unwrap();
        assert_eq!(c.id, Some(3));
        assert_eq!(c.join.unwrap(), vec!["a:1".to_string()]);
        assert_eq!(c.wan.as_deref(), Some("a:b=5ms"));
        std::fs::write(&p, "idd = 3\n").unwrap();
        assert!(FileConfig::load(&p).is_err());
        assert!(check_addr("listen", "127.0.0.1:80").is_ok());
        assert!(check_addr("listen", "localhost").is_err());
    }
}
