//! `playground.json` in a kept `--data-dir`: the nodes' addresses, so a playground started
//! again listens where its cluster map says its nodes are.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the saved layout inside the data directory.
const FILE_NAME: &str = "playground.json";

/// Largest layout file read; a real one is a few hundred bytes.
const FILE_BYTES_MAX: u64 = 64 * 1024;

/// The addresses of a playground's nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedLayout {
    /// `nodes[i]` is node `i + 1`.
    pub addrs: Vec<String>,
}

impl SavedLayout {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// The layout saved in `dir`, `None` if there is none.
    pub fn load(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = Self::path(dir);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        anyhow::ensure!(
            meta.len() <= FILE_BYTES_MAX,
            "{} is too large to be a layout",
            path.display()
        );
        let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let layout =
            serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))?;
        Ok(Some(layout))
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{FILE_NAME}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("replace {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_absent_at_first() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SavedLayout::load(dir.path()).unwrap(), None);
        let l = SavedLayout {
            addrs: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
        };
        l.save(dir.path()).unwrap();
        assert_eq!(SavedLayout::load(dir.path()).unwrap(), Some(l));
        std::fs::write(SavedLayout::path(dir.path()), b"{").unwrap();
        assert!(SavedLayout::load(dir.path()).is_err());
    }
}
