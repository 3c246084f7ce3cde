"""Schedules (docs/schedules.md): admin calls, bad input, firing exactly once,
the missed-slot policies, and the cost of an idle tick.

Firing is driven through the worker's Scheduler directly (``tick_once``)
where a test needs to control when a tick happens, and through a running
worker (waiting on ``signals.schedule_tick``) for the end-to-end path.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
from typing import Any

import psycopg
import pytest

import pgqrs
import pgqrs.aio
from pgqrs._async._db import Database
from pgqrs._schedule import Timing, plan
from pgqrs._worker.schedules import Scheduler

UTC = datetime.timezone.utc
WAIT = 60.0


def scheduled(sql: psycopg.Connection[Any], schema: str, name: str) -> list[tuple[str, int]]:
    """(slot header, count) of the messages of schedule ``name``, waiting or archived."""
    rows = sql.execute(
        f"""SELECT h->>'pgqrs-slot' AS slot, count(*) FROM (
                SELECT headers AS h FROM "{schema}".messages
                UNION ALL SELECT headers FROM "{schema}".archive) x
            WHERE h->>'pgqrs-schedule' = %s GROUP BY 1 ORDER BY 1""",
        (name,),
    ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


def set_plan(
    sql: psycopg.Connection[Any], schema: str, name: str, seconds_ago: float | None
) -> None:
    """Pretend the schedule's next slot was planned ``seconds_ago`` (None: unplanned)."""
    sql.execute(
        f"""UPDATE "{schema}".schedules SET next_slot =
              CASE WHEN %s::float8 IS NULL THEN NULL
                   ELSE date_trunc('second', now()) - make_interval(secs => %s::float8) END
            WHERE name = %s""",
        (seconds_ago, seconds_ago, name),
    )


def scheduler(config: pgqrs.Config, catch_up: float = 60.0) -> tuple[Database, Scheduler]:
    db = Database(config)
    return db, Scheduler(
        db, tick=1.0, catch_up=catch_up, stopped=lambda: False, on_tick=lambda: None
    )


# -- admin ------------------------------------------------------------------------------------


def test_create_list_pause_resume_delete(admin: pgqrs.Admin, queue: str) -> None:
    info = admin.create_schedule(
        "nightly",
        queue=queue,
        payload={"report": "daily"},
        cron="30 2 * * *",
        time_zone="Europe/Berlin",
        missed="latest",
        headers={"team": "ops"},
        priority=3,
    )
    assert (info.name, info.queue, info.cron, info.interval) == (
        "nightly",
        queue,
        "30 2 * * *",
        None,
    )
    assert (info.time_zone, info.missed, info.paused, info.next_slot) == (
        "Europe/Berlin",
        "latest",
        False,
        None,
    )
    assert info.payload == {"report": "daily"} and info.headers == {"team": "ops"}
    admin.create_schedule("tick", queue=queue, payload=1, interval=datetime.timedelta(seconds=5))
    assert [s.name for s in admin.list_schedules()] == ["nightly", "tick"]
    with pytest.raises(pgqrs.ScheduleExists, match="'tick'"):
        admin.create_schedule("tick", queue=queue, payload=2, interval=10)
    assert admin.list_schedules()[1].payload == 1  # unchanged
    admin.pause_schedule("tick")
    assert admin.list_schedules()[1].paused
    admin.resume_schedule("tick")
    admin.pause_schedule("tick", paused=True)
    admin.pause_schedule("tick", paused=False)
    assert not admin.list_schedules()[1].paused
    admin.delete_schedule("tick")
    assert [s.name for s in admin.list_schedules()] == ["nightly"]
    for call in (admin.delete_schedule, admin.pause_schedule, admin.resume_schedule):
        with pytest.raises(pgqrs.ScheduleNotFound, match="'tick'"):
            call("tick")


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"cron": "61 * * * *"}, pgqrs.InvalidArgument, "61 \\* \\* \\* \\*"),
        ({"cron": "* * * *"}, pgqrs.InvalidArgument, "'\\* \\* \\* \\*'"),
        ({"cron": "0 0 L * *"}, pgqrs.InvalidArgument, "0 0 L"),
        ({"cron": "@every_minute"}, pgqrs.InvalidArgument, "@every_minute"),
        ({"cron": "* * * * *", "time_zone": "Mars/Olympus"}, pgqrs.InvalidArgument, "Mars/Olympus"),
        ({"interval": 0}, pgqrs.InvalidArgument, "got 0"),
        ({"interval": -5}, pgqrs.InvalidArgument, "got -5"),
        ({"interval": 1.5}, pgqrs.InvalidArgument, "got 1.5"),
        ({}, pgqrs.InvalidArgument, "exactly one of cron"),
        ({"cron": "* * * * *", "interval": 5}, pgqrs.InvalidArgument, "exactly one of cron"),
        ({"cron": "* * * * *", "missed": "all"}, pgqrs.InvalidArgument, "'all'"),
        ({"cron": "* * * * *", "payload": "{not json"}, pgqrs.PayloadError, "not json"),
        ({"cron": "* * * * *", "queue": None}, pgqrs.InvalidArgument, "queue is missing"),
        ({"cron": "* * * * *", "queue": "nope"}, pgqrs.QueueNotFound, "nope"),
        ({"cron": "* * * * *", "queue": "bad name"}, pgqrs.InvalidQueueName, "bad name"),
    ],
)
def test_bad_input_is_a_typed_error_and_writes_nothing(
    admin: pgqrs.Admin, queue: str, kwargs: dict[str, Any], error: type[Exception], named: str
) -> None:
    args: dict[str, Any] = {"queue": queue, "payload": {"x": 1}, **kwargs}
    with pytest.raises(error, match=named):
        admin.create_schedule("s1", **args)
    assert admin.list_schedules() == []


def test_bad_schedule_name(admin: pgqrs.Admin, queue: str) -> None:
    with pytest.raises(pgqrs.InvalidArgument, match="'no spaces'"):
        admin.create_schedule("no spaces", queue=queue, payload=1, interval=5)


def test_the_sql_function_checks_its_own_arguments(
    admin: pgqrs.Admin, queue: str, sql: psycopg.Connection[Any]
) -> None:
    """A client that skipped its checks still cannot store a bad schedule."""
    schema = admin.config.schema
    call = f'SELECT * FROM "{schema}".schedule_upsert(%s, %s, %s, NULL, 0, %s, %s, %s, %s, false)'
    bad = [
        ("s", queue, "1", "61 * * * * *", None, "UTC", "skip", "cron must be 5 fields"),
        ("s", queue, "1", "0 0 ? * *", None, "UTC", "skip", "cron must be 5 fields"),
        ("s", queue, "1", None, 0, "UTC", "skip", "interval must be > 0"),
        ("s", queue, "1", None, None, "UTC", "skip", "exactly one of cron"),
        ("s", queue, "1", "* * * * *", None, "Mars/Olympus", "skip", "unknown time zone"),
        ("s", queue, "1", "* * * * *", None, "UTC", "often", "missed must be"),
        ("s", queue, "{x", "* * * * *", None, "UTC", "skip", "must be JSON"),
        ("a b", queue, "1", "* * * * *", None, "UTC", "skip", "schedule name must be"),
    ]
    for name, q, payload, cron, interval, tz, missed, message in bad:
        with pytest.raises(psycopg.Error, match=message) as exc:
            sql.execute(call, (name, q, payload, cron, interval, tz, missed))
        assert exc.value.sqlstate == "PQ001"
    assert admin.list_schedules() == []
    fire = f'SELECT * FROM "{schema}".schedule_fire(%s, %s::timestamptz[], %s, NULL)'
    future = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
    with pytest.raises(psycopg.Error, match="in the future"):
        sql.execute(fire, ("s", [future], future + datetime.timedelta(hours=1)))
    with pytest.raises(psycopg.Error, match="must be after"):
        past = future - datetime.timedelta(hours=2)
        sql.execute(fire, ("s", [past], past))


# -- firing -----------------------------------------------------------------------------------


async def test_ticks_fire_each_slot_once_across_racing_schedulers(
    admin: pgqrs.Admin, queue: str, config: pgqrs.Config, sql: psycopg.Connection[Any]
) -> None:
    """Eight schedulers tick the same due schedule at once: each slot has one message."""
    schema = config.schema
    admin.create_schedule("every5", queue=queue, payload={"n": 1}, interval=5)
    set_plan(sql, schema, "every5", 30.0)  # 7 slots due (30 s back, every 5 s)
    pairs = [scheduler(config) for _ in range(8)]
    try:
        await asyncio.gather(*(s.tick_once() for _, s in pairs))
        await asyncio.gather(*(s.tick_once() for _, s in pairs))
    finally:
        for db, _ in pairs:
            await db.close()
    got = scheduled(sql, schema, "every5")
    assert all(n == 1 for _, n in got), got
    assert 6 <= len(got) <= 8, got
    assert sum(s.fired for _, s in pairs) == len(got)
    info = admin.list_schedules()[0]
    assert info.next_slot is not None and info.last_slot is not None
    assert info.next_slot > info.last_slot
    msg = admin.peek(queue, 1)[0][0]
    assert msg.payload == {"n": 1} and msg.headers["pgqrs-schedule"] == "every5"
    slots = sql.execute(
        f'SELECT count(*) FROM "{schema}".schedule_slots WHERE schedule = %s', ("every5",)
    ).fetchone()
    assert slots is not None and slots[0] == len(got)


@pytest.mark.parametrize(("missed", "expected"), [("skip", 0), ("latest", 1)])
async def test_slots_missed_while_no_worker_ran(
    admin: pgqrs.Admin,
    queue: str,
    config: pgqrs.Config,
    sql: psycopg.Connection[Any],
    missed: str,
    expected: int,
) -> None:
    """Slots older than the catch-up window: skip drops them, latest fires the newest once;
    the slots inside the window still fire."""
    schema = config.schema
    admin.create_schedule("hourly", queue=queue, payload=1, interval=3600, missed=missed)
    set_plan(sql, schema, "hourly", 5 * 3600.0)  # five hours without a worker
    db, s = scheduler(config)
    try:
        await s.tick_once()
        await s.tick_once()
    finally:
        await db.close()
    got = scheduled(sql, schema, "hourly")
    assert len(got) == expected and all(n == 1 for _, n in got)
    if expected:  # the most recent missed slot: the last whole hour
        now = datetime.datetime.now(UTC)
        slot = datetime.datetime.fromisoformat(got[0][0].replace("Z", "+00:00"))
        assert now - datetime.timedelta(hours=1, minutes=2) < slot <= now


async def test_a_slot_late_within_the_window_still_fires(
    admin: pgqrs.Admin, queue: str, config: pgqrs.Config, sql: psycopg.Connection[Any]
) -> None:
    schema = config.schema
    admin.create_schedule("late", queue=queue, payload=1, interval=3600, missed="skip")
    set_plan(sql, schema, "late", 20.0)  # due 20 s ago: a slow tick, a database restart
    db, s = scheduler(config)
    try:
        await s.tick_once()
    finally:
        await db.close()
    assert [n for _, n in scheduled(sql, schema, "late")] == [1]


async def test_paused_schedules_do_not_fire_and_resume_plans_afresh(
    admin: pgqrs.Admin, queue: str, config: pgqrs.Config, sql: psycopg.Connection[Any]
) -> None:
    schema = config.schema
    admin.create_schedule("p", queue=queue, payload=1, interval=1)
    set_plan(sql, schema, "p", 10.0)
    admin.pause_schedule("p")
    db, s = scheduler(config)
    try:
        await s.tick_once()
        assert scheduled(sql, schema, "p") == []
        admin.resume_schedule("p")
        assert admin.list_schedules()[0].next_slot is None
        await s.tick_once()  # plans
        info = admin.list_schedules()[0]
        assert info.next_slot is not None
        assert scheduled(sql, schema, "p") == []
    finally:
        await db.close()


async def test_worker_declares_idempotently_and_fires(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config, sql: psycopg.Connection[Any]
) -> None:
    """Two asyncio workers declare the same every-second schedule: one row, and
    every slot between their first and last tick has exactly one message."""
    await aadmin.create_queue("jobs")
    seen: list[Any] = []
    workers = []
    for _ in range(2):
        w = pgqrs.aio.Worker(config, ["jobs"], handle_signals=False, poll_interval=0.2)
        w.schedule("beat", cron=None, interval=1, queue="jobs", payload={"beat": True})

        @w.handler("jobs")
        async def handle(msg: pgqrs.Message) -> None:
            seen.append(msg.headers["pgqrs-slot"])

        workers.append(w)
    runs = [asyncio.create_task(w.run()) for w in workers]
    try:
        for w in workers:
            await w.signals.schedule_tick.wait(
                lambda w=w: w.signals.schedule_tick.count >= 4, timeout=WAIT
            )  # type: ignore[misc]
        await workers[0].signals.outcome_written.wait(lambda: len(seen) >= 3, timeout=WAIT)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*runs)
    assert [s.name for s in await aadmin.list_schedules()] == ["beat"]
    got = scheduled(sql, config.schema, "beat")
    assert got and all(n == 1 for _, n in got), got
    slots = [datetime.datetime.fromisoformat(s.replace("Z", "+00:00")) for s, _ in got]
    assert all(b - a == datetime.timedelta(seconds=1) for a, b in itertools.pairwise(slots)), slots
    # A changed declaration replaces; an unchanged one writes nothing.
    w = pgqrs.aio.Worker(config, ["jobs"], handle_signals=False)
    with pytest.raises(pgqrs.InvalidArgument, match="declared twice"):
        w.schedule("beat", interval=2, queue="jobs", payload=1)
        w.schedule("beat", interval=2, queue="jobs", payload=1)


def test_sync_worker_schedule_is_checked_at_once(config: pgqrs.Config) -> None:
    w = pgqrs.Worker(config, ["jobs"])
    with pytest.raises(pgqrs.InvalidArgument, match="'nope nope'"):
        w.schedule("s", cron="nope nope", queue="jobs", payload=1)
    with pytest.raises(pgqrs.PayloadError):
        w.schedule("s", interval=1, queue="jobs", payload=b"raw")
    with pytest.raises(pgqrs.InvalidArgument, match="run_schedules"):
        pgqrs.Worker(config, ["jobs"], run_schedules="yes")  # type: ignore[arg-type]


# -- cost -------------------------------------------------------------------------------------


async def test_idle_tick_with_100_schedules_is_one_statement(
    admin: pgqrs.Admin, queue: str, config: pgqrs.Config, sql: psycopg.Connection[Any]
) -> None:
    """100 schedules, none due: a tick runs one statement (counted by the
    server's function statistics), and sleeps until the earliest slot."""
    for i in range(100):
        admin.create_schedule(f"s{i:03d}", queue=queue, payload=i, cron="0 0 1 1 *")
    db, s = scheduler(config)
    counted: list[str] = []
    fetch = db._fetch

    async def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        counted.append(name)
        return await fetch(name, *args, **kwargs)

    try:
        db._fetch = counting  # type: ignore[method-assign]
        await s.tick_once()  # plans all 100 (one schedule_fire each)
        assert counted.count("schedule_fire") == 100
        counted.clear()
        delays = [await s.tick_once() for _ in range(10)]
    finally:
        await db.close()
    assert counted == ["schedule_due"] * 10
    assert all(d == 1.0 for d in delays)


# -- slots (pure) -----------------------------------------------------------------------------


def test_plan_unplanned_schedule_starts_after_now() -> None:
    now = datetime.datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    slots, nxt = plan(
        Timing("*/5 * * * *", None, "UTC"),
        next_slot=None,
        last_slot=None,
        now=now,
        missed="skip",
        catch_up=60,
    )
    assert slots == [] and nxt == datetime.datetime(2026, 1, 1, 12, 5, tzinfo=UTC)


def test_berlin_spring_forward_and_fall_back() -> None:
    """The DST rule (docs/schedules.md): a nonexistent time fires at the jump, a
    repeated one once (its first occurrence)."""
    t = Timing("30 2 * * *", None, "Europe/Berlin")
    spring = t.slots(datetime.datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert spring == [
        datetime.datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST, the jump
        datetime.datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    fall = t.slots(datetime.datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert fall == [
        datetime.datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST, the first one
        datetime.datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]
    assert json.dumps(None) == "null"
