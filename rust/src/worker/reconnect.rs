//! The wait before talking to the database again after a connection failure
//! (as Python's `Reconnect`): exponential, with jitter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::defaults::{DEFAULT_RECONNECT_MAX, DEFAULT_RECONNECT_MIN};

/// A number in [0, 1), from the standard library's randomly seeded hasher.
pub(crate) fn random_fraction() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Exponential wait (with +-20% jitter) between attempts to reach the
/// database: `low` first, doubling up to `high`.
#[derive(Debug)]
pub(crate) struct Reconnect {
    low: Duration,
    high: Duration,
    next: Duration,
    failures: u32,
}

impl Default for Reconnect {
    /// From [`DEFAULT_RECONNECT_MIN`] up to [`DEFAULT_RECONNECT_MAX`].
    fn default() -> Self {
        Reconnect::new(DEFAULT_RECONNECT_MIN, DEFAULT_RECONNECT_MAX)
    }
}

impl Reconnect {
    pub(crate) fn new(low: Duration, high: Duration) -> Reconnect {
        Reconnect { low, high, next: low, failures: 0 }
    }

    /// Record a failure; return the time to wait before the next attempt.
    pub(crate) fn failed(&mut self) -> Duration {
        self.failures += 1;
        let wait = self.next;
        self.next = (self.next * 2).min(self.high);
        wait.mul_f64(0.8 + 0.4 * random_fraction())
    }

    /// Record a success; true when it ends a run of failures (worth a log line).
    pub(crate) fn succeeded(&mut self) -> bool {
        let recovered = self.failures > 0;
        self.failures = 0;
        self.next = self.low;
        recovered
    }

    /// Consecutive failures (0 while healthy); callers log the first loudly.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_doubles_up_to_its_cap_and_resets() {
        let mut r = Reconnect::default();
        let first = r.failed();
        assert!(first >= DEFAULT_RECONNECT_MIN.mul_f64(0.8) && first <= DEFAULT_RECONNECT_MIN.mul_f64(1.2));
        for _ in 0..20 {
            assert!(r.failed() <= DEFAULT_RECONNECT_MAX.mul_f64(1.2));
        }
        assert_eq!(r.failures(), 21);
        assert!(r.succeeded());
        assert!(!r.succeeded());
        assert_eq!(r.failures(), 0);
        let again = r.failed();
        assert!(again <= DEFAULT_RECONNECT_MIN.mul_f64(1.2), "back to the first wait: {again:?}");
    }
}
