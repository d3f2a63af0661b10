//! Timeouts and retry bounds of a [`crate::Client`].

use std::time::Duration;

/// Most attempts of one call, over all endpoints, before giving up.
pub const ATTEMPTS_MAX: u32 = 6;

/// Longest one attempt may take, connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a TCP connect to one endpoint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause before retrying after every endpoint has failed once, doubled each further round.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// Longest pause between two rounds over the endpoints.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Largest gRPC response accepted (a scan page can be large).
pub const RESPONSE_BYTES_MAX: usize = 64 << 20;

/// Timeouts and retry bounds of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    pub attempts_max: u32,
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            attempts_max: ATTEMPTS_MAX,
            call_timeout: CALL_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            retry_backoff: RETRY_BACKOFF,
            retry_backoff_max: RETRY_BACKOFF_MAX,
        }
    }
}

impl ClientConfig {
    /// The pause before attempt `attempt` (0-based) over `n_endpoints`: none while untried
    /// endpoints remain in this round, then a doubling backoff at the start of each round.
    pub fn backoff_before(&self, attempt: u32, n_endpoints: usize) -> Duration {
        let n = u32::try_from(n_endpoints.max(1)).unwrap_or(u32::MAX);
        if attempt == 0 || !attempt.is_multiple_of(n) {
            return Duration::ZERO;
        }
        let round = attempt / n; // >= 1
        let factor = 1u32 << (round - 1).min(16);
        self.retry_backoff
            .saturating_mul(factor)
            .min(self.retry_backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_only_between_rounds() {
        let c = ClientConfig::default();
        assert_eq!(c.backoff_before(0, 3), Duration::ZERO);
        assert_eq!(c.backoff_before(1, 3), Duration::ZERO);
        assert_eq!(c.backoff_before(3, 3), RETRY_BACKOFF);
        assert_eq!(c.backoff_before(6, 3), RETRY_BACKOFF * 2);
        assert_eq!(c.backoff_before(1, 1), RETRY_BACKOFF);
        assert_eq!(c.backoff_before(2, 1), RETRY_BACKOFF * 2);
        assert_eq!(c.backoff_before(200, 1), RETRY_BACKOFF_MAX);
    }
}
