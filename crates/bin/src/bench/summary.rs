//! What a benchmark measured: per-task [`Recorder`]s (latency histograms in microseconds and
//! error counts by code), merged into a [`Summary`] printed as text or JSON.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Lowest latency the histograms tell apart, in microseconds.
const LATENCY_US_MIN: u64 = 1;
/// Highest latency recorded exactly, in microseconds (60 s); longer ones count as this.
const LATENCY_US_MAX: u64 = 60_000_000;
/// Significant decimal digits the histograms keep.
const LATENCY_SIGFIG: u8 = 3;

/// One kind of request a benchmark sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Put,
    Get,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
        }
    }
}

/// An empty latency histogram with the benchmark's bounds.
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(LATENCY_US_MIN, LATENCY_US_MAX, LATENCY_SIGFIG) {
        Ok(h) => h,
        // Constant, valid bounds: failing here is a bug.
        Err(e) => panic!("latency histogram bounds are invalid: {e}"),
    }
}

/// Latencies and errors seen by one task (or merged over all).
#[derive(Clone, Debug)]
pub struct Recorder {
    /// Successful requests' latencies by kind, in microseconds.
    latency_us: BTreeMap<OpKind, Histogram<u64>>,
    /// Failed requests by stable error code.
    errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            latency_us: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    pub fn record_ok(&mut self, op: OpKind, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .entry(op)
            .or_insert_with(new_histogram)
            .saturating_record(us.max(LATENCY_US_MIN));
    }

    pub fn record_error(&mut self, code: &str) {
        *self.errors.entry(code.to_owned()).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: &Recorder) -> anyhow::Result<()> {
        for (op, h) in &other.latency_us {
            self.latency_us
                .entry(*op)
                .or_insert_with(new_histogram)
                .add(h)
                .map_err(|e| anyhow::anyhow!("merge latency histograms: {e:?}"))?;
        }
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_insert(0) += n;
        }
        Ok(())
    }

    pub fn ok(&self) -> u64 {
        self.latency_us.values().map(Histogram::len).sum()
    }

    pub fn errors(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Every kind's latencies in one histogram.
    fn all_latencies(&self) -> anyhow::Result<Histogram<u64>> {
        let mut all = new_histogram();
        for h in self.latency_us.values() {
            all.add(h)
                .map_err(|e| anyhow::anyhow!("merge latency histograms: {e:?}"))?;
        }
        Ok(all)
    }
}

/// Latency percentiles in milliseconds, rounded to microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// One kind's share of a mixed run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpSummary {
    pub ok: u64,
    pub latency_ms: LatencySummary,
}

/// What the run was, as the summary reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunInfo {
    pub op: &'static str,
    pub clients: usize,
    pub conns: usize,
    pub consistency: String,
    pub key_size: usize,
    pub value_size: usize,
    pub keys: u64,
    pub target_leader: bool,
}

/// The result of a run, for people (`render_text`) and programs (serde JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub info: RunInfo,
    /// Requests sent, successful or not.
    pub total: u64,
    pub ok: u64,
    pub errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    /// Successful requests per second.
    pub ops_per_sec: f64,
    /// Of successful requests.
    pub latency_ms: LatencySummary,
    /// Per kind of request, when the run mixed several.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_op: BTreeMap<OpKind, OpSummary>,
}

impl Summary {
    pub fn new(info: RunInfo, rec: &Recorder, elapsed: Duration) -> anyhow::Result<Self> {
        let ok = rec.ok();
        let errors = rec.errors();
        let secs = elapsed.as_secs_f64();
        let ops_per_sec = if secs > 0.0 { ok as f64 / secs } else { 0.0 };
        let by_op = if rec.latency_us.len() > 1 {
            rec.latency_us
                .iter()
                .map(|(op, h)| {
                    (
                        *op,
                        OpSummary {
                            ok: h.len(),
                            latency_ms: LatencySummary::of(h),
                        },
                    )
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        Ok(Self {
            info,
            total: ok + errors,
            ok,
            errors,
            errors_by_code: rec.errors.clone(),
            elapsed_s: round_to(secs, 3),
            ops_per_sec: round_to(ops_per_sec, 1),
            latency_ms: LatencySummary::of(&rec.all_latencies()?),
            by_op,
        })
    }

    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let i = &self.info;
        let _ = writeln!(
            s,
            "{} benchmark: {} clients over {} connections, {}-byte keys ({} distinct), {}-byte values{}{}",
            i.op,
            i.clients,
            i.conns,
            i.key_size,
            i.keys,
            i.value_size,
            if i.op == "put" {
                String::new()
            } else {
                format!(", {} reads", i.consistency)
            },
            if i.target_leader {
                ", sent to range leaders"
            } else {
                ""
            },
        );
        let _ = writeln!(s, "  total      {}", self.total);
        let _ = writeln!(s, "  ok         {}", self.ok);
        let codes: Vec<String> = self
            .errors_by_code
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        if codes.is_empty() {
            let _ = writeln!(s, "  errors     0");
        } else {
            let _ = writeln!(s, "  errors     {} ({})", self.errors, codes.join(", "));
        }
        let _ = writeln!(s, "  elapsed    {:.3} s", self.elapsed_s);
        let _ = writeln!(s, "  ops/s      {:.1}", self.ops_per_sec);
        let _ = writeln!(s, "  latency    {}", latency_line(&self.latency_ms));
        for (op, o) in &self.by_op {
            let _ = writeln!(
                s,
                "  {:<10} {} ok, {}",
                op.as_str(),
                o.ok,
                latency_line(&o.latency_ms)
            );
        }
        s
    }
}

/// `p50 1.234 ms  p90 ...  max ...`.
pub fn latency_line(l: &LatencySummary) -> String {
    format!(
        "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
        l.p50, l.p90, l.p99, l.p999, l.max
    )
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(op: &'static str) -> RunInfo {
        RunInfo {
            op,
            clients: 4,
            conns: 2,
            consistency: "linearizable".into(),
            key_size: 8,
            value_size: 128,
            keys: 100,
            target_leader: false,
        }
    }

    #[test]
    fn percentiles_in_milliseconds() {
        let mut rec = Recorder::new();
        for ms in 1..=100u64 {
            rec.record_ok(OpKind::Put, Duration::from_millis(ms));
        }
        let s = Summary::new(info("put"), &rec, Duration::from_secs(2)).unwrap();
        assert_eq!((s.total, s.ok, s.errors), (100, 100, 0));
        assert_eq!(s.ops_per_sec, 50.0);
        // Three significant digits: within 0.1% of the exact value.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 1e-9;
        assert!(close(s.latency_ms.p50, 50.0), "{:?}", s.latency_ms);
        assert!(close(s.latency_ms.p90, 90.0), "{:?}", s.latency_ms);
        assert!(close(s.latency_ms.p99, 99.0), "{:?}", s.latency_ms);
        assert!(close(s.latency_ms.p999, 100.0), "{:?}", s.latency_ms);
        assert!(close(s.latency_ms.max, 100.0), "{:?}", s.latency_ms);
        assert!(s.by_op.is_empty());
    }

    #[test]
    fn errors_are_counted_by_code_and_merged() {
        let mut a = Recorder::new();
        a.record_ok(OpKind::Get, Duration::from_micros(300));
        a.record_error("unavailable");
        let mut b = Recorder::new();
        b.record_error("unavailable");
        b.record_error("timeout");
        b.record_ok(OpKind::Put, Duration::from_micros(900));
        a.merge(&b).unwrap();
        let s = Summary::new(info("mixed"), &a, Duration::from_secs(1)).unwrap();
        assert_eq!((s.total, s.ok, s.errors), (5, 2, 3));
        assert_eq!(s.errors_by_code["unavailable"], 2);
        assert_eq!(s.errors_by_code["timeout"], 1);
        assert_eq!(s.by_op[&OpKind::Get].ok, 1);
        assert_eq!(s.by_op[&OpKind::Put].latency_ms.max, 0.9);
        let text = s.render_text();
        assert!(
            text.contains("errors     3 (timeout: 1, unavailable: 2)"),
            "{text}"
        );
        assert!(text.contains("ops/s      2.0"), "{text}");
    }

    #[test]
    fn json_has_the_documented_fields() {
        let mut rec = Recorder::new();
        rec.record_ok(OpKind::Put, Duration::from_millis(2));
        let s = Summary::new(info("put"), &rec, Duration::from_millis(500)).unwrap();
        let j = serde_json::to_value(&s).unwrap();
        for field in [
            "op",
            "clients",
            "total",
            "errors",
            "ops_per_sec",
            "latency_ms",
            "elapsed_s",
        ] {
            assert!(j.get(field).is_some(), "{field} missing from {j}");
        }
        for p in ["p50", "p90", "p99", "p999", "max"] {
            assert_eq!(j["latency_ms"][p], 2.0, "{p}");
        }
        assert_eq!(j["op"], "put");
        assert_eq!(j["ops_per_sec"], 2.0);
        assert!(j.get("by_op").is_none());
    }

    #[test]
    fn empty_runs_do_not_divide_by_zero() {
        let s = Summary::new(info("get"), &Recorder::new(), Duration::ZERO).unwrap();
        assert_eq!(s.ops_per_sec, 0.0);
        assert_eq!(s.latency_ms, LatencySummary::default());
        assert!(s.render_text().contains("p50 0.000 ms"));
    }

    #[test]
    fn latency_line_formats_three_decimals() {
        let l = LatencySummary {
            p50: 1.0,
            p90: 2.5,
            p99: 10.25,
            p999: 100.0,
            max: 1234.5678,
        };
        assert_eq!(
            latency_line(&l),
            "p50 1.000 ms  p90 2.500 ms  p99 10.250 ms  p99.9 100.000 ms  max 1234.568 ms"
        );
    }
}
