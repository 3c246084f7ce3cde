//! Schedules: a schedule's definition, its checks, and its slots, by the
//! same rule as Python's `pgqrs/_schedule.py` (docs/schedules.md; the shared
//! fixture `tests/data/schedule_slots.json` holds both to it):
//!
//! - A cron schedule's slots are local wall-clock times in its time zone:
//!   the cron library (croner) walks naive wall times, and each becomes one
//!   instant: a wall time that exists once, that instant; a repeated one
//!   (the clock goes back), its first occurrence only; a nonexistent one (the
//!   clock jumps forward), the instant of the jump (found to the second).
//! - An interval schedule's slots are the multiples of the interval (whole
//!   seconds) since 1970-01-01 00:00:00 UTC.
//!
//! Why not croner's own time-zone handling: it differs from Python's cronsim
//! around DST, and a slot must be the same whichever worker fires it.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::validate::validate_queue_name;

/// The aliases, as the five fields they stand for (both clients map them).
pub const ALIASES: &[(&str, &str)] = &[
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
];

/// How far a nonexistent wall time's jump is looked for.
const JUMP_WINDOW_SECS: i64 = 26 * 3600;

/// What happens to slots missed while no worker ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missed {
    /// Drop them (the default).
    #[default]
    Skip,
    /// Enqueue the most recent missed slot once.
    Latest,
}

impl Missed {
    /// The stored word: "skip" or "latest".
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::Latest => "latest",
        }
    }

    /// "skip" or "latest"; InvalidArgument naming anything else.
    pub fn parse(word: &str) -> Result<Missed> {
        match word {
            "skip" => Ok(Missed::Skip),
            "latest" => Ok(Missed::Latest),
            other => Err(Error::invalid(format!("missed must be 'skip' or 'latest', got {other:?}"))),
        }
    }
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Every {
    /// A cron expression (5 fields or an alias) in the schedule's time zone.
    Cron(String),
    /// Whole seconds (> 0).
    Interval(Duration),
}

/// A schedule to declare on a worker (`Worker::schedule`) or create
/// (`Admin::create_schedule`): build with [`Schedule::cron`] or
/// [`Schedule::interval`], then the optional setters.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub queue: String,
    pub payload: Value,
    pub every: Every,
    /// IANA time zone of the cron's wall times (default "UTC").
    pub time_zone: String,
    pub missed: Missed,
    pub headers: Option<Value>,
    pub priority: i32,
}

impl Schedule {
    /// Enqueue `payload` on `queue` at each slot of cron expression `cron`.
    pub fn cron(name: &str, cron: &str, queue: &str, payload: Value) -> Schedule {
        Schedule::new(name, Every::Cron(cron.to_string()), queue, payload)
    }

    /// Enqueue `payload` on `queue` every `interval` (whole seconds).
    pub fn interval(name: &str, interval: Duration, queue: &str, payload: Value) -> Schedule {
        Schedule::new(name, Every::Interval(interval), queue, payload)
    }

    fn new(name: &str, every: Every, queue: &str, payload: Value) -> Schedule {
        Schedule {
            name: name.to_string(),
            queue: queue.to_string(),
            payload,
            every,
            time_zone: "UTC".to_string(),
            missed: Missed::Skip,
            headers: None,
            priority: 0,
        }
    }

    /// The time zone of the cron's wall times (an IANA name).
    pub fn time_zone(mut self, tz: &str) -> Schedule {
        self.time_zone = tz.to_string();
        self
    }

    /// What to do with slots missed while no worker ran.
    pub fn missed(mut self, missed: Missed) -> Schedule {
        self.missed = missed;
        self
    }

    /// Headers stored with each message (a JSON object).
    pub fn headers(mut self, headers: Value) -> Schedule {
        self.headers = Some(headers);
        self
    }

    /// The messages' priority.
    pub fn priority(mut self, priority: i32) -> Schedule {
        self.priority = priority;
        self
    }

    /// Check everything (typed errors naming the value) and encode it.
    pub(crate) fn spec(&self, max_bytes: usize) -> Result<ScheduleSpec> {
        valid_schedule_name(&self.name)?;
        if self.queue.is_empty() {
            return Err(Error::invalid(format!("schedule {:?}: queue is missing", self.name)));
        }
        validate_queue_name(&self.queue)?;
        let (cron, interval) = match &self.every {
            Every::Cron(expr) => {
                cron_fields(expr)?;
                (Some(expr.trim().to_string()), None)
            }
            Every::Interval(d) => (None, Some(interval_seconds(*d)?)),
        };
        time_zone(&self.time_zone)?;
        Ok(ScheduleSpec {
            name: self.name.clone(),
            queue: self.queue.clone(),
            payload: crate::payload::encode(&self.payload, "payload", max_bytes)?,
            headers: crate::payload::encode_headers(self.headers.as_ref(), max_bytes)?,
            priority: self.priority,
            cron,
            interval,
            time_zone: self.time_zone.clone(),
            missed: self.missed,
        })
    }
}

/// A schedule's arguments, checked and encoded for `schedule_upsert`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScheduleSpec {
    pub name: String,
    pub queue: String,
    pub payload: String,
    pub headers: Option<String>,
    pub priority: i32,
    pub cron: Option<String>,
    pub interval: Option<i64>,
    pub time_zone: String,
    pub missed: Missed,
}

/// A stored schedule, from `Admin::list_schedules`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleInfo {
    pub name: String,
    pub queue: String,
    pub payload: Value,
    pub headers: Value,
    pub priority: i32,
    /// The cron expression as given (None for an interval schedule).
    pub cron: Option<String>,
    /// Seconds between slots (None for a cron schedule).
    pub interval: Option<i64>,
    pub time_zone: String,
    /// "skip" or "latest".
    pub missed: String,
    pub paused: bool,
    /// The next slot to fire (None: not planned yet).
    pub next_slot: Option<DateTime<Utc>>,
    pub last_slot: Option<DateTime<Utc>>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl ScheduleInfo {
    pub(crate) fn from_row(row: &tokio_postgres::Row) -> Result<ScheduleInfo> {
        use crate::db::col;
        Ok(ScheduleInfo {
            name: col(row, "name")?,
            queue: col(row, "queue")?,
            payload: col(row, "payload")?,
            headers: col(row, "headers")?,
            priority: col(row, "priority")?,
            cron: col(row, "cron")?,
            interval: col(row, "interval_seconds")?,
            time_zone: col(row, "time_zone")?,
            missed: col(row, "missed")?,
            paused: col(row, "paused")?,
            next_slot: col(row, "next_slot")?,
            last_slot: col(row, "last_slot")?,
            last_fired_at: col(row, "last_fired_at")?,
            created_at: col(row, "created_at")?,
        })
    }
}

/// A schedule name: 1-128 of `A-Z a-z 0-9 _ . : -`.
pub(crate) fn valid_schedule_name(name: &str) -> Result<&str> {
    let ok = (1..=128).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    if !ok {
        return Err(Error::invalid(format!(
            "schedule name must be 1-128 characters of A-Z a-z 0-9 _ . : -, got {name:?}"
        )));
    }
    Ok(name)
}

/// One list item of a field: `*`, a number or a 3-letter name, optionally a
/// range `-x`, optionally a step `/n` (the grammar Python checks by regex).
fn valid_item(item: &str) -> bool {
    fn atom(s: &str) -> bool {
        s == "*"
            || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            || (s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic()))
    }
    fn bound(s: &str) -> bool {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            || (s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic()))
    }
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (item, None),
    };
    if let Some(s) = step {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match range.split_once('-') {
        Some((a, b)) => atom(a) && bound(b),
        None => atom(range),
    }
}

/// `expr` as five fields (an alias expanded), checked by our grammar and
/// parsed by croner; InvalidArgument naming it otherwise.
pub fn cron_fields(expr: &str) -> Result<String> {
    let trimmed = expr.trim();
    let lower = trimmed.to_ascii_lowercase();
    let text =
        ALIASES.iter().find(|(a, _)| *a == lower).map(|(_, f)| f.to_string()).unwrap_or(trimmed.to_string());
    let fields: Vec<&str> = text.split_whitespace().collect();
    let aliases: Vec<&str> = ALIASES.iter().map(|(a, _)| *a).collect();
    if fields.len() != 5 || !fields.iter().all(|f| f.split(',').all(valid_item)) {
        return Err(Error::invalid(format!(
            "cron expression {expr:?} is not 5 fields (minute hour day-of-month month day-of-week: \
             numbers, names, *, ranges a-b, steps /n, lists a,b) or one of {}",
            aliases.join(", ")
        )));
    }
    let cron =
        parse(&text).map_err(|e| Error::invalid(format!("cron expression {expr:?} is invalid: {e}")))?;
    // A date that never comes (`0 0 30 2 *`): cronsim refuses it when parsing; croner only finds
    // no slot. Leap days repeat within 8 years, so 2000-01-01 sees every possible date.
    let start =
        chrono::NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).expect("valid");
    if cron.find_next_occurrence(&start, false).is_err() {
        return Err(Error::invalid(format!("cron expression {expr:?} is invalid: it matches no date")));
    }
    Ok(text)
}

fn parse(fields: &str) -> std::result::Result<Cron, croner::errors::CronError> {
    CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build().parse(fields)
}

/// The IANA time zone `name`; InvalidArgument naming it otherwise.
pub fn time_zone(name: &str) -> Result<Tz> {
    Tz::from_str(name).map_err(|_| {
        Error::invalid(format!("unknown time zone {name:?} (an IANA name such as 'UTC' or 'Europe/Berlin')"))
    })
}

/// A schedule's interval as whole seconds > 0.
pub fn interval_seconds(d: Duration) -> Result<i64> {
    if d.is_zero() || d.subsec_nanos() != 0 || d.as_secs() >= 1 << 53 {
        return Err(Error::invalid(format!("interval must be a whole number of seconds > 0, got {d:?}")));
    }
    Ok(d.as_secs() as i64)
}

fn offset_at(tz: &Tz, t: i64) -> i32 {
    let utc = DateTime::<Utc>::from_timestamp(t, 0).expect("in range").naive_utc();
    tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()
}

/// The instant of naive wall time `wall` in `tz`, by the rule above.
pub fn wall_to_instant(wall: NaiveDateTime, tz: &Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // Nonexistent: the instant of the jump, found to the second (as in Python).
            let as_utc = wall.and_utc().timestamp();
            let (mut lo, mut hi) = (as_utc - JUMP_WINDOW_SECS, as_utc + JUMP_WINDOW_SECS);
            let after = offset_at(tz, hi);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_at(tz, mid) == after {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            DateTime::<Utc>::from_timestamp(hi, 0).expect("in range")
        }
    }
}

/// When a stored schedule fires: its parsed cron in its zone, or its interval.
#[derive(Debug, Clone)]
pub enum Timing {
    Cron(Box<Cron>, Tz),
    Interval(i64),
}

impl Timing {
    /// From a stored schedule's cron (or interval) and time zone.
    pub fn new(cron: Option<&str>, interval: Option<i64>, zone: &str) -> Result<Timing> {
        match (cron, interval) {
            (Some(expr), None) => {
                let fields = cron_fields(expr)?;
                let parsed = parse(&fields).map_err(|e| Error::invalid(format!("{expr:?}: {e}")))?;
                Ok(Timing::Cron(Box::new(parsed), time_zone(zone)?))
            }
            (None, Some(secs)) if secs > 0 => Ok(Timing::Interval(secs)),
            _ => Err(Error::invalid("a schedule needs exactly one of cron and interval (> 0)")),
        }
    }

    /// The first slot strictly after instant `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>> {
        match self {
            Timing::Interval(step) => {
                let k = t.timestamp().div_euclid(*step);
                Ok(DateTime::<Utc>::from_timestamp((k + 1) * step, 0).expect("in range"))
            }
            Timing::Cron(cron, tz) => {
                let mut wall = t.with_timezone(tz).naive_local();
                for _ in 0..100_000 {
                    wall = cron
                        .find_next_occurrence(&wall, false)
                        .map_err(|e| Error::invalid(format!("cron has no slot after {t}: {e}")))?;
                    let instant = wall_to_instant(wall, tz);
                    if instant > t {
                        return Ok(instant);
                    }
                }
                Err(Error::invalid(format!("cron has no slot after {t}")))
            }
        }
    }

    /// `count` slots after `after` (the cross-language fixture's view).
    pub fn slots(&self, mut after: DateTime<Utc>, count: usize) -> Result<Vec<DateTime<Utc>>> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            after = self.next_after(after)?;
            out.push(after);
        }
        Ok(out)
    }
}

/// What a tick fires for a due schedule: (slots, the next slot after them),
/// as Python's `plan`: not planned yet, no slot and the first after now (or
/// the last fired); otherwise every slot from `next_slot` to `now`, except
/// those older than `catch_up` before now (missed: `Latest` fires the most
/// recent of them once).
pub fn plan(
    t: &Timing,
    next_slot: Option<DateTime<Utc>>,
    last_slot: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    missed: Missed,
    catch_up: Duration,
) -> Result<(Vec<DateTime<Utc>>, DateTime<Utc>)> {
    let Some(first) = next_slot else {
        let start = last_slot.map_or(now, |l| l.max(now));
        return Ok((Vec::new(), t.next_after(start)?));
    };
    let micro = TimeDelta::microseconds(1);
    let cutoff = now - TimeDelta::from_std(catch_up).unwrap_or(TimeDelta::zero());
    let mut fired = Vec::new();
    let mut slot = first;
    if slot < cutoff {
        if missed == Missed::Latest {
            fired.push(latest_before(t, first, cutoff)?);
        }
        slot = t.next_after(cutoff - micro)?;
    }
    while slot <= now {
        fired.push(slot);
        slot = t.next_after(slot)?;
    }
    Ok((fired, slot))
}

/// The last slot in [first, cutoff), looked for in growing windows back from cutoff.
fn latest_before(t: &Timing, first: DateTime<Utc>, cutoff: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let micro = TimeDelta::microseconds(1);
    let mut window = TimeDelta::minutes(10);
    loop {
        let start = first.max(cutoff - window);
        let mut latest = None;
        let mut slot = t.next_after(start - micro)?;
        while slot < cutoff {
            latest = Some(slot);
            slot = t.next_after(slot)?;
        }
        if let Some(l) = latest {
            return Ok(l);
        }
        if start == first {
            return Ok(first);
        }
        window = window * 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn berlin_spring_forward_fires_at_the_jump_and_fall_back_once() {
        let t = Timing::new(Some("30 2 * * *"), None, "Europe/Berlin").unwrap();
        assert_eq!(
            t.slots(at("2026-03-28T12:00:00Z"), 2).unwrap(),
            vec![at("2026-03-29T01:00:00Z"), at("2026-03-30T00:30:00Z")]
        );
        assert_eq!(
            t.slots(at("2026-10-24T12:00:00Z"), 2).unwrap(),
            vec![at("2026-10-25T00:30:00Z"), at("2026-10-26T01:30:00Z")]
        );
    }

    #[test]
    fn bad_input_names_the_value() {
        for bad in ["61 * * * *", "* * * *", "0 0 L * *", "@every", "0 0 ? * *"] {
            let e = cron_fields(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert!(time_zone("Mars/Olympus").unwrap_err().to_string().contains("Mars/Olympus"));
        assert!(interval_seconds(Duration::ZERO).is_err());
        assert!(interval_seconds(Duration::from_millis(1500)).is_err());
        assert!(Missed::parse("all").unwrap_err().to_string().contains("all"));
    }
}
