"""pgqrs through pgBouncer in transaction mode: no prepared statements, no session state.

Three layers: a control showing the bouncer really breaks a client that keeps
session state (so these tests can fail), pgqrs's whole API under concurrency
through a bouncer with fewer server connections than clients, and a second
pass of the core test suite with ``PGQRS_TEST_VIA_PGBOUNCER=1``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import pgqrs
import pgqrs.aio
from _pgbouncer import (
    REQUIRE_PGBOUNCER_ENV,
    VIA_PGBOUNCER_ENV,
    PgBouncer,
    pgbouncer_binary,
    running_pgbouncer,
)

TESTS = Path(__file__).resolve().parent
#: Errors a client relying on session state gets behind a transaction pooler.
SESSION_STATE_ERRORS = (
    "prepared statement",
    "DuplicatePreparedStatement",
    "InvalidSqlStatementName",
    "unsupported pkt type",
)
#: Fewer server connections than client connections, so transactions of one
#: client really do move between server connections.
SMALL_POOL = 2


def require_pgbouncer() -> None:
    if pgbouncer_binary() is None:
        message = (
            "pgbouncer is not installed (scripts/test installs it: apt-get install -y pgbouncer)"
        )
        if os.environ.get(REQUIRE_PGBOUNCER_ENV) == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def bouncer(server_dsn: str) -> Iterator[PgBouncer]:
    require_pgbouncer()
    with running_pgbouncer(server_dsn, pool_size=SMALL_POOL) as b:
        yield b


@pytest.fixture
def bconfig(bouncer: PgBouncer, schema: str) -> pgqrs.Config:
    return pgqrs.Config.from_dsn(bouncer.dsn, schema=schema, pool_max_size=4)


def xact_count(bouncer: PgBouncer) -> int:
    return sum(
        int(str(r["total_xact_count"]))
        for r in bouncer.show("STATS")
        if r["database"] != "pgbouncer"
    )


def test_bouncer_runs_in_transaction_mode(bouncer: PgBouncer) -> None:
    modes = {r["key"]: r["value"] for r in bouncer.show("CONFIG")}
    assert modes["pool_mode"] == "transaction"
    assert int(str(modes["default_pool_size"])) == SMALL_POOL


def test_control_session_state_breaks_behind_the_bouncer(bouncer: PgBouncer) -> None:
    """A client with server-side prepared statements fails here; pgqrs must not."""
    with (
        psycopg.connect(bouncer.dsn, autocommit=True, prepare_threshold=0) as a,
        psycopg.connect(bouncer.dsn, autocommit=True, prepare_threshold=0) as b,
        pytest.raises(psycopg.Error) as caught,
    ):
        # Both clients name their first prepared statement _pg3_0; with
        # SMALL_POOL server connections they soon collide (or miss each other's).
        for i in range(20):
            a.execute("SELECT %s::int + 1", [i])
            b.execute("SELECT %s::text || 'x'", [str(i)])
    assert any(
        word in f"{type(caught.value).__name__} {caught.value}" for word in SESSION_STATE_ERRORS
    )


def test_whole_api_through_bouncer_under_concurrency(
    bouncer: PgBouncer, bconfig: pgqrs.Config
) -> None:
    before = xact_count(bouncer)
    n_jobs, n_threads = 600, 4
    with pgqrs.Admin(bconfig) as admin:
        assert admin.install()
        assert admin.install() == []
        admin.create_queue("tasks", visibility_timeout=30)
        report = admin.verify()
        assert report.installed and not report.missing and not report.modified

        errors: list[BaseException] = []
        done: list[int] = []
        lock = threading.Lock()

        def produce(k: int) -> None:
            try:
                with pgqrs.Producer(bconfig, "tasks") as p:
                    for start in range(k, n_jobs, n_threads * 10):
                        p.enqueue_batch([{"n": i} for i in range(start, min(start + 10, n_jobs))])
                    # dedup: the same key twice gives the same message
                    first = p.enqueue({"dedup": k}, dedup_key=f"k{k}")
                    again = p.enqueue({"dedup": k}, dedup_key=f"k{k}")
                    assert again.id == first.id and not again.inserted
            except BaseException as exc:
                errors.append(exc)

        def consume() -> None:
            try:
                with pgqrs.Consumer(bconfig, "tasks") as c:
                    idle = 0
                    while idle < 20:
                        msgs = c.dequeue(batch=7)
                        if not msgs:
                            idle += 1
                            continue
                        idle = 0
                        c.extend(msgs[0], 60)
                        first, rest = msgs[0], msgs[1:]
                        if first.attempts == 1 and first.id % 5 == 0:
                            c.release(first, error={"why": "retry once"})
                        else:
                            c.archive(first, result={"ok": True})
                            with lock:
                                done.append(first.id)
                        if rest:
                            with lock:
                                done.extend(c.archive_batch(rest))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        consumers = [threading.Thread(target=consume) for _ in range(n_threads)]
        for t in consumers:
            t.start()
        for t in consumers:
            t.join()
        assert not errors, errors
        total = n_jobs + n_threads
        assert len(done) == len(set(done)) == total
        stats = admin.queue_stats("tasks")
        assert (stats.ready, stats.in_flight, stats.delayed) == (0, 0, 0)
        assert stats.archived == {"completed": total}
        assert admin.purge_archive(older_than=0, queue="tasks") == total
        admin.delete_queue("tasks")
        admin.uninstall()
    # It all really went through the bouncer, and the bouncer saw no session-state errors.
    # (at least one transaction per enqueue batch and per dequeue; SHOW STATS may lag a little)
    assert xact_count(bouncer) - before > n_jobs // 10
    log = bouncer.log()
    assert not [w for w in SESSION_STATE_ERRORS if w in log], log[-2000:]


async def test_asyncio_api_through_bouncer(bouncer: PgBouncer, bconfig: pgqrs.Config) -> None:
    async with pgqrs.aio.Admin(bconfig) as admin:
        await admin.install()
        await admin.create_queue("aio")

        async def produce(k: int) -> None:
            async with pgqrs.aio.Producer(bconfig, "aio") as p:
                await p.enqueue_batch([{"k": k, "i": i} for i in range(50)])

        async def consume() -> int:
            n = 0
            async with pgqrs.aio.Consumer(bconfig, "aio") as c:
                while msgs := await c.dequeue(batch=5):
                    await c.archive_batch(msgs)
                    n += len(msgs)
            return n

        await asyncio.gather(*(produce(k) for k in range(4)))
        counts = await asyncio.gather(*(consume() for _ in range(4)))
        assert sum(counts) == 200
        assert (await admin.queue_stats("aio")).archived == {"completed": 200}


def test_core_suite_passes_through_bouncer() -> None:
    """Second pass of the core tests with the ``dsn`` fixture behind pgbouncer."""
    require_pgbouncer()
    if os.environ.get(VIA_PGBOUNCER_ENV) == "1":
        pytest.skip("already inside the pgbouncer pass")
    files = sorted(str(p) for p in TESTS.glob("test_core*.py")) + sorted(
        str(p) for p in TESTS.glob("test_hostile*.py")
    )
    if not files:
        pytest.skip("no core test files (tests/test_core*.py) to run through pgbouncer")
    env = {**os.environ, VIA_PGBOUNCER_ENV: "1"}
    env.pop("PGQRS_TEST_DSN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *files],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert " passed" in output, output[-2000:]
    found = [w for w in SESSION_STATE_ERRORS if w in output]
    assert not found, output[-6000:]


def test_worker_drain_poll_only_through_bouncer(
    bouncer: PgBouncer, schema: str, server_dsn: str, tmp_path: Path
) -> None:
    """Worker processes in poll-only mode drain a queue through the bouncer."""
    from _chaos import Fleet, audit, counts, setup_queue, wait_until

    jobs = 3000
    ids = setup_queue(bouncer.dsn, schema, "bounced", jobs)
    fleet = Fleet(bouncer.dsn, schema, "bounced", tmp_path, size=2, concurrency=8, poll_only=True)
    try:
        wait_until(lambda: counts(bouncer.dsn, schema, "bounced") == (jobs, 0), 300, "the drain")
    finally:
        codes = fleet.stop()
    assert codes == [0, 0], fleet.stderr()
    result = audit(server_dsn, schema, "bounced", ids)
    assert result.extra_runs == 0, "no faults here, so no job may run twice"
    found = [w for w in SESSION_STATE_ERRORS if w in fleet.stderr() + bouncer.log()]
    assert not found, fleet.stderr()


def test_flow_control_limits_hold_through_the_bouncer(
    bouncer: PgBouncer, bconfig: pgqrs.Config, server_dsn: str, schema: str
) -> None:
    """Issue 17: the limits live in the dequeue's transaction (an xact advisory
    lock, rows for the leases and buckets): with a transaction pooler moving
    clients between SMALL_POOL server connections they hold the same."""
    with pgqrs.Admin(bconfig) as admin:
        admin.install()
        admin.create_queue("flow", concurrency_limit=3, group_concurrency=1, rate_limit="1000/s")
    with pgqrs.Producer(bconfig, "flow") as p:
        p.enqueue_batch(list(range(40)), groups=[f"g{i % 4}" for i in range(40)])
    taken: list[pgqrs.Message] = []
    lock = threading.Lock()

    def grab() -> None:
        with pgqrs.Consumer(bconfig, "flow") as c:
            for _ in range(5):
                got = c.dequeue(batch=2)
                with lock:
                    taken.extend(got)

    threads = [threading.Thread(target=grab) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 3
    assert len({m.group for m in taken}) == 3  # never two of a group
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        held = conn.execute(
            f'SELECT count(*) FROM "{schema}".messages '
            "WHERE lease IS NOT NULL AND visible_at > now()"
        ).fetchone()
    assert held == (3,)
    with pgqrs.Admin(bconfig) as admin:
        admin.update_queue("flow", rate_limit="2/m", concurrency_limit=None, group_concurrency=None)
    with pgqrs.Consumer(bconfig, "flow") as c:
        assert len(c.dequeue(batch=10)) == 2
        assert c.dequeue(batch=10) == [] and c.retry_after is not None and c.retry_after > 10
def test_wait_cancel_and_progress_through_bouncer(bconfig: pgqrs.Config) -> None:
    """Admin.wait behind the bouncer: LISTEN hears nothing there, the poll
    finds the archived row (issue 16); cancel and progress are single
    statements and work as directly."""
    with pgqrs.Admin(bconfig) as admin:
        admin.install()
        admin.create_queue("waited")
        with pgqrs.Producer(bconfig, "waited") as p:
            msg, other = p.enqueue_batch([{"n": 1}, {"n": 2}])
        results: list[pgqrs.ArchivedMessage] = []
        waiter = threading.Thread(target=lambda: results.append(msg.wait(timeout=60)))
        waiter.start()
        with pgqrs.Consumer(bconfig, "waited") as c:
            got = c.dequeue()
            assert got is not None and got.id == msg.id
            assert c.set_progress(got, {"half": True}) is False
            c.archive(got, result={"answer": 42})
        waiter.join(90)
        assert [(r.status, r.result, r.progress) for r in results] == [
            ("completed", {"answer": 42}, {"half": True})
        ]
        with pytest.raises(pgqrs.WaitTimeout):
            admin.wait(other.id, timeout=0.3)
        assert admin.cancel(other.id) == "cancelled"
        assert admin.wait(other.id, timeout=30).status == "cancelled"


async def test_asyncio_wait_through_bouncer(bconfig: pgqrs.Config) -> None:
    async with pgqrs.aio.Admin(bconfig) as admin:
        await admin.install()
        await admin.create_queue("waited")
        async with pgqrs.aio.Producer(bconfig, "waited") as p:
            msg = await p.enqueue({"n": 1})
        waiting = asyncio.create_task(admin.wait(msg.id, timeout=60))
        async with pgqrs.aio.Consumer(bconfig, "waited") as c:
            got = await c.dequeue()
            assert got is not None
            await c.archive(got)
        assert (await waiting).status == "completed"
