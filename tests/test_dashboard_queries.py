"""The dashboard's bounded statements give the right numbers: exact below their
bounds, labelled estimates above them (tests/test_dashboard_http.py and
tests/test_dashboard_browser.py cover the pages)."""

from __future__ import annotations

import pytest

import pgqrs
from pgqrs._dashboard import queries
from pgqrs._dashboard.queries import Data


@pytest.fixture
def filled(admin: pgqrs.Admin, config: pgqrs.Config) -> pgqrs.Config:
    admin.create_queue("a", max_attempts=1)
    admin.create_queue("b")
    with pgqrs.Producer(config, "a") as p:
        p.enqueue_batch([{"n": i} for i in range(30)])
        p.enqueue({"later": True}, delay=3600)
    with pgqrs.Producer(config, "b") as p:
        p.enqueue_batch([{"n": i} for i in range(12)])
    with pgqrs.Consumer(config, "a") as c:
        got = c.dequeue(batch=6)
        c.archive_batch(got[:4], "completed")
        c.release(got[4])  # exhausted: dead at the next dequeue
        assert len(c.dequeue(batch=30)) == 24  # the released one dies instead
    return config


async def test_queue_counts_are_exact_below_the_bound(filled: pgqrs.Config) -> None:
    data = Data(filled)
    try:
        by_name = {q.name: q for q in await data.queues()}
        a, b = by_name["a"], by_name["b"]
        assert (a.ready.value, a.in_flight.value, a.delayed.value) == (0, 25, 1)
        assert a.ready.exact and a.in_flight.exact
        assert (a.dead.value, a.archived.value) == (1, 5)
        assert a.completed_per_minute == 4 / 5 and a.failed_per_minute == 1 / 5
        assert (b.ready.value, b.in_flight.value, b.delayed.value) == (12, 0, 0)
        assert b.oldest_ready_age is not None and b.oldest_ready_age >= 0
        assert a.settings["max_attempts"] == 1 and a.settings["paused"] is False
    finally:
        await data.close()


async def test_big_queues_get_estimates(
    filled: pgqrs.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "EXACT_COUNT_LIMIT", 10)
    data = Data(filled)
    try:
        b = (await data.queues("b"))[0]
        assert not b.ready.exact  # 12 messages > 10: the planner's estimate
        a = (await data.queues("a"))[0]
        assert not a.in_flight.exact
        assert a.dead.exact  # one dead message: under the bound
    finally:
        await data.close()


async def test_series_counts_every_message_or_estimates_from_a_sample(
    filled: pgqrs.Config,
) -> None:
    data = Data(filled)
    try:
        series = {s.name: s for s in await data.series("a", 3600)}
        assert series["enqueued"].total == 31 and series["enqueued"].sampled == 1
        assert series["completed"].total == 4 and series["dead"].total == 1
        # Bounds of 5 rows, 4 lookups: 'a' and 'b' share the id range of the
        # waiting messages, so every step-th id is looked up and counts for step.
        rows = await data.fetch("series_enqueued_messages", ["a", 3600, 5, 4])
        steps = [r["n"] for r in rows if r["series"] == "step:enqueued"]
        assert steps and steps[0] > 1
        estimated = sum(r["n"] for r in rows if r["series"] == "enqueued")
        assert 0 < estimated <= 31 + 2 * steps[0]
        assert not [r for r in rows if r["series"].startswith("cut:")]
        # A bound of 3 rows cuts the 4 completed ones to the newest 3, and says so.
        rows = await data.fetch("series_archived", ["a", 3600, 3])
        assert [r["series"] for r in rows if r["series"].startswith("cut:")] == ["cut:completed"]
        assert sum(r["n"] for r in rows if r["series"] == "completed") == 3
    finally:
        await data.close()
