"""Schedules: checking a schedule's timing and computing its slots.

The rule (docs/schedules.md, the same in ``rust/src/schedule.rs``; the shared
fixture ``tests/data/schedule_slots.json`` holds both to it):

- A cron schedule's slots are *local wall-clock times* in its time zone: the
  cron library (cronsim) walks wall times with no time zone at all, and each
  wall time becomes one instant:
  - a wall time that exists once: that instant;
  - a repeated one (the clock goes back): its first occurrence only;
  - a nonexistent one (the clock jumps forward): the instant of the jump
    (``30 2 * * *`` in Europe/Berlin on the spring-forward day fires at 03:00
    CEST); several such slots of one jump fire once.
  This mapping never goes backwards in time, so "the first slot after t" is
  the first wall time whose instant is after t.
- An interval schedule's slots are the multiples of the interval (whole
  seconds) since 1970-01-01 00:00:00 UTC: every worker agrees without state.

Why not the library's own time-zone handling: cronsim and the Rust crate
croner differ around DST, and slots must be the same whichever worker fires.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import zoneinfo
from functools import lru_cache
from typing import Any

from cronsim import CronSim, CronSimError

from pgqrs._errors import InvalidArgument
from pgqrs._payload import encode_headers, encode_payload
from pgqrs._validate import validate_queue_name

UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = datetime.timedelta(microseconds=1)
#: How far a nonexistent wall time's jump is looked for (no zone jumps more).
_JUMP_WINDOW = datetime.timedelta(hours=26)

#: The aliases, as the five fields they stand for (both clients map them).
ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}
_ITEM = r"(\*|[0-9]+|[A-Za-z]{3})(-([0-9]+|[A-Za-z]{3}))?(/[0-9]+)?"
_FIELD = re.compile(rf"^{_ITEM}(,{_ITEM})*$")
MISSED_POLICIES = ("skip", "latest")


def cron_fields(expr: object) -> str:
    """``expr`` as five fields (an alias expanded), or InvalidArgument naming it.

    Only what both cron libraries read the same is accepted: numbers, three-
    letter month and day names, ``*``, ranges, steps and lists (no L, W, #, ?).
    """
    if not isinstance(expr, str):
        raise InvalidArgument(f"cron must be a str, got {expr!r}")
    text = ALIASES.get(expr.strip().lower(), expr.strip())
    fields = text.split()
    if len(fields) != 5 or not all(_FIELD.match(f) for f in fields):
        raise InvalidArgument(
            f"cron expression {expr!r} is not 5 fields (minute hour day-of-month month "
            "day-of-week: numbers, names, *, ranges a-b, steps /n, lists a,b) or one of "
            + ", ".join(ALIASES)
        )
    try:
        CronSim(text, EPOCH)
    except (CronSimError, ValueError) as exc:
        raise InvalidArgument(f"cron expression {expr!r} is invalid: {exc}") from None
    return text


def check_time_zone(name: object) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name``, or InvalidArgument naming it."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise InvalidArgument(
            f"time_zone must be an IANA name such as 'Europe/Berlin', got {name!r}"
        )
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(
            f"unknown time zone {name!r} (an IANA name such as 'UTC' or 'Europe/Berlin')"
        ) from None


def interval_seconds(value: object) -> int:
    """A schedule's interval as whole seconds > 0 (int, float or timedelta)."""
    if isinstance(value, datetime.timedelta):
        secs: object = value.total_seconds()
    else:
        secs = value
    if (
        isinstance(secs, bool)
        or not isinstance(secs, (int, float))
        or secs != secs  # NaN
        or secs <= 0
        or secs != int(secs)
        or secs >= 2**53
    ):
        raise InvalidArgument(f"interval must be a whole number of seconds > 0, got {value!r}")
    return int(secs)


def missed_policy(value: object) -> str:
    if value not in MISSED_POLICIES:
        raise InvalidArgument(f"missed must be 'skip' or 'latest', got {value!r}")
    assert isinstance(value, str)
    return value


def _offset(zone: zoneinfo.ZoneInfo, instant: datetime.datetime) -> datetime.timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def wall_to_instant(wall: datetime.datetime, zone: zoneinfo.ZoneInfo) -> datetime.datetime:
    """The instant (UTC) of naive wall time ``wall`` in ``zone``, by the rule above."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # exists (fold=0: the first of a repeated time)
    # Nonexistent: the instant of the jump, found to the second (as in Rust).
    as_utc = wall.replace(tzinfo=UTC)
    lo = int((as_utc - _JUMP_WINDOW - EPOCH).total_seconds())
    hi = int((as_utc + _JUMP_WINDOW - EPOCH).total_seconds())
    after = _offset(zone, EPOCH + datetime.timedelta(seconds=hi))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, EPOCH + datetime.timedelta(seconds=mid)) == after:
            hi = mid
        else:
            lo = mid
    return EPOCH + datetime.timedelta(seconds=hi)


@dataclasses.dataclass(frozen=True, slots=True)
class DueSchedule:
    """A row of schedule_due: a schedule to fire or plan now."""

    name: str
    cron: str | None
    interval: int | None
    time_zone: str
    missed: str
    next_slot: datetime.datetime | None
    last_slot: datetime.datetime | None


@dataclasses.dataclass(frozen=True)
class Timing:
    """When a schedule fires: ``cron`` (five fields) in ``zone``, or every ``interval`` s."""

    cron: str | None
    interval: int | None
    zone_name: str = "UTC"

    def next_after(self, t: datetime.datetime) -> datetime.datetime:
        """The first slot strictly after instant ``t`` (UTC)."""
        if self.interval is not None:
            step = datetime.timedelta(seconds=self.interval)
            return EPOCH + ((t - EPOCH) // step + 1) * step
        assert self.cron is not None
        zone = _zone(self.zone_name)
        wall = t.astimezone(zone).replace(tzinfo=None)
        walls = CronSim(self.cron, wall.replace(tzinfo=UTC))
        for _ in range(100_000):
            instant = wall_to_instant(next(walls).replace(tzinfo=None), zone)
            if instant > t:
                return instant
        raise InvalidArgument(f"cron expression {self.cron!r} has no slot after {t}")

    def slots(self, after: datetime.datetime, count: int) -> list[datetime.datetime]:
        """``count`` slots after ``after`` (the cross-language fixture's view)."""
        out: list[datetime.datetime] = []
        for _ in range(count):
            after = self.next_after(after)
            out.append(after)
        return out


@lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return check_time_zone(name)


@lru_cache(maxsize=1024)
def timing(cron: str | None, interval: int | None, zone_name: str) -> Timing:
    """The Timing of a stored schedule (cached: ticks see the same rows again)."""
    return Timing(None if cron is None else cron_fields(cron), interval, zone_name)


def plan(
    t: Timing,
    *,
    next_slot: datetime.datetime | None,
    last_slot: datetime.datetime | None,
    now: datetime.datetime,
    missed: str,
    catch_up: float,
) -> tuple[list[datetime.datetime], datetime.datetime]:
    """What a tick fires for a due schedule: (slots, the next slot after them).

    ``now`` is the database's. Not planned yet (``next_slot`` None): no slot,
    the first one after now (or after the last fired). Otherwise every slot
    from ``next_slot`` to now is fired, except *missed* ones: older than
    ``catch_up`` seconds before now (no worker ran, or none reached the
    database, then); of those, ``missed="latest"`` fires the most recent once.
    """
    if next_slot is None:
        start = now if last_slot is None else max(now, last_slot)
        return [], t.next_after(start)
    cutoff = now - datetime.timedelta(seconds=catch_up)
    fired: list[datetime.datetime] = []
    slot = next_slot
    if slot < cutoff:
        if missed == "latest":
            fired.append(_latest_before(t, next_slot, cutoff))
        slot = t.next_after(cutoff - _MICRO)
    while slot <= now:
        fired.append(slot)
        slot = t.next_after(slot)
    return fired, slot


def _latest_before(
    t: Timing, first: datetime.datetime, cutoff: datetime.datetime
) -> datetime.datetime:
    """The last slot in [first, cutoff) (``first`` is one): looked for in growing
    windows back from ``cutoff``, so a long outage costs no walk from ``first``."""
    window = datetime.timedelta(minutes=10)
    while True:
        start = max(first, cutoff - window)
        latest = None
        slot = t.next_after(start - _MICRO)
        while slot < cutoff:
            latest = slot
            slot = t.next_after(slot)
        if latest is not None:
            return latest
        if start == first:
            return first
        window *= 4


_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def valid_schedule_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"schedule name must be 1-128 characters of A-Z a-z 0-9 _ . : -, got {name!r}"
        )
    return name


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    """A schedule's arguments, checked and encoded for schedule_upsert."""

    name: str
    queue: str
    payload: str
    headers: str | None
    priority: int
    cron: str | None
    interval: int | None
    time_zone: str
    missed: str


def schedule_spec(
    name: object,
    *,
    queue: object,
    payload: Any,
    cron: object = None,
    interval: object = None,
    time_zone: object = "UTC",
    missed: object = "skip",
    headers: Any = None,
    priority: object = 0,
    max_bytes: int,
) -> ScheduleSpec:
    """Check a schedule's arguments (typed errors naming the value) and encode them.

    The cron expression is stored as given (an alias stays an alias)."""
    valid_schedule_name(name)
    assert isinstance(name, str)
    if queue is None:
        raise InvalidArgument(f"schedule {name!r}: queue is missing (pass queue='...')")
    validate_queue_name(queue)
    assert isinstance(queue, str)
    if (cron is None) == (interval is None):
        raise InvalidArgument(
            f"schedule {name!r}: give exactly one of cron='...' and interval=seconds"
        )
    if cron is not None:
        cron_fields(cron)
    secs = None if interval is None else interval_seconds(interval)
    zone = _check_zone(time_zone)
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not -(2**31) <= priority < 2**31
    ):
        raise InvalidArgument(f"priority must be a 32-bit int, got {priority!r}")
    return ScheduleSpec(
        name=name,
        queue=queue,
        payload=encode_payload(payload, max_bytes),
        headers=encode_headers(headers, max_bytes),
        priority=priority,
        cron=None if cron is None else str(cron).strip(),
        interval=secs,
        time_zone=zone,
        missed=missed_policy(missed),
    )


def _check_zone(name: object) -> str:
    check_time_zone(name)
    assert isinstance(name, str)
    return name
