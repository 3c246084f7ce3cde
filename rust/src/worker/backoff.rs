//! Delays: before retrying a failed job, and before talking to the database
//! again after a connection failure.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// First wait before talking to the database again after a connection
/// failure; doubles up to [`RECONNECT_MAX`].
pub const RECONNECT_MIN: Duration = Duration::from_millis(50);
/// Longest wait between attempts to reach the database again.
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Delay after failed attempt number `attempts` (1 for the first):
/// `base * 2^(attempts-1)`, capped at `max`, spread by +-`jitter` (as Python's `Backoff`).
pub(crate) fn backoff(base: Duration, max: Duration, jitter: f64, attempts: i32) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).clamp(0, 30) as u32));
    let spread = 1.0 + jitter * (2.0 * random_fraction() - 1.0);
    exp.min(max).mul_f64(spread).min(max)
}

/// A number in [0, 1), from the standard library's randomly seeded hasher.
pub(crate) fn random_fraction() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Exponential wait (with +-20% jitter) between attempts to reach the database.
#[derive(Debug)]
pub(crate) struct Reconnect {
    next: Duration,
    failures: u32,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect { next: RECONNECT_MIN, failures: 0 }
    }
}

impl Reconnect {
    /// Record a failure; return the time to wait before the next attempt.
    pub(crate) fn failed(&mut self) -> Duration {
        self.failures += 1;
        let wait = self.next;
        self.next = (self.next * 2).min(RECONNECT_MAX);
        wait.mul_f64(0.8 + 0.4 * random_fraction())
    }

    /// Record a success; true when it ends a run of failures (worth a log line).
    pub(crate) fn succeeded(&mut self) -> bool {
        let recovered = self.failures > 0;
        *self = Reconnect::default();
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
    fn backoff_grows_with_jitter_and_is_capped() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempts in 1..=10 {
            let full = (base * 2u32.pow(attempts as u32 - 1)).min(max);
            assert_eq!(backoff(base, max, 0.0, attempts), full);
            let d = backoff(base, max, 0.25, attempts);
            assert!(d >= full.mul_f64(0.75) && d <= full.mul_f64(1.25).min(max), "{attempts}: {d:?}");
        }
        let samples: std::collections::HashSet<_> = (0..20).map(|_| backoff(base, max, 0.25, 5)).collect();
        assert!(samples.len() > 1, "jitter varies the delay");
    }

    #[test]
    fn reconnect_doubles_up_to_its_cap_and_resets() {
        let mut r = Reconnect::default();
        let first = r.failed();
        assert!(first >= RECONNECT_MIN.mul_f64(0.8) && first <= RECONNECT_MIN.mul_f64(1.2));
        for _ in 0..20 {
            assert!(r.failed() <= RECONNECT_MAX.mul_f64(1.2));
        }
        assert_eq!(r.failures(), 21);
        assert!(r.succeeded());
        assert!(!r.succeeded());
        assert_eq!(r.failures(), 0);
    }
}
