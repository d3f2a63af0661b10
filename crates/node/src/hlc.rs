//! The hybrid logical clock a range leader stamps on each write; the state machine turns it into
//! the write's revision. Physical milliseconds in the high bits, a counter in the low 16.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const LOGICAL_BITS: u32 = 16;

#[derive(Default)]
pub struct Hlc {
    last: AtomicU64,
}

impl Hlc {
    /// A reading greater than every earlier reading and every observed timestamp.
    pub fn now(&self) -> u64 {
        let phys = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
            << LOGICAL_BITS;
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
