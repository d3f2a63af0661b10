//! The checker of a Jepsen-shaped history ([`crate::jepsen`]): linearizability per key (the
//! [`crate::wgl`] search over [`crate::history::CasRegister`]), lost acknowledged writes, and
//! availability over time and by fault window. [`check_file`] is what the real-network test and
//! the `meridian-check-history` command call.
//!
//! **Lost acknowledged write.** An acknowledged write `W` of value `v` to key `k` (a `write`
//! with `ok`, or a `cas` with `ok`, whose new value is `v`; values are unique per run) is *lost*
//! when all three hold:
//! 1. some successful read of `k` was invoked after `W` was acknowledged (there was a chance to
//!    see it: the test's final reads after heal always give one);
//! 2. no successful read returned `v` and no successful cas expected `v`;
//! 3. nothing could have overwritten it: every other write, cas or delete of `k` that did not
//!    certainly fail (`ok`, `info` or never answered) was acknowledged before `W` was invoked.
//!
//! Such a write can only have vanished. Acknowledged writes that were never observed but might
//! have been overwritten are counted apart ("unobserved") and are not an error.

use crate::history::{Op, Ret};
use crate::jepsen::{CAS_MISMATCH, Entry, HistoryError, Kind, Process, read_history};
use crate::wgl::{self, Operation, Outcome};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Width of one availability bucket.
pub const BUCKET_NS: u64 = 1_000_000_000;
/// Operations printed around a linearizability failure.
const CONTEXT_OPS_MAX: usize = 24;

/// One client operation, invocation and completion paired.
#[derive(Clone, Debug, Serialize)]
pub struct ClientOp {
    pub process: u64,
    pub f: String,
    pub key: String,
    pub invoke_value: Value,
    /// `None`: never completed (counted as `info`).
    pub kind: Option<Kind>,
    pub value: Value,
    pub error: Option<String>,
    pub call_ns: u64,
    pub return_ns: Option<u64>,
    pub node: Option<String>,
}

impl ClientOp {
    fn outcome(&self) -> Kind {
        self.kind.unwrap_or(Kind::Info)
    }

    /// For availability: a cas that compared false was answered, so it counts as ok.
    fn served(&self) -> Option<Kind> {
        match self.kind? {
            Kind::Fail if self.error.as_deref() == Some(CAS_MISMATCH) => Some(Kind::Ok),
            k => Some(k),
        }
    }

    fn is_mutation(&self) -> bool {
        matches!(self.f.as_str(), "write" | "cas" | "delete")
    }

    /// Whether it may have changed the key: a mutation that did not certainly fail.
    fn may_have_mutated(&self) -> bool {
        self.is_mutation() && self.outcome() != Kind::Fail
    }

    /// The value an acknowledged write stored.
    fn written_value(&self) -> Option<&str> {
        match (self.f.as_str(), self.outcome()) {
            ("write", Kind::Ok) => self.invoke_value.as_str(),
            ("cas", Kind::Ok) => self.invoke_value.get(1)?.as_str(),
            _ => None,
        }
    }
}

/// A fault as the nemesis reported it.
#[derive(Clone, Debug, Serialize)]
pub struct FaultWindow {
    pub id: u64,
    pub fault: String,
    pub detail: String,
    pub start_ns: u64,
    /// `None`: still active at the end of the history.
    pub stop_ns: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

impl Counts {
    fn add(&mut self, k: Kind) {
        match k {
            Kind::Ok => self.ok += 1,
            Kind::Fail => self.fail += 1,
            _ => self.info += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.ok + self.fail + self.info
    }

    pub fn ok_ratio(&self) -> f64 {
        if self.total() == 0 {
            0.0
        } else {
            self.ok as f64 / self.total() as f64
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct KeyReport {
    pub key: String,
    pub ops: usize,
    /// Operations with an unknown outcome.
    pub unknown: usize,
    /// `linearizable`, `not-linearizable` or `unknown` (search gave up).
    pub result: String,
    /// For a failure: what could not be explained, and the operations around it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LostWrite {
    pub key: String,
    pub value: String,
    pub process: u64,
    pub call_ns: u64,
    pub return_ns: u64,
}

/// Availability over one stretch of time with one set of active faults.
#[derive(Clone, Debug, Serialize)]
pub struct WindowReport {
    /// The active faults, `none` when healthy.
    pub label: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub counts: Counts,
    pub ok_per_sec: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub history: Option<PathBuf>,
    pub duration_ns: u64,
    pub processes: usize,
    pub ops: usize,
    pub counts: Counts,
    pub counts_by_f: BTreeMap<String, Counts>,
    pub faults_by_kind: BTreeMap<String, u64>,
    pub faults: Vec<FaultWindow>,
    pub keys: Vec<KeyReport>,
    pub acknowledged_writes: usize,
    /// Acknowledged, never observed, but possibly overwritten (not an error).
    pub unobserved_writes: usize,
    pub lost_writes: Vec<LostWrite>,
    /// Consecutive stretches of the run, each with its set of active faults.
    pub windows: Vec<WindowReport>,
    /// Totals per label over every stretch with that label.
    pub by_fault: BTreeMap<String, WindowReport>,
    /// Per second: completions (ok, fail, info) in that second. In `timeline`, `windows` and
    /// `by_fault` a cas that compared false counts as ok: the service answered.
    pub timeline: Vec<Counts>,
    pub valid: bool,
}

impl Report {
    pub fn all_linearizable(&self) -> bool {
        self.keys.iter().all(|k| k.result == "linearizable")
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let secs = self.duration_ns as f64 / 1e9;
        if let Some(h) = &self.history {
            let _ = writeln!(s, "history: {}", h.display());
        }
        let _ = writeln!(
            s,
            "operations: {} over {secs:.1} s by {} processes: ok {}, fail {}, info {}",
            self.ops, self.processes, self.counts.ok, self.counts.fail, self.counts.info
        );
        for (f, c) in &self.counts_by_f {
            let _ = writeln!(
                s,
                "  {f:<7} ok {:>6}  fail {:>5}  info {:>5}",
                c.ok, c.fail, c.info
            );
        }
        let faults: Vec<String> = self
            .faults_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "faults injected: {}",
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(", ")
            }
        );
        for w in &self.faults {
            let stop = w
                .stop_ns
                .map_or("end".into(), |t| format!("{:.1}", t as f64 / 1e9));
            let _ = writeln!(
                s,
                "  #{:<3} {:>6.1}-{stop:>6} s  {:<10} {}",
                w.id,
                w.start_ns as f64 / 1e9,
                w.fault,
                w.detail
            );
        }
        let n_lin = self
            .keys
            .iter()
            .filter(|k| k.result == "linearizable")
            .count();
        let _ = writeln!(
            s,
            "linearizability: {n_lin} of {} keys linearizable",
            self.keys.len()
        );
        for k in &self.keys {
            let _ = writeln!(
                s,
                "  {:<12} {:<17} {} ops, {} unknown",
                k.key, k.result, k.ops, k.unknown
            );
            if let Some(e) = &k.explanation {
                for line in e.lines() {
                    let _ = writeln!(s, "      {line}");
                }
            }
        }
        let _ = writeln!(
            s,
            "lost acknowledged writes: {} (of {} acknowledged; {} never observed but possibly overwritten)",
            self.lost_writes.len(),
            self.acknowledged_writes,
            self.unobserved_writes
        );
        for l in &self.lost_writes {
            let _ = writeln!(
                s,
                "  LOST {}={} by process {}, acknowledged at {:.3} s",
                l.key,
                l.value,
                l.process,
                l.return_ns as f64 / 1e9
            );
        }
        let _ = writeln!(s, "availability by fault (all stretches with that label):");
        let _ = writeln!(
            s,
            "  {:<34} {:>7} {:>7} {:>6} {:>6} {:>6}",
            "faults active", "secs", "ok/s", "ok%", "fail", "info"
        );
        for w in self.by_fault.values() {
            let _ = writeln!(
                s,
                "  {:<34} {:>7.1} {:>7.1} {:>5.0}% {:>6} {:>6}",
                w.label,
                (w.end_ns - w.start_ns) as f64 / 1e9,
                w.ok_per_sec,
                w.counts.ok_ratio() * 100.0,
                w.counts.fail,
                w.counts.info
            );
        }
        let _ = writeln!(s, "availability over time (ok per second):");
        for (i, chunk) in self.timeline.chunks(10).enumerate() {
            let row: Vec<String> = chunk.iter().map(|c| format!("{:>4}", c.ok)).collect();
            let _ = writeln!(s, "  {:>4}s {}", i * 10, row.join(""));
        }
        let _ = writeln!(
            s,
            "verdict: {}",
            if self.valid { "VALID" } else { "INVALID" }
        );
        s
    }

    /// Writes `<history>.report.txt` and `<history>.report.json` beside the history and returns
    /// their paths.
    pub fn write_beside(&self, history: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        let txt = history.with_extension("report.txt");
        let json = history.with_extension("report.json");
        std::fs::write(&txt, self.text())?;
        let body = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&json, body)?;
        Ok((txt, json))
    }
}

/// Reads and checks a history file.
pub fn check_file(path: &Path) -> Result<Report, HistoryError> {
    let entries = read_history(path)?;
    let mut r = check_entries(&entries)?;
    r.history = Some(path.to_path_buf());
    Ok(r)
}

/// Pairs invocations with completions. A process with an operation in flight may not invoke
/// another; a completion must follow an invocation of the same `f`.
pub fn pair_ops(entries: &[Entry]) -> Result<(Vec<ClientOp>, Vec<FaultWindow>), HistoryError> {
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut ops: Vec<ClientOp> = Vec::new();
    let mut faults: Vec<FaultWindow> = Vec::new();
    let mut fault_ix: HashMap<u64, usize> = HashMap::new();
    let mut last_time = 0;
    for (i, e) in entries.iter().enumerate() {
        let line = i + 1;
        if e.time < last_time {
            return Err(HistoryError::malformed(line, "time goes backwards"));
        }
        last_time = e.time;
        let p = match &e.process {
            Process::Client(p) => *p,
            Process::Named(_) => {
                let id = e.value.get("id").and_then(Value::as_u64).unwrap_or(0);
                let text = |k: &str| {
                    e.value
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                match e.f.as_str() {
                    "start" => {
                        fault_ix.insert(id, faults.len());
                        faults.push(FaultWindow {
                            id,
                            fault: text("fault"),
                            detail: text("detail"),
                            start_ns: e.time,
                            stop_ns: None,
                        });
                    }
                    "stop" => {
                        if let Some(&ix) = fault_ix.get(&id) {
                            faults[ix].stop_ns = Some(e.time);
                        }
                    }
                    _ => {}
                }
                continue;
            }
        };
        if !matches!(e.f.as_str(), "read" | "write" | "cas" | "delete") {
            return Err(HistoryError::malformed(
                line,
                format!("unknown f {:?} (read, write, cas or delete)", e.f),
            ));
        }
        let Some(key) = e.key.clone() else {
            return Err(HistoryError::malformed(
                line,
                "a client operation needs a key",
            ));
        };
        match e.kind {
            Kind::Invoke => {
                if open.contains_key(&p) {
                    return Err(HistoryError::malformed(
                        line,
                        format!("process {p} invokes while an operation is in flight"),
                    ));
                }
                check_invoke_value(&e.f, &e.value).map_err(|m| HistoryError::malformed(line, m))?;
                open.insert(p, ops.len());
                ops.push(ClientOp {
                    process: p,
                    f: e.f.clone(),
                    key,
                    invoke_value: e.value.clone(),
                    kind: None,
                    value: Value::Null,
                    error: None,
                    call_ns: e.time,
                    return_ns: None,
                    node: e.node.clone(),
                });
            }
            k => {
                let Some(ix) = open.remove(&p) else {
                    return Err(HistoryError::malformed(
                        line,
                        format!("process {p} completes an operation it never invoked"),
                    ));
                };
                let o = &mut ops[ix];
                if o.f != e.f || o.key != key {
                    return Err(HistoryError::malformed(
                        line,
                        format!(
                            "process {p} completes {} {} but invoked {} {}",
                            e.f, key, o.f, o.key
                        ),
                    ));
                }
                o.kind = Some(k);
                o.value = e.value.clone();
                o.error = e.error.clone();
                o.return_ns = Some(e.time);
                if k == Kind::Ok {
                    check_ok_value(&o.f, &e.value).map_err(|m| HistoryError::malformed(line, m))?;
                }
            }
        }
    }
    Ok((ops, faults))
}

fn check_invoke_value(f: &str, v: &Value) -> Result<(), String> {
    let ok = match f {
        "write" => v.is_string(),
        "cas" => v.as_array().is_some_and(|a| {
            a.len() == 2 && (a[0].is_null() || a[0].is_string()) && a[1].is_string()
        }),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("bad invoke value {v} for {f}"))
    }
}

fn check_ok_value(f: &str, v: &Value) -> Result<(), String> {
    let ok = match f {
        "read" => v.is_null() || v.is_string(),
        "delete" => v.is_boolean(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("bad ok value {v} for {f}"))
    }
}

/// The checker's view of one client operation, or `None` if it certainly did nothing and
/// observed nothing.
fn to_operation(o: &ClientOp) -> Option<Operation> {
    let s = |v: &Value| v.as_str().map(String::from);
    let (op, ret) = match (o.f.as_str(), o.outcome()) {
        ("read", Kind::Ok) => (Op::Get, Some(Ret::GetOk(s(&o.value)))),
        ("read", _) => return None,
        ("write", Kind::Fail) => return None,
        ("write", k) => (
            Op::Put(s(&o.invoke_value)?),
            (k == Kind::Ok).then_some(Ret::PutOk),
        ),
        ("cas", k) => {
            let a = o.invoke_value.as_array()?;
            let op = Op::Cas {
                expect: s(&a[0]),
                new: s(&a[1])?,
            };
            let ret = match k {
                Kind::Ok => Some(Ret::CasOk(true)),
                Kind::Fail if o.error.as_deref() == Some(CAS_MISMATCH) => Some(Ret::CasOk(false)),
                Kind::Fail => return None,
                _ => None,
            };
            (op, ret)
        }
        ("delete", Kind::Fail) => return None,
        ("delete", k) => (
            Op::Delete,
            (k == Kind::Ok).then(|| Ret::DeleteOk(o.value.as_bool().unwrap_or(false))),
        ),
        _ => return None,
    };
    Some(Operation {
        op,
        return_ns: if ret.is_some() { o.return_ns } else { None },
        ret,
        call_ns: o.call_ns,
    })
}

fn describe(o: &ClientOp) -> String {
    let end = o.return_ns.map_or("  (open)".to_string(), |t| {
        format!("{:>10.3}", t as f64 / 1e9)
    });
    let err = o
        .error
        .as_deref()
        .map(|e| format!(" [{e}]"))
        .unwrap_or_default();
    format!(
        "{:>10.3}-{end} s  p{:<4} {:<6} {} -> {:?} {}{err}",
        o.call_ns as f64 / 1e9,
        o.process,
        o.f,
        o.invoke_value,
        o.kind.unwrap_or(Kind::Info),
        o.value,
    )
}

fn check_key(key: &str, ops: &[&ClientOp]) -> KeyReport {
    let mut idx = Vec::new();
    let mut wops = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        if let Some(w) = to_operation(o) {
            idx.push(i);
            wops.push(w);
        }
    }
    let unknown = wops.iter().filter(|w| w.ret.is_none()).count();
    let (result, explanation) = match wgl::check(&wops) {
        Outcome::Linearizable => ("linearizable", None),
        Outcome::GaveUp { steps } => (
            "unknown",
            Some(format!("the search gave up after {steps} steps")),
        ),
        Outcome::NotLinearizable {
            linearized,
            state,
            stuck,
        } => {
            let bad = ops[idx[stuck]];
            let mut e = format!(
                "the longest order found ({} operations, leaving the value {:?}) cannot take in:\n  {}\n\
                 operations around it:",
                linearized.len(),
                state,
                describe(bad)
            );
            // The operations overlapping the stuck one, and those just before it.
            let from = idx[stuck].saturating_sub(CONTEXT_OPS_MAX / 2);
            for o in ops.iter().skip(from).take(CONTEXT_OPS_MAX) {
                e.push_str("\n  ");
                e.push_str(&describe(o));
            }
            ("not-linearizable", Some(e))
        }
    };
    KeyReport {
        key: key.to_string(),
        ops: wops.len(),
        unknown,
        result: result.into(),
        explanation,
    }
}

/// Lost and unobserved acknowledged writes of one key (see the module docs).
fn lost_writes(key: &str, ops: &[&ClientOp]) -> (usize, usize, Vec<LostWrite>) {
    let mut observed: BTreeSet<&str> = BTreeSet::new();
    for o in ops {
        match (o.f.as_str(), o.outcome()) {
            ("read", Kind::Ok) => {
                if let Some(v) = o.value.as_str() {
                    observed.insert(v);
                }
            }
            ("cas", Kind::Ok) => {
                if let Some(v) = o.invoke_value.get(0).and_then(Value::as_str) {
                    observed.insert(v);
                }
            }
            _ => {}
        }
    }
    let (mut acked, mut unobserved, mut lost) = (0, 0, Vec::new());
    for (i, w) in ops.iter().enumerate() {
        let Some(v) = w.written_value() else {
            continue;
        };
        acked += 1;
        if observed.contains(v) {
            continue;
        }
        let acked_at = w.return_ns.unwrap_or(u64::MAX);
        let read_after = ops
            .iter()
            .any(|r| r.f == "read" && r.outcome() == Kind::Ok && r.call_ns > acked_at);
        if !read_after {
            continue;
        }
        // Only an acknowledged mutation is known to be over before W began; one with an unknown
        // outcome may take effect at any time after its invocation, even long after the client
        // gave up on it.
        let overwritable = ops.iter().enumerate().any(|(j, m)| {
            let acked_before =
                m.outcome() == Kind::Ok && m.return_ns.is_some_and(|t| t < w.call_ns);
            j != i && m.may_have_mutated() && !acked_before
        });
        if overwritable {
            unobserved += 1;
        } else {
            lost.push(LostWrite {
                key: key.to_string(),
                value: v.to_string(),
                process: w.process,
                call_ns: w.call_ns,
                return_ns: acked_at,
            });
        }
    }
    (acked, unobserved, lost)
}

/// Stretches of time with a constant set of active faults.
fn stretches(faults: &[FaultWindow], end_ns: u64) -> Vec<(u64, u64, String)> {
    let mut cuts: BTreeSet<u64> = BTreeSet::from([0, end_ns]);
    for f in faults {
        cuts.insert(f.start_ns.min(end_ns));
        cuts.insert(f.stop_ns.unwrap_or(end_ns).min(end_ns));
    }
    let cuts: Vec<u64> = cuts.into_iter().collect();
    let mut out: Vec<(u64, u64, String)> = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a == b {
            continue;
        }
        let mut active: Vec<&str> = faults
            .iter()
            .filter(|f| f.start_ns <= a && f.stop_ns.is_none_or(|s| s >= b))
            .map(|f| f.fault.as_str())
            .collect();
        active.sort_unstable();
        active.dedup();
        let label = if active.is_empty() {
            "none".to_string()
        } else {
            active.join("+")
        };
        match out.last_mut() {
            Some(last) if last.2 == label => last.1 = b,
            _ => out.push((a, b, label)),
        }
    }
    out
}

/// Checks paired entries: see the module docs for what is checked.
pub fn check_entries(entries: &[Entry]) -> Result<Report, HistoryError> {
    let (ops, faults) = pair_ops(entries)?;
    let duration_ns = entries.last().map_or(0, |e| e.time);

    let mut counts = Counts::default();
    let mut counts_by_f: BTreeMap<String, Counts> = BTreeMap::new();
    let mut processes = BTreeSet::new();
    let mut by_key: BTreeMap<&str, Vec<&ClientOp>> = BTreeMap::new();
    for o in &ops {
        counts.add(o.outcome());
        counts_by_f.entry(o.f.clone()).or_default().add(o.outcome());
        processes.insert(o.process);
        by_key.entry(&o.key).or_default().push(o);
    }
    let mut faults_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for f in &faults {
        *faults_by_kind.entry(f.fault.clone()).or_default() += 1;
    }

    let mut keys = Vec::new();
    let (mut acknowledged_writes, mut unobserved_writes, mut lost) = (0, 0, Vec::new());
    for (key, kops) in &by_key {
        keys.push(check_key(key, kops));
        let (a, u, l) = lost_writes(key, kops);
        acknowledged_writes += a;
        unobserved_writes += u;
        lost.extend(l);
    }

    // Availability: each completed operation counts at its completion time.
    let n_buckets = (duration_ns / BUCKET_NS + 1) as usize;
    let mut timeline = vec![Counts::default(); n_buckets];
    for o in &ops {
        if let (Some(k), Some(t)) = (o.served(), o.return_ns) {
            timeline[(t / BUCKET_NS) as usize].add(k);
        }
    }
    let mut windows = Vec::new();
    let mut by_fault: BTreeMap<String, WindowReport> = BTreeMap::new();
    for (a, b, label) in stretches(&faults, duration_ns) {
        let mut c = Counts::default();
        for o in &ops {
            if let (Some(k), Some(t)) = (o.served(), o.return_ns)
                && t >= a
                && t < b
            {
                c.add(k);
            }
        }
        let secs = (b - a) as f64 / 1e9;
        let agg = by_fault
            .entry(label.clone())
            .or_insert_with(|| WindowReport {
                label: label.clone(),
                start_ns: 0,
                end_ns: 0,
                counts: Counts::default(),
                ok_per_sec: 0.0,
            });
        agg.end_ns += b - a;
        agg.counts.ok += c.ok;
        agg.counts.fail += c.fail;
        agg.counts.info += c.info;
        agg.ok_per_sec = agg.counts.ok as f64 / ((agg.end_ns as f64 / 1e9).max(1e-9));
        windows.push(WindowReport {
            label,
            start_ns: a,
            end_ns: b,
            ok_per_sec: c.ok as f64 / secs.max(1e-9),
            counts: c,
        });
    }

    let valid = keys.iter().all(|k| k.result == "linearizable") && lost.is_empty();
    Ok(Report {
        history: None,
        duration_ns,
        processes: processes.len(),
        ops: ops.len(),
        counts,
        counts_by_f,
        faults_by_kind,
        faults,
        keys,
        acknowledged_writes,
        unobserved_writes,
        lost_writes: lost,
        windows,
        by_fault,
        timeline,
        valid,
    })
}

#[cfg(test)]
#[path = "checker_tests.rs"]
mod tests;
