"""Flow control (issue 17, docs/flow-control.md): concurrency limits, message
groups and rate limits, enforced by message_dequeue for every consumer."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

import pgqrs
import pgqrs.aio
from test_worker import completed, started, stopped


def _producer(config: pgqrs.Config, queue: str) -> pgqrs.Producer:
    return pgqrs.Producer(config, queue)


def held(sql: psycopg.Connection[Any], schema: str, queue: str) -> list[tuple[int, str | None]]:
    """The messages leased right now (lease set, not expired), with their group."""
    return sql.execute(
        f'SELECT id, group_key FROM "{schema}".messages '
        "WHERE queue = %s AND lease IS NOT NULL AND visible_at > now() ORDER BY id",
        [queue],
    ).fetchall()


# -- settings ----------------------------------------------------------------------------


def test_limits_are_stored_shown_changed_and_removed(admin: pgqrs.Admin) -> None:
    info = admin.create_queue("jobs", concurrency_limit=5, group_concurrency=1, rate_limit="200/s")
    assert info.concurrency_limit == 5 and info.group_concurrency == 1
    assert info.rate_limit == pgqrs.RateLimit(200, 1.0)
    assert admin.get_queue("jobs") == info
    stats = admin.queue_stats("jobs")
    assert (stats.concurrency_limit, stats.group_concurrency, stats.rate_limit) == (
        5,
        1,
        pgqrs.RateLimit(200, 1.0),
    )
    # Only what is passed changes; None removes.
    after = admin.update_queue("jobs", concurrency_limit=None)
    assert after.concurrency_limit is None and after.group_concurrency == 1
    after = admin.update_queue("jobs", rate_limit=pgqrs.RateLimit(10, 60, per_group=True))
    assert after.rate_limit == pgqrs.RateLimit(10, 60.0, per_group=True)
    assert str(after.rate_limit) == "10/m per group"
    after = admin.update_queue("jobs", group_concurrency=None, rate_limit=None)
    assert (after.concurrency_limit, after.group_concurrency) == (None, None)
    assert after.rate_limit is None
    listed = {q.name: q for q in admin.list_queues()}
    assert listed["jobs"] == after
    with pytest.raises(pgqrs.QueueNotFound):
        admin.update_queue("nope", concurrency_limit=1)


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [("100/s", 100, 1.0), ("600/m", 600, 60.0), ("5000/h", 5000, 3600.0), ("10/2s", 10, 2.0)],
)
def test_rate_limit_strings(text: str, count: int, period: float) -> None:
    assert pgqrs.RateLimit.parse(text) == pgqrs.RateLimit(count, period)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency_limit": 0},
        {"concurrency_limit": -3},
        {"concurrency_limit": 2.5},
        {"concurrency_limit": True},
        {"group_concurrency": 0},
        {"rate_limit": "fast"},
        {"rate_limit": "10/fortnight"},
        {"rate_limit": "0/s"},
        {"rate_limit": 100},
    ],
)
def test_bad_limits_are_typed_errors_and_nothing_is_written(
    admin: pgqrs.Admin, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(pgqrs.InvalidArgument) as err:
        admin.create_queue("jobs", **kwargs)
    assert repr(next(iter(kwargs.values())))[:6].strip("'") in str(err.value)
    assert [q.name for q in admin.list_queues()] == []
    admin.create_queue("jobs")
    with pytest.raises(pgqrs.InvalidArgument):
        admin.update_queue("jobs", **kwargs)
    info = admin.get_queue("jobs")
    assert (info.concurrency_limit, info.group_concurrency, info.rate_limit) == (None, None, None)


def test_rate_limit_objects_are_checked() -> None:
    with pytest.raises(pgqrs.InvalidArgument, match="period"):
        pgqrs.RateLimit(10, 0)
    with pytest.raises(pgqrs.InvalidArgument, match="count"):
        pgqrs.RateLimit(-1, 1)


def test_the_sql_functions_check_their_own_arguments(
    admin: pgqrs.Admin, sql: psycopg.Connection[Any], schema: str
) -> None:
    """SECURITY DEFINER functions: a client that skips the checks is refused too."""
    admin.create_queue("jobs")
    calls = [
        ("queue_create(%s, 30, 5, 0, NULL, NULL, NULL, NULL)", ["other"], "concurrency_limit"),
        ("queue_create(%s, 30, 5, NULL, -1, NULL, NULL, NULL)", ["other"], "group_concurrency"),
        ("queue_create(%s, 30, 5, NULL, NULL, 5, NULL, NULL)", ["other"], "rate_limit"),
        ("queue_create(%s, 30, 5, NULL, NULL, 5, 0, NULL)", ["other"], "period"),
        ("queue_update(%s, true, -2, false, NULL, false, NULL, NULL, NULL)", ["jobs"], "-2"),
        ("message_insert(%s, '[1]', 0, NULL, NULL, NULL, '')", ["jobs"], "group"),
        ("message_insert(%s, '[1]', 0, NULL, NULL, NULL, repeat('x', 129))", ["jobs"], "group"),
        (
            "message_enqueue(%s, ARRAY['1'], ARRAY[0], ARRAY[NULL]::float8[], "
            "ARRAY[NULL]::timestamptz[], ARRAY[NULL], ARRAY[NULL], ARRAY[''])",
            ["jobs"],
            "group",
        ),
    ]
    for call, params, named in calls:
        with pytest.raises(psycopg.Error, match=named) as err:
            sql.execute(f'SELECT * FROM "{schema}".{call}', params)
        assert err.value.sqlstate == "PQ001"
    assert [q.name for q in admin.list_queues()] == ["jobs"]
    assert sql.execute(f'SELECT count(*) FROM "{schema}".messages').fetchone() == (0,)


@pytest.mark.parametrize("group", ["", "x" * 129, 42, b"tenant", "a\x00b"])
def test_bad_groups_are_refused_before_any_sql(
    admin: pgqrs.Admin, config: pgqrs.Config, group: Any
) -> None:
    admin.create_queue("jobs")
    with _producer(config, "jobs") as p:
        with pytest.raises(pgqrs.InvalidArgument, match="group"):
            p.enqueue({"n": 1}, group=group)
        with pytest.raises(pgqrs.InvalidArgument, match="group"):
            p.enqueue_batch([1, 2], groups=["ok", group])
    assert admin.queue_stats("jobs").ready == 0


# -- groups ------------------------------------------------------------------------------


def test_group_is_kept_through_dequeue_and_archive(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection[Any], schema: str
) -> None:
    admin.create_queue("jobs")
    with _producer(config, "jobs") as p, pgqrs.Consumer(config, "jobs") as c:
        one = p.enqueue({"n": 1}, group="tenant-42")
        batch = p.enqueue_batch([2, 3, 4], groups=["a", None, "b"])
        dedup = p.enqueue(5, group="c", dedup_key="k")
        assert one.group == "tenant-42"
        assert [m.group for m in batch] == ["a", None, "b"] and dedup.group == "c"
        got = c.dequeue(batch=10)
        assert [m.group for m in got] == ["tenant-42", "a", None, "b", "c"]
        c.archive_batch(got)
    rows = sql.execute(f'SELECT id, group_key FROM "{schema}".archive ORDER BY id').fetchall()
    assert [g for _, g in rows] == ["tenant-42", "a", None, "b", "c"]


def test_group_concurrency_one_is_one_at_a_time_in_order(
    admin: pgqrs.Admin, config: pgqrs.Config
) -> None:
    admin.create_queue("jobs", group_concurrency=1)
    with _producer(config, "jobs") as p, pgqrs.Consumer(config, "jobs") as c:
        for i in range(3):
            p.enqueue_batch([{"g": g, "i": i} for g in "ab"], groups=["a", "b"])
        first = c.dequeue(batch=10)
        assert [(m.payload["g"], m.payload["i"]) for m in first] == [("a", 0), ("b", 0)]
        assert c.dequeue(batch=10) == []  # each group's next waits for its head
        c.archive(first[0])
        second = c.dequeue(batch=10)
        assert [(m.payload["g"], m.payload["i"]) for m in second] == [("a", 1)]
        # Released: the same message comes back first (delivery order holds).
        c.release(second[0])
        again = c.dequeue(batch=10)
        assert [m.id for m in again] == [second[0].id]
        # A failed head backing off blocks its group (in order), not the others.
        c.release(again[0], delay=60)
        c.archive(first[1])
        third = c.dequeue(batch=10)
        assert [(m.payload["g"], m.payload["i"]) for m in third] == [("b", 1)]


def test_a_batch_spreads_across_groups(admin: pgqrs.Admin, config: pgqrs.Config) -> None:
    """1,000 jobs of A enqueued before 10 of B: B is served in the first batch."""
    admin.create_queue("jobs", group_concurrency=50)
    with _producer(config, "jobs") as p, pgqrs.Consumer(config, "jobs") as c:
        p.enqueue_batch(list(range(1000)), group="A")
        p.enqueue_batch(list(range(10)), group="B")
        got = c.dequeue(batch=20)
        assert [m.group for m in got].count("B") == 10
        assert [m.group for m in got].count("A") == 10
        # Within a group, delivery order.
        a = [m.payload for m in got if m.group == "A"]
        assert a == sorted(a) == list(range(10))


def test_group_concurrency_above_one(admin: pgqrs.Admin, config: pgqrs.Config) -> None:
    admin.create_queue("jobs", group_concurrency=2)
    with _producer(config, "jobs") as p, pgqrs.Consumer(config, "jobs") as c:
        p.enqueue_batch(list(range(5)), group="a")
        p.enqueue_batch(list(range(5)), group="b")
        p.enqueue_batch(list(range(3)))  # no group: only the queue-wide limits apply
        got = c.dequeue(batch=100)
        assert sorted(str(m.group) for m in got) == ["None"] * 3 + ["a", "a", "b", "b"]
        assert c.dequeue(batch=100) == []


# -- concurrency -------------------------------------------------------------------------


def test_concurrency_limit_holds_across_consumers_and_frees_on_expiry(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection[Any], schema: str
) -> None:
    admin.create_queue("jobs", concurrency_limit=3)
    with (
        _producer(config, "jobs") as p,
        pgqrs.Consumer(config, "jobs") as c1,
        pgqrs.Consumer(config, "jobs") as c2,
    ):
        p.enqueue_batch(list(range(10)))
        a = c1.dequeue(batch=2)
        b = c2.dequeue(batch=10)
        assert (len(a), len(b)) == (2, 1)
        assert c1.dequeue(batch=10) == [] and c1.retry_after is None
        c1.archive(a[0])
        assert len(c2.dequeue(batch=10)) == 1
        assert len(held(sql, schema, "jobs")) == 3
        # An expired lease frees its place.
        short = c1.dequeue(batch=1)
        assert short == []
        c2.release_batch(b)
        got = c1.dequeue(batch=1, visibility_timeout=0.2)
        assert len(got) == 1
        time.sleep(0.3)
        assert len(c2.dequeue(batch=10)) == 1
        assert len(held(sql, schema, "jobs")) == 3


def test_concurrency_is_exact_under_racing_consumers(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection[Any], schema: str
) -> None:
    admin.create_queue("jobs", concurrency_limit=5)
    with _producer(config, "jobs") as p:
        p.enqueue_batch(list(range(400)))
    barrier = threading.Barrier(8)
    taken: list[int] = []
    lock = threading.Lock()

    def grab() -> None:
        with pgqrs.Consumer(config, "jobs") as c:
            barrier.wait()
            for _ in range(5):
                got = c.dequeue(batch=3)
                with lock:
                    taken.extend(m.id for m in got)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 5 == len(set(taken))
    assert len(held(sql, schema, "jobs")) == 5


def test_a_limit_set_on_a_busy_queue_counts_its_leases(
    admin: pgqrs.Admin, config: pgqrs.Config
) -> None:
    admin.create_queue("jobs")
    with _producer(config, "jobs") as p, pgqrs.Consumer(config, "jobs") as c:
        p.enqueue_batch(list(range(10)))
        assert len(c.dequeue(batch=4)) == 4
        admin.update_queue("jobs", concurrency_limit=5)
        assert len(c.dequeue(batch=10)) == 1
        admin.update_queue("jobs", concurrency_limit=None)  # removed: the next dequeue
        assert len(c.dequeue(batch=10)) == 5


def test_exhausted_messages_still_go_dead_under_limits(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection[Any], schema: str
) -> None:
    admin.create_queue("jobs", max_attempts=1, concurrency_limit=2, group_concurrency=1)
    with _producer(config, "jobs") as p, pgqrs.Consumer(config, "jobs") as c:
        p.enqueue_batch([1, 2], group="g")
        p.enqueue(3, group="h")
        first = c.dequeue(batch=10, visibility_timeout=0.1)
        assert [m.payload for m in first] == [1, 3]
        time.sleep(0.2)
        second = c.dequeue(batch=10)
        # 1 and 3 used their one attempt: archived dead; 2 comes out in their place.
        assert [m.payload for m in second] == [2]
    dead = sql.execute(
        f'SELECT group_key FROM "{schema}".archive WHERE status = %s ORDER BY id', ["dead"]
    ).fetchall()
    assert dead == [("g",), ("h",)]


# -- rate limits ---------------------------------------------------------------------------


def test_rate_limit_gives_a_bucket_then_says_when_the_next_token_is_due(
    admin: pgqrs.Admin, config: pgqrs.Config
) -> None:
    admin.create_queue("jobs", rate_limit="5/s")
    with _producer(config, "jobs") as p, pgqrs.Consumer(config, "jobs") as c:
        p.enqueue_batch(list(range(20)))
        assert len(c.dequeue(batch=10)) == 5
        assert c.retry_after is not None and 0 < c.retry_after <= 0.2
        assert c.dequeue(batch=10) == []
        assert c.retry_after is not None and 0 < c.retry_after <= 0.2
        time.sleep(c.retry_after)
        assert len(c.dequeue(batch=10)) == 1
        # Removing the limit takes effect at the next dequeue.
        admin.update_queue("jobs", rate_limit=None)
        assert len(c.dequeue(batch=10)) == 10 and c.retry_after is None


def test_per_group_rate_limit(admin: pgqrs.Admin, config: pgqrs.Config) -> None:
    admin.create_queue("jobs", rate_limit=pgqrs.RateLimit(2, 60, per_group=True))
    with _producer(config, "jobs") as p, pgqrs.Consumer(config, "jobs") as c:
        p.enqueue_batch(list(range(5)), group="a")
        p.enqueue_batch(list(range(5)), group="b")
        got = c.dequeue(batch=10)
        assert sorted(str(m.group) for m in got) == ["a", "a", "b", "b"]
        assert c.dequeue(batch=10) == []
        assert c.retry_after is not None and 20 < c.retry_after <= 30


async def test_a_rate_limited_worker_sleeps_until_the_next_token(
    admin: pgqrs.Admin, config: pgqrs.Config
) -> None:
    """20/s with a burst of 20: 60 jobs take >= 2 s, in few dequeues (no busy poll)."""
    admin.create_queue("jobs", rate_limit="20/s")
    with _producer(config, "jobs") as p:
        p.enqueue_batch(list(range(60)))
    done: list[float] = []
    worker = pgqrs.aio.Worker(config, poll_interval=5.0, concurrency=10)
    fetches = [0]

    async def handle(msg: pgqrs.Message) -> None:
        done.append(time.monotonic())

    worker.handler("jobs")(handle)
    started_at = time.monotonic()
    task = await started(worker)
    await completed(worker, 60)
    fetches[0] = worker.signals.fetched._count
    await stopped(worker, task)
    # The bucket holds 20; the other 40 come at 20/s: not before 2 s.
    assert done[-1] - started_at >= 1.9
    # Not the 5 s poll: the dequeue said when the next token was due, and the
    # worker slept until then (a dequeue per token or batch of tokens, no spin).
    assert done[-1] - started_at < 4.5
    assert fetches[0] <= 60, fetches


# -- asyncio -------------------------------------------------------------------------------


async def test_flow_control_under_asyncio(aadmin: pgqrs.aio.Admin, config: pgqrs.Config) -> None:
    info = await aadmin.create_queue("jobs", concurrency_limit=2, rate_limit="100/m")
    assert info.concurrency_limit == 2 and info.rate_limit == pgqrs.RateLimit(100, 60.0)
    async with (
        pgqrs.aio.Producer(config, "jobs") as p,
        pgqrs.aio.Consumer(config, "jobs") as c,
    ):
        sent = await p.enqueue({"n": 1}, group="t1")
        assert sent.group == "t1"
        await p.enqueue_batch([2, 3], groups=["t1", "t2"])
        got = await c.dequeue(batch=10)
        assert [m.group for m in got] == ["t1", "t1"] and c.retry_after is None
        await aadmin.update_queue("jobs", concurrency_limit=None, group_concurrency=1)
        more = await c.dequeue(batch=10)
        # t1 holds two already: only t2's head comes out.
        assert [m.group for m in more] == ["t2"]
        stats = await aadmin.queue_stats("jobs")
        assert stats.group_concurrency == 1 and stats.concurrency_limit is None


def test_deleting_a_queue_drops_its_flow_bookkeeping(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection[Any], schema: str
) -> None:
    admin.create_queue("jobs", concurrency_limit=2, rate_limit="10/s")
    with _producer(config, "jobs") as p, pgqrs.Consumer(config, "jobs") as c:
        p.enqueue_batch([1, 2, 3])
        assert len(c.dequeue(batch=3)) == 2
    admin.delete_queue("jobs")
    for table in ("flow_leases", "flow_buckets"):
        assert sql.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone() == (0,)
