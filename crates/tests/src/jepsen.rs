//! Histories in Jepsen's shape, one JSON object a line, and their recorder.
//!
//! ```json
//! {"process":3,"type":"invoke","f":"write","key":"k1","value":"p3-17","time":123456789}
//! {"process":3,"type":"ok","f":"write","key":"k1","value":"p3-17","time":130000000}
//! {"process":"nemesis","type":"info","f":"start","value":{"id":1,"fault":"kill","detail":"n2"},"time":5}
//! ```
//!
//! | `f` | invoke `value` | completion |
//! |---|---|---|
//! | `read` | `null` | `ok` with the value read (`null`: absent) |
//! | `write` | the value | `ok` |
//! | `cas` | `[expected or null, new]` | `ok` (swapped), `fail` with `"error":"cas-mismatch"` (compared false) |
//! | `delete` | `null` | `ok` with `true` if the key was there |
//!
//! `fail` means the operation certainly did not take effect; `info` means the outcome is unknown
//! (a timeout, a lost connection, an ambiguous error): it may take effect at any time after its
//! invocation, or never. A process has at most one operation in flight; after an `info` the
//! client continues as a new process, as in Jepsen. `time` is nanoseconds since the start of the
//! run on one monotonic clock; lines are written in time order.
//!
//! The nemesis writes `info` lines with `f` = `start` or `stop` and a value naming the fault
//! (`{"id":N,"fault":KIND,"detail":...}`); the checker turns them into fault windows.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Who did an operation: a client process number, or a name (`"nemesis"`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    Client(u64),
    Named(String),
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Process::Client(n) => write!(f, "{n}"),
            Process::Named(s) => f.write_str(s),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// The `error` of a cas whose comparison was false.
pub const CAS_MISMATCH: &str = "cas-mismatch";

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Value,
    pub time: u64,
    /// Why an operation failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The endpoint the client spoke to, for reading the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Appends entries to a history file, one line each, flushed as written so that a crash of the
/// test keeps everything recorded so far.
pub struct HistoryWriter {
    start: Instant,
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl HistoryWriter {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(path)?;
        Ok(Self {
            start: Instant::now(),
            file: Mutex::new(std::io::BufWriter::new(file)),
        })
    }

    /// Nanoseconds since the history began.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Writes one entry, stamping its time under the lock so lines are in time order.
    pub fn record(&self, mut e: Entry) {
        let mut f = self.file.lock();
        e.time = self.now_ns();
        let line = serde_json::to_string(&e).expect("an entry serialises");
        // A full disk would end the test on its next check; nothing useful to do here.
        let _ = writeln!(f, "{line}");
        let _ = f.flush();
    }

    pub fn invoke(&self, process: u64, f: &str, key: &str, value: Value, node: &str) {
        self.record(Entry {
            process: Process::Client(process),
            kind: Kind::Invoke,
            f: f.into(),
            key: Some(key.into()),
            value,
            time: 0,
            error: None,
            node: Some(node.into()),
        });
    }

    /// Completes a client's operation.
    #[allow(clippy::too_many_arguments)]
    pub fn complete(
        &self,
        process: u64,
        kind: Kind,
        f: &str,
        key: &str,
        value: Value,
        error: Option<String>,
        node: &str,
    ) {
        self.record(Entry {
            process: Process::Client(process),
            kind,
            f: f.into(),
            key: Some(key.into()),
            value,
            time: 0,
            error,
            node: Some(node.into()),
        });
    }

    /// A nemesis event: `f` is `start` or `stop`.
    pub fn nemesis(&self, f: &str, id: u64, fault: &str, detail: &str) {
        self.record(Entry {
            process: Process::Named("nemesis".into()),
            kind: Kind::Info,
            f: f.into(),
            key: None,
            value: serde_json::json!({"id": id, "fault": fault, "detail": detail}),
            time: 0,
            error: None,
            node: None,
        });
    }
}

/// Why a history file could not be read. `code` is stable.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HistoryError {
    /// `io`, `parse` or `malformed`.
    pub code: &'static str,
    pub message: String,
}

impl HistoryError {
    pub fn malformed(line: usize, msg: impl std::fmt::Display) -> Self {
        Self {
            code: "malformed",
            message: format!("line {line}: {msg}"),
        }
    }
}

/// Reads a history file; every line must be an [`Entry`] (blank lines are skipped).
pub fn read_history(path: &Path) -> Result<Vec<Entry>, HistoryError> {
    let text = std::fs::read_to_string(path).map_err(|e| HistoryError {
        code: "io",
        message: format!("read {}: {e}", path.display()),
    })?;
    parse_history(&text)
}

pub fn parse_history(text: &str) -> Result<Vec<Entry>, HistoryError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| HistoryError {
                code: "parse",
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}
