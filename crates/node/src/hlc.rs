//! The hybrid logical clock a range leader stamps on each write; the state machine turns it into
//! the write's revision. Physical milliseconds in the high bits, a counter in the low 16.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bits of a reading that count within one millisecond.
pub(crate) const LOGICAL_BITS: u32 = 16;

/// The wall clock a node reads, in milliseconds since the Unix epoch. The system clock in
/// production; a simulation supplies its own (and makes it jump).
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl WallClock {
    pub fn system() -> Self {
        Self(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        }))
    }

    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WallClock")
    }
}

#[derive(Default)]
pub struct Hlc {
    last: AtomicU64,
    clock: WallClock,
}

impl Hlc {
    pub fn with_clock(clock: WallClock) -> Self {
        Self {
            last: AtomicU64::new(0),
            clock,
        }
    }

    /// A reading greater than every earlier reading and every observed timestamp, even when
    /// the wall clock steps back.
    pub fn now(&self) -> u64 {
        let phys = self.clock.now_ms() << LOGICAL_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = phys.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// Moves the clock past a timestamp seen elsewhere (a client's last revision).
    pub fn observe(&self, ts: u64) {
        self.last.fetch_max(ts, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_past_observed() {
        let h = Hlc::default();
        let a = h.now();
        let b = h.now();
        assert!(b > a);
        h.observe(b + 1_000_000);
        assert!(h.now() > b + 1_000_000);
    }
}
