//! A simulated wide-area network: per-region-pair round-trip time, jitter and loss from a
//! table, added by a [`WanTransport`] wrapped around any other transport. Used by the playground
//! and tests to make a cluster on one machine behave like one spread over continents.
//!
//! Table syntax (`--wan`): `none`, or comma-separated entries `KEY=RTT[~JITTER][/LOSS%]`, where
//! `KEY` is a region pair `a:b` (symmetric) or `local` (two nodes of the same region), `RTT` and
//! `JITTER` are durations (`75ms`, `1.5ms`, `500us`, `2s`) and `LOSS` a percentage. Example:
//! `us-east:eu-west=75ms~5ms/1%,us-east:ap-south=190ms,eu-west:ap-south=120ms,local=1.5ms~0.5ms`.
//! Without a `local` entry two nodes of one region are [`LOCAL_DEFAULT`] apart; a pair of
//! regions the table does not name gets no added delay.

use crate::envelope::{Envelope, Transport};
use crate::error::{TransportError, WanTableError};
use futures::FutureExt;
use futures::future::BoxFuture;
use meridian_types::NodeId;
use parking_lot::RwLock;
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Round trip between two nodes of one region when the table has no `local` entry: 1–2 ms.
pub const LOCAL_DEFAULT: WanLink = WanLink {
    rtt: Duration::from_micros(1500),
    jitter: Duration::from_micros(500),
    loss: 0.0,
};

/// Longest round trip or jitter a table may name.
pub const WAN_RTT_MAX: Duration = Duration::from_secs(10);

/// One link of the table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WanLink {
    /// Added round-trip time.
    pub rtt: Duration,
    /// Each call's round trip is `rtt` plus a uniform value in `[-jitter, +jitter]`.
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a call is lost.
    pub loss: f64,
}

impl WanLink {
    /// This call's added round trip.
    fn sample_rtt(&self) -> Duration {
        if self.jitter.is_zero() {
            return self.rtt;
        }
        let j = self.jitter.as_secs_f64();
        let d = meridian_types::rng::with(|r| r.random_range(-j..=j));
        Duration::from_secs_f64((self.rtt.as_secs_f64() + d).max(0.0))
    }

    fn is_lost(&self) -> bool {
        self.loss > 0.0 && meridian_types::rng::with(|r| r.random_bool(self.loss.min(1.0)))
    }
}

impl fmt::Display for WanLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", fmt_duration(self.rtt))?;
        if !self.jitter.is_zero() {
            write!(f, "~{}", fmt_duration(self.jitter))?;
        }
        if self.loss > 0.0 {
            write!(f, "/{}%", self.loss * 100.0)?;
        }
        Ok(())
    }
}

/// Round trips between regions. `Display` prints it back in the syntax it parses.
#[derive(Clone, Debug, PartialEq)]
pub struct WanTable {
    /// Keyed by the region pair in name order.
    pairs: BTreeMap<(String, String), WanLink>,
    /// Between two nodes of the same region; `None` for the `none` table.
    local: Option<WanLink>,
}

impl WanTable {
    /// The table that adds nothing.
    pub fn none() -> Self {
        Self {
            pairs: BTreeMap::new(),
            local: None,
        }
    }

    /// Whether the table adds nothing at all.
    pub fn is_none(&self) -> bool {
        self.pairs.is_empty() && self.local.is_none()
    }

    /// Parses the `--wan` syntax (see the module docs).
    pub fn parse(s: &str) -> Result<Self, WanTableError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") {
            return Ok(Self::none());
        }
        if s.is_empty() {
            return Err(WanTableError::Empty);
        }
        let mut t = Self {
            pairs: BTreeMap::new(),
            local: Some(LOCAL_DEFAULT),
        };
        let mut local_seen = false;
        for entry in s.split(',').map(str::trim) {
            let bad = |detail: String| WanTableError::BadEntry {
                entry: entry.to_string(),
                detail,
            };
            let (key, spec) = entry
                .split_once('=')
                .ok_or_else(|| bad("want KEY=RTT, e.g. us-east:eu-west=75ms".into()))?;
            let link = parse_link(spec.trim()).map_err(bad)?;
            let key = key.trim();
            if key == "local" {
                if local_seen {
                    return Err(bad("`local` given twice".into()));
                }
                local_seen = true;
                t.local = Some(link);
                continue;
            }
            let (a, b) = key
                .split_once(':')
                .map(|(a, b)| (a.trim(), b.trim()))
                .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains(':'))
                .ok_or_else(|| bad(format!("{key:?} is not `local` or a region pair a:b")))?;
            if a == b {
                return Err(bad(format!(
                    "{key:?} pairs a region with itself; use `local=` for in-region round trips"
                )));
            }
            if t.pairs.insert(pair_key(a, b), link).is_some() {
                return Err(bad(format!("the pair {a}:{b} is given twice")));
            }
        }
        Ok(t)
    }

    /// The link between regions `a` and `b` (the `local` one if they are the same), if the
    /// table names it.
    pub fn link(&self, a: &str, b: &str) -> Option<WanLink> {
        if a == b {
            self.local
        } else {
            self.pairs.get(&pair_key(a, b)).copied()
        }
    }

    /// The region pairs and their links, in name order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str, &WanLink)> {
        self.pairs
            .iter()
            .map(|((a, b), l)| (a.as_str(), b.as_str(), l))
    }

    /// The in-region link (`None` for the `none` table).
    pub fn local(&self) -> Option<WanLink> {
        self.local
    }
}

impl fmt::Display for WanTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let mut first = true;
        for (a, b, l) in self.pairs() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{a}:{b}={l}")?;
        }
        if let Some(l) = self.local {
            if !first {
                f.write_str(",")?;
            }
            write!(f, "local={l}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for WanTable {
    type Err = WanTableError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn pair_key(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

fn parse_link(spec: &str) -> Result<WanLink, String> {
    let (rest, loss) = match spec.split_once('/') {
        Some((r, l)) => {
            let pct = l
                .trim()
                .strip_suffix('%')
                .ok_or_else(|| format!("loss {l:?} must be a percentage, e.g. 1%"))?;
            let pct: f64 = pct
                .trim()
                .parse()
                .map_err(|_| format!("loss {l:?} is not a number followed by %"))?;
            if !(0.0..=100.0).contains(&pct) {
                return Err(format!("loss {l:?} is not between 0% and 100%"));
            }
            (r, pct / 100.0)
        }
        None => (spec, 0.0),
    };
    let (rtt, jitter) = match rest.split_once('~') {
        Some((r, j)) => (parse_duration(r)?, parse_duration(j)?),
        None => (parse_duration(rest)?, Duration::ZERO),
    };
    Ok(WanLink { rtt, jitter, loss })
}

/// `75ms`, `1.5ms`, `500us`, `2s`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit_s) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(format!(
            "duration {s:?} needs a unit: ms, us or s (e.g. 75ms)"
        ));
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("duration {s:?} is not a number with a unit"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("duration {s:?} must not be negative"));
    }
    let d = Duration::from_secs_f64(v * unit_s);
    if d > WAN_RTT_MAX {
        return Err(format!("duration {s:?} is over {WAN_RTT_MAX:?}"));
    }
    Ok(d)
}

fn fmt_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{}ms", us as f64 / 1000.0)
    }
}

/// Wraps a transport and delays (and loses) its calls as the [`WanTable`] says for the regions
/// of the caller and the callee. Half the round trip is waited before the call is sent, half
/// after its answer. A lost call is either never sent or its answer is dropped (even odds); the
/// caller then waits out the call's timeout, as with a lost packet. Calls to a node whose region
/// is not known yet are not delayed.
pub struct WanTransport {
    inner: Arc<dyn Transport>,
    table: Arc<WanTable>,
    region: String,
    regions: RwLock<HashMap<NodeId, String>>,
    /// For `call_addr`: the node behind an address, from `set_peer_addr`.
    addr_nodes: RwLock<HashMap<String, NodeId>>,
}

impl WanTransport {
    /// `region` is this node's own.
    pub fn new(inner: Arc<dyn Transport>, table: WanTable, region: impl Into<String>) -> Self {
        Self {
            inner,
            table: Arc::new(table),
            region: region.into(),
            regions: RwLock::new(HashMap::new()),
            addr_nodes: RwLock::new(HashMap::new()),
        }
    }

    pub fn table(&self) -> &WanTable {
        &self.table
    }

    fn link_to(&self, node: NodeId) -> Option<WanLink> {
        let regions = self.regions.read();
        self.table.link(&self.region, regions.get(&node)?)
    }

    fn delayed(
        link: Option<WanLink>,
        timeout: Duration,
        node: u64,
        call: impl FnOnce() -> BoxFuture<'static, Result<Vec<u8>, TransportError>> + Send + 'static,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let Some(link) = link else {
            return call();
        };
        let rtt = link.sample_rtt();
        let (there, back) = (rtt / 2, rtt - rtt / 2);
        // 0: delivered; 1: request lost; 2: answer lost.
        let lost = if link.is_lost() {
            1 + meridian_types::rng::with(|r| r.random_range(0..2u8))
        } else {
            0
        };
        async move {
            let whole = async {
                tokio::time::sleep(there).await;
                if lost == 1 {
                    std::future::pending::<()>().await;
                }
                let r = call().await;
                if lost == 2 {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(back).await;
                r
            };
            match tokio::time::timeout(timeout, whole).await {
                Ok(r) => r,
                Err(_) => Err(TransportError::Timeout { node }),
            }
        }
        .boxed()
    }
}

impl Transport for WanTransport {
    fn call(&self, env: Envelope) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let link = self.link_to(env.to);
        let (timeout, node) = (env.timeout, env.to.0);
        let inner = self.inner.clone();
        Self::delayed(link, timeout, node, move || inner.call(env))
    }

    fn set_peer_addr(&self, node: NodeId, addr: String) {
        self.addr_nodes.write().insert(addr.clone(), node);
        self.inner.set_peer_addr(node, addr);
    }

    fn set_peer_region(&self, node: NodeId, region: String) {
        self.regions.write().insert(node, region.clone());
        self.inner.set_peer_region(node, region);
    }

    fn call_addr(
        &self,
        addr: &str,
        env: Envelope,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let node = self.addr_nodes.read().get(addr).copied();
        let link = node.and_then(|n| self.link_to(n));
        let timeout = env.timeout;
        let inner = self.inner.clone();
        let addr = addr.to_string();
        Self::delayed(link, timeout, node.map_or(0, |n| n.0), move || {
            inner.call_addr(&addr, env)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Handler;
    use crate::sim::SimNetwork;
    use meridian_types::{ClusterId, GroupId};

    const TABLE: &str = "us-east:eu-west=75ms,us-east:ap-south=190ms~10ms,eu-west:ap-south=120ms/100%,local=1.5ms~0.5ms";

    #[test]
    fn parses_prints_and_looks_up() {
        let t = WanTable::parse(TABLE).unwrap();
        assert_eq!(
            t.link("eu-west", "us-east").unwrap().rtt,
            Duration::from_millis(75)
        );
        let l = t.link("ap-south", "us-east").unwrap();
        assert_eq!(
            (l.rtt, l.jitter),
            (Duration::from_millis(190), Duration::from_millis(10))
        );
        assert_eq!(t.link("ap-south", "eu-west").unwrap().loss, 1.0);
        assert_eq!(t.link("x", "x").unwrap().rtt, Duration::from_micros(1500));
        assert_eq!(t.link("us-east", "mars"), None);
        assert_eq!(WanTable::parse(&t.to_string()).unwrap(), t);
        let d = WanTable::parse("a:b=2s").unwrap();
        assert_eq!(d.local(), Some(LOCAL_DEFAULT));
        assert!(WanTable::parse(" none ").unwrap().is_none());
        assert_eq!(WanTable::none().to_string(), "none");
        let l = WanTable::parse("local=0.25ms").unwrap();
        assert_eq!(l.local().unwrap().rtt, Duration::from_micros(250));
    }

    #[test]
    fn bad_tables_name_the_bad_part() {
        for (bad, want) in [
            ("", "empty"),
            ("us-east:eu-west", "KEY=RTT"),
            ("us-east:eu-west=75", "needs a unit"),
            ("us-east:eu-west=fastms", "not a number"),
            ("us-east=75ms", "region pair"),
            ("a:b:c=75ms", "region pair"),
            ("a:a=75ms", "itself"),
            ("a:b=1ms,b:a=2ms", "twice"),
            ("a:b=1ms/5", "percentage"),
            ("a:b=1ms/150%", "between"),
            ("a:b=-1ms", "negative"),
            ("a:b=1ms,local=1ms,local=2ms", "twice"),
            ("a:b=99s", "over"),
        ] {
            let e = WanTable::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
            if !bad.is_empty() {
                assert!(e.contains("entry"), "{bad:?}: {e}");
            }
        }
    }

    struct Echo;
    impl Handler for Echo {
        fn handle(&self, env: Envelope) -> BoxFuture<'static, Result<Vec<u8>, String>> {
            async move { Ok(env.payload) }.boxed()
        }
    }

    fn env(to: u64, timeout: Duration) -> Envelope {
        Envelope {
            cluster_id: ClusterId(0),
            from: NodeId(1),
            to: NodeId(to),
            group: GroupId::META,
            method: "admin.ping".into(),
            payload: vec![7],
            timeout,
        }
    }

    /// `d` is in `[lo_ms, hi_ms]` (virtual time: exact, so an upper bound is safe).
    fn within(d: Duration, lo_ms: u64, hi_ms: u64) {
        assert!(
            d >= Duration::from_millis(lo_ms) && d <= Duration::from_millis(hi_ms),
            "{d:?} not in [{lo_ms}, {hi_ms}] ms"
        );
    }

    fn wan() -> WanTransport {
        let net = SimNetwork::new();
        for n in 1..=4 {
            net.register(NodeId(n), Arc::new(Echo));
        }
        let w = WanTransport::new(
            net.transport(NodeId(1)),
            WanTable::parse(TABLE).unwrap(),
            "us-east",
        );
        for (n, r) in [(2, "eu-west"), (3, "ap-south"), (4, "us-east")] {
            w.set_peer_region(NodeId(n), r.into());
        }
        w
    }

    #[tokio::test(start_paused = true)]
    async fn calls_take_the_table_round_trip() {
        let w = wan();
        let t0 = tokio::time::Instant::now();
        assert_eq!(
            w.call(env(2, Duration::from_secs(5))).await.unwrap(),
            vec![7]
        );
        // Virtual time: the table's round trip, plus tokio's timer rounding up each half to
        // the millisecond; nothing else sleeps.
        within(t0.elapsed(), 75, 77);
        for _ in 0..20 {
            let t0 = tokio::time::Instant::now();
            w.call(env(3, Duration::from_secs(5))).await.unwrap();
            within(t0.elapsed(), 180, 202);
            let t0 = tokio::time::Instant::now();
            w.call(env(4, Duration::from_secs(5))).await.unwrap();
            assert!(
                t0.elapsed() >= Duration::from_millis(1),
                "{:?}",
                t0.elapsed()
            );
        }
        // A node whose region is unknown is not delayed.
        let t0 = tokio::time::Instant::now();
        w.call(env(5, Duration::from_secs(5))).await.unwrap_err();
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_call_waits_out_its_timeout() {
        let w = WanTransport::new(
            wan().inner.clone(),
            WanTable::parse("us-east:eu-west=75ms/100%").unwrap(),
            "us-east",
        );
        w.set_peer_region(NodeId(2), "eu-west".into());
        let t0 = tokio::time::Instant::now();
        let e = w.call(env(2, Duration::from_secs(3))).await.unwrap_err();
        assert!(matches!(e, TransportError::Timeout { node: 2 }), "{e}");
        assert_eq!(t0.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn call_addr_is_delayed_once_the_address_is_known() {
        let w = wan();
        w.set_peer_addr(NodeId(2), "sim://2".into());
        let t0 = tokio::time::Instant::now();
        w.call_addr("sim://2", env(0, Duration::from_secs(5)))
            .await
            .unwrap();
        within(t0.elapsed(), 75, 77);
    }
}
