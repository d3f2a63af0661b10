//! The one source of randomness for Meridian's own decisions (election timeouts, retry jitter,
//! request ids): a per-thread generator seeded from the OS, which a deterministic simulation
//! reseeds so the same seed replays the same run.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// Runs `f` with this thread's generator.
pub fn with<R>(f: impl FnOnce(&mut SmallRng) -> R) -> R {
    RNG.with(|r| f(&mut r.borrow_mut()))
}

/// A random `u64` from this thread's generator.
pub fn next_u64() -> u64 {
    with(|r| r.random())
}

/// A random `u128` from this thread's generator.
pub fn next_u128() -> u128 {
    with(|r| r.random())
}

/// Reseeds this thread's generator (deterministic simulation only: every simulated host runs on
/// the simulation's thread).
pub fn reseed(seed: u64) {
    RNG.with(|r| *r.borrow_mut() = SmallRng::seed_from_u64(seed));
}

#[cfg(test)]
mod tests {
    #[test]
    fn reseeding_replays_the_sequence() {
        super::reseed(7);
        let a: Vec<u64> = (0..4).map(|_| super::next_u64()).collect();
        super::reseed(7);
        let b: Vec<u64> = (0..4).map(|_| super::next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(a[0], a[1]);
    }
}
