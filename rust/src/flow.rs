//! Flow control (docs/flow-control.md): the values of a queue's limits, as
//! Python's `RateLimit` and `Admin.update_queue`. The limits themselves are
//! enforced by the server's dequeue (`message_dequeue_limited`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// Longest message group accepted, in characters (the schema's CHECK says the same).
pub const MAX_GROUP_LENGTH: usize = 128;
/// Longest rate period accepted (a leap year; the schema's CHECK says the same).
pub const MAX_RATE_PERIOD: Duration = Duration::from_secs(31_622_400);

/// At most `count` dequeues per `period`, across every consumer and worker
/// (a token bucket in the database: bursts up to `count`, then
/// `count / period` per second). `per_group`: one bucket per message group.
/// Parse `"100/s"` (also `/m`, `/h`, `"10/2s"`) with `str::parse`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub count: i32,
    pub period: Duration,
    pub per_group: bool,
}

impl RateLimit {
    /// `count` per `period`, checked.
    pub fn new(count: i32, period: Duration) -> Result<RateLimit> {
        let rate = RateLimit { count, period, per_group: false };
        rate.check()?;
        Ok(rate)
    }

    /// The same rate, kept per message group.
    pub fn per_group(mut self) -> RateLimit {
        self.per_group = true;
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.count < 1 {
            return Err(Error::invalid(format!("rate limit count must be >= 1, got {}", self.count)));
        }
        if self.period.is_zero() || self.period > MAX_RATE_PERIOD {
            return Err(Error::invalid(format!(
                "rate limit period must be > 0 and at most {} seconds (a year), got {:?}",
                MAX_RATE_PERIOD.as_secs(),
                self.period
            )));
        }
        Ok(())
    }

    pub(crate) fn from_columns(
        count: Option<i32>,
        period: Option<f64>,
        per_group: bool,
    ) -> Option<RateLimit> {
        match (count, period) {
            (Some(count), Some(period)) => {
                Some(RateLimit { count, period: Duration::from_secs_f64(period), per_group })
            }
            _ => None,
        }
    }
}

impl FromStr for RateLimit {
    type Err = Error;

    /// `"100/s"`, `"600/m"`, `"5000/h"`, `"10/2s"` (as Python's `RateLimit.parse`).
    fn from_str(text: &str) -> Result<RateLimit> {
        let malformed = || {
            Error::invalid(format!(
                "malformed rate limit {text:?}: use COUNT/UNIT with UNIT s, m or h \
                 (e.g. '100/s', '600/m', '10/2s')"
            ))
        };
        let (count, per) = text.trim().split_once('/').ok_or_else(malformed)?;
        let count = count.trim();
        if count.is_empty() || count.len() > 10 || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let count: i64 = count.parse().map_err(|_| malformed())?;
        let per = per.trim();
        let split = per.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(malformed)?;
        let (amount, unit) = per.split_at(split);
        let amount: f64 = if amount.is_empty() { 1.0 } else { amount.parse().map_err(|_| malformed())? };
        let unit = unit.trim();
        let unit = unit.strip_suffix('s').filter(|u| !u.is_empty()).unwrap_or(unit);
        let secs = match unit {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => return Err(malformed()),
        };
        let count = i32::try_from(count)
            .map_err(|_| Error::invalid(format!("rate limit {text:?}: the count is too large")))?;
        let period = amount * secs;
        if !(period > 0.0 && period <= MAX_RATE_PERIOD.as_secs_f64()) {
            return Err(Error::invalid(format!(
                "rate limit {text:?}: the period must be > 0 and at most a year"
            )));
        }
        RateLimit::new(count, Duration::from_secs_f64(period))
            .map_err(|e| Error::invalid(format!("rate limit {text:?}: {}", e.message())))
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.period.as_secs_f64();
        if secs == 1.0 {
            write!(f, "{}/s", self.count)?;
        } else if secs == 60.0 {
            write!(f, "{}/m", self.count)?;
        } else if secs == 3600.0 {
            write!(f, "{}/h", self.count)?;
        } else {
            write!(f, "{}/{secs}s", self.count)?;
        }
        if self.per_group {
            write!(f, " per group")?;
        }
        Ok(())
    }
}

/// A change to a queue's limits, for [`Admin::update_queue`](crate::Admin::update_queue):
/// a field left `None` is not changed; `Some(None)` removes the limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueUpdate {
    pub concurrency_limit: Option<Option<i32>>,
    pub group_concurrency: Option<Option<i32>>,
    pub rate_limit: Option<Option<RateLimit>>,
}

/// A concurrency limit: >= 1, or None for no limit.
pub(crate) fn check_limit(value: Option<i32>, what: &str) -> Result<()> {
    match value {
        Some(n) if n < 1 => {
            Err(Error::invalid(format!("{what} must be >= 1 (or None for no limit), got {n}")))
        }
        _ => Ok(()),
    }
}

/// A message group: a non-empty string of at most [`MAX_GROUP_LENGTH`] characters without NUL.
pub(crate) fn check_group(group: &str) -> Result<()> {
    if group.is_empty() || group.contains('\0') || group.chars().count() > MAX_GROUP_LENGTH {
        let shown: String = group.chars().take(60).collect();
        return Err(Error::invalid(format!(
            "group must be a non-empty string of at most {MAX_GROUP_LENGTH} characters without NUL, got {shown:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!(
            "100/s".parse::<RateLimit>().unwrap(),
            RateLimit::new(100, Duration::from_secs(1)).unwrap()
        );
        assert_eq!("600/m".parse::<RateLimit>().unwrap().period, Duration::from_secs(60));
        assert_eq!("5000/h".parse::<RateLimit>().unwrap().period, Duration::from_secs(3600));
        assert_eq!("10/2s".parse::<RateLimit>().unwrap().period, Duration::from_secs(2));
        for bad in ["fast", "10/fortnight", "0/s", "-1/s", "/s", "10/", ""] {
            let err = bad.parse::<RateLimit>().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
        }
        assert_eq!(
            RateLimit::new(10, Duration::from_secs(60)).unwrap().per_group().to_string(),
            "10/m per group"
        );
    }
}
