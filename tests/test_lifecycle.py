"""The job's whole life (issue 16): cancellation, waiting for a result,
progress, archive retention; Python workers (sync and asyncio) and clients.

Tests wait on worker signals and job events, never on the clock; timeouts
are guards against a hang.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import psycopg
import pytest

import pgqrs
import pgqrs.aio
from test_worker import WAIT, on_event, reached, started, stopped

Conn = psycopg.Connection[tuple[Any, ...]]


def status_of(sql: Conn, schema: str, msg_id: int) -> list[str]:
    """Every archive status of ``msg_id`` (one element when archived once)."""
    rows = sql.execute(f'SELECT status FROM "{schema}".archive WHERE id = %s', (msg_id,))
    return [r[0] for r in rows.fetchall()]


def in_queue(sql: Conn, schema: str, msg_id: int) -> bool:
    row = sql.execute(f'SELECT count(*) FROM "{schema}".messages WHERE id = %s', (msg_id,))
    got = row.fetchone()
    return bool(got and got[0])


# -- cancellation: clients ------------------------------------------------------


def test_cancel_waiting_and_delayed_archives_at_once(
    admin: pgqrs.Admin, config: pgqrs.Config, queue: str, sql: Conn, schema: str
) -> None:
    with pgqrs.Producer(config, queue) as p:
        now = p.enqueue({"n": 1})
        later = p.enqueue({"n": 2}, delay=3600)
    assert admin.cancel(now.id) == "cancelled"
    assert admin.cancel_batch([later.id]) == {later.id: "cancelled"}
    assert status_of(sql, schema, now.id) == ["cancelled"]
    assert status_of(sql, schema, later.id) == ["cancelled"]
    assert not in_queue(sql, schema, now.id)
    assert admin.list_archive(queue, status="cancelled", limit=10)[0].status == "cancelled"
    assert admin.queue_stats(queue).archived == {"cancelled": 2}


def test_cancel_archived_and_unknown_are_typed_errors(
    admin: pgqrs.Admin, config: pgqrs.Config, queue: str
) -> None:
    with pgqrs.Producer(config, queue) as p:
        msg = p.enqueue({"n": 1})
    with pgqrs.Consumer(config, queue) as c:
        got = c.dequeue()
        assert got is not None
        c.archive(got, result={"ok": True})
    with pytest.raises(pgqrs.AlreadyArchived, match=rf"message {msg.id} .*'completed'") as err:
        admin.cancel(msg.id)
    assert err.value.id == msg.id and err.value.status == "completed"
    with pytest.raises(pgqrs.MessageNotFound, match="no message 999999") as nf:
        admin.cancel(999999)
    assert isinstance(nf.value, LookupError)
    assert admin.cancel_batch([msg.id, 999999]) == {
        msg.id: "archived:completed",
        999999: "not_found",
    }
    for bad in (0, -1, True, "1", 1.5, None):
        with pytest.raises(pgqrs.InvalidArgument, match="message id must be a positive int"):
            admin.cancel(bad)  # type: ignore[arg-type]
    with pytest.raises(pgqrs.InvalidArgument, match="ids must be a list"):
        admin.cancel_batch(5)  # type: ignore[arg-type]
    assert admin.cancel_batch([]) == {}


def test_cancel_leased_message_marks_it_and_its_settlement_archives_cancelled(
    admin: pgqrs.Admin, config: pgqrs.Config, queue: str, sql: Conn, schema: str
) -> None:
    """A plain consumer learns at its next fenced statement: extend says so
    (through set_progress's answer too), archive writes status cancelled."""
    with pgqrs.Producer(config, queue) as p:
        a, b = p.enqueue_batch([{"n": 1}, {"n": 2}])
    with pgqrs.Consumer(config, queue) as c:
        msgs = c.dequeue(batch=2)
        assert admin.cancel_batch([a.id, b.id]) == {
            a.id: "cancel_requested",
            b.id: "cancel_requested",
        }
        assert admin.cancel(a.id) == "cancel_requested"  # idempotent while held
        first, second = sorted(msgs, key=lambda m: m.id)
        assert c.set_progress(first, {"step": 1}) is True
        assert first.cancelled and first.progress == {"step": 1}
        c.archive(first, result={"ignored": True})
        c.release(second)  # given back: the next dequeue archives it as cancelled
        assert c.dequeue() is None
    got = admin.list_archive(queue, status="cancelled", limit=10)
    assert sorted(m.id for m in got) == [a.id, b.id]
    by_id = {m.id: m for m in got}
    assert by_id[a.id].result is None and by_id[a.id].progress == {"step": 1}
    assert status_of(sql, schema, a.id) == ["cancelled"]
    assert status_of(sql, schema, b.id) == ["cancelled"]


def test_cancel_requested_and_lease_expired_is_not_redelivered(
    admin: pgqrs.Admin, config: pgqrs.Config, queue: str, sql: Conn, schema: str
) -> None:
    """The holder died (its lease ran out): the next dequeue archives the
    message as cancelled instead of delivering it again."""
    with pgqrs.Producer(config, queue) as p:
        msg = p.enqueue({"n": 1})
    with pgqrs.Consumer(config, queue) as c:
        assert c.dequeue(visibility_timeout=30) is not None
        assert admin.cancel(msg.id) == "cancel_requested"
        sql.execute(f'UPDATE "{schema}".messages SET visible_at = now() WHERE id = %s', (msg.id,))
        assert c.dequeue() is None
    assert status_of(sql, schema, msg.id) == ["cancelled"]


def test_fail_of_a_cancel_requested_message_archives_it_cancelled(
    admin: pgqrs.Admin, config: pgqrs.Config, queue: str, sql: Conn, schema: str
) -> None:
    with pgqrs.Producer(config, queue) as p:
        msg = p.enqueue({"n": 1})
    with pgqrs.Consumer(config, queue) as c:
        got = c.dequeue()
        assert got is not None
        admin.cancel(msg.id)
        lease = got.lease
    with psycopg.connect(config.dsn, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT outcome FROM "{schema}".message_fail(%s, %s, NULL, NULL, NULL, 1, 10, 0)',
            ([msg.id], [lease]),
        ).fetchone()
    assert row == ("cancelled",)
    assert status_of(sql, schema, msg.id) == ["cancelled"]


# -- cancellation: workers -------------------------------------------------------


async def test_async_handler_is_cancelled_and_archived_cancelled(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    await aadmin.create_queue("jobs")
    entered = asyncio.Event()
    seen_cancel: list[bool] = []

    async def handle(msg: pgqrs.Message) -> str:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen_cancel.append(True)
            raise
        return "never"

    worker = pgqrs.aio.Worker(
        config, concurrency=2, heartbeat_interval=0.05, handle_signals=False, poll_only=True
    )
    worker.handler("jobs")(handle)
    cancelled = on_event(worker, "cancelled")
    task = await started(worker)
    try:
        async with pgqrs.aio.Producer(config, "jobs") as p:
            msg = await p.enqueue({"n": 1})
        await asyncio.wait_for(entered.wait(), WAIT)
        assert await aadmin.cancel(msg.id) == "cancel_requested"
        await cancelled.wait(lambda: worker.counters.cancelled == 1)
        done = await aadmin.wait(msg.id, timeout=WAIT)
        assert done.status == "cancelled" and done.result is None
        assert seen_cancel == [True]
    finally:
        await stopped(worker, task)
    assert status_of(sql, schema, msg.id) == ["cancelled"]


def test_sync_handler_sees_msg_cancelled_and_result_is_ignored(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    admin.create_queue("jobs")
    entered = threading.Event()
    saw: list[bool] = []

    worker = pgqrs.Worker(config, heartbeat_interval=0.05, handle_signals=False, poll_only=True)

    @worker.handler("jobs")
    def handle(msg: pgqrs.Message) -> dict[str, int]:
        entered.set()
        for step in range(100000):
            if msg.set_progress({"step": step}):
                break
            if msg.cancelled:
                break
        saw.append(msg.cancelled)
        return {"partial": 1}

    with pgqrs.Producer(config, "jobs") as p:
        msg = p.enqueue({"n": 1})
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert entered.wait(WAIT)
        assert admin.cancel(msg.id) == "cancel_requested"
        done = msg.wait(timeout=WAIT)
        assert done.status == "cancelled" and done.result is None
        assert done.progress is not None and "step" in done.progress
        assert saw == [True]
        assert worker.counters.cancelled == 1
    finally:
        worker.stop()
        thread.join(WAIT)
    assert status_of(sql, schema, msg.id) == ["cancelled"]


async def test_cancel_racing_the_handler_finishing_archives_once(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    """Cancel while the handler finishes: each message ends archived exactly
    once, as completed (the cancel came too late: AlreadyArchived) or
    cancelled (the mark won)."""
    await aadmin.create_queue("jobs")
    n = 40

    async def handle(msg: pgqrs.Message) -> int:
        await asyncio.sleep(0)
        return 1

    worker = pgqrs.aio.Worker(
        config, concurrency=8, heartbeat_interval=0.05, handle_signals=False, poll_only=True
    )
    worker.handler("jobs")(handle)
    async with pgqrs.aio.Producer(config, "jobs") as p:
        ids = [m.id for m in await p.enqueue_batch([{"n": i} for i in range(n)])]
    task = await started(worker)
    try:
        outcomes: dict[int, str] = {}
        for i in ids:
            try:
                outcomes[i] = await aadmin.cancel(i)
            except pgqrs.AlreadyArchived as exc:
                outcomes[i] = f"archived:{exc.status}"
        results = [await aadmin.wait(i, timeout=WAIT) for i in ids]
    finally:
        await stopped(worker, task)
    for i, r in zip(ids, results, strict=True):
        assert status_of(sql, schema, i) == [r.status]
        if outcomes[i] in ("cancelled", "cancel_requested"):
            assert r.status == "cancelled", (i, outcomes[i], r.status)
        else:
            assert outcomes[i] == "archived:completed" and r.status == "completed"
    assert worker.counters.completed + worker.counters.cancelled == sum(
        1 for i in ids if outcomes[i] != "cancelled"
    )


async def test_cancel_while_another_worker_takes_over_archives_once(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    """The first holder's lease expires and a second consumer takes the message
    over: the cancel mark stays with the row, the new holder's settlement
    archives it cancelled, the first holder's write is fenced out."""
    await aadmin.create_queue("jobs")
    async with pgqrs.aio.Producer(config, "jobs") as p:
        msg = await p.enqueue({"n": 1})
    async with pgqrs.aio.Consumer(config, "jobs") as first, pgqrs.aio.Consumer(
        config, "jobs"
    ) as second:
        old = await first.dequeue(visibility_timeout=30)
        assert old is not None
        assert await aadmin.cancel(msg.id) == "cancel_requested"
        sql.execute(f'UPDATE "{schema}".messages SET visible_at = now() WHERE id = %s', (msg.id,))
        # The takeover: the mark makes the dequeue archive it as cancelled.
        assert await second.dequeue() is None
        with pytest.raises(pgqrs.LeaseExpired):
            await first.archive(old)
    assert status_of(sql, schema, msg.id) == ["cancelled"]


# -- waiting -----------------------------------------------------------------------


async def test_wait_returns_the_archived_row_and_times_out_typed(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config
) -> None:
    await aadmin.create_queue("jobs")
    async with pgqrs.aio.Producer(config, "jobs") as p:
        msg = await p.enqueue({"n": 1})
    with pytest.raises(pgqrs.WaitTimeout, match=rf"message {msg.id} .* within 0.2s") as err:
        await aadmin.wait(msg.id, timeout=0.2)
    assert isinstance(err.value, TimeoutError) and isinstance(err.value, pgqrs.Error)
    assert err.value.id == msg.id and err.value.timeout == 0.2
    for bad in (-1, "1", float("nan"), True):
        with pytest.raises(pgqrs.InvalidArgument, match="timeout must be"):
            await aadmin.wait(msg.id, timeout=bad)  # type: ignore[arg-type]

    async def settle() -> None:
        async with pgqrs.aio.Consumer(config, "jobs") as c:
            got = await c.dequeue()
            assert got is not None
            await c.archive(got, result={"answer": 42})

    waiting = asyncio.create_task(msg.wait(timeout=WAIT))
    await settle()
    done = await waiting
    assert done.id == msg.id and done.status == "completed" and done.result == {"answer": 42}
    # Already archived: returns at once.
    assert (await aadmin.wait(msg.id, timeout=0)).status == "completed"


async def test_wait_is_woken_by_notify_not_the_poll(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the poll made very slow, only the NOTIFY can wake the waiter in time."""
    from pgqrs._async import _wait

    monkeypatch.setattr(_wait, "POLL_INTERVAL", 3600.0)
    await aadmin.create_queue("jobs")
    async with pgqrs.aio.Producer(config, "jobs") as p:
        msg = await p.enqueue({"n": 1})
    waiting = asyncio.create_task(aadmin.wait(msg.id, timeout=WAIT))
    async with pgqrs.aio.Consumer(config, "jobs") as c:
        got = await c.dequeue()
        assert got is not None
        # The waiter registered (archive_wait) before it listens for NOTIFY:
        # cancel-free archive once it is registered.
        while True:
            async with await psycopg.AsyncConnection.connect(config.dsn, autocommit=True) as conn:
                cur = await conn.execute(
                    f'SELECT count(*) FROM "{config.schema}".archive_waiters WHERE id = %s',
                    (msg.id,),
                )
                row = await cur.fetchone()
            if row and row[0]:
                break
            await asyncio.sleep(0.01)
        await c.archive(got)
    done = await asyncio.wait_for(waiting, 30)
    assert done.status == "completed"


# -- progress ------------------------------------------------------------------------


async def test_progress_is_fenced_and_visible_in_peek_and_archive(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    await aadmin.create_queue("jobs")
    async with pgqrs.aio.Producer(config, "jobs") as p:
        await p.enqueue({"n": 1})
    async with pgqrs.aio.Consumer(config, "jobs") as c:
        msg = await c.dequeue(visibility_timeout=30)
        assert msg is not None
        assert await msg.set_progress({"done": 40, "of": 100}) is False
        peeked = await aadmin.peek("jobs")
        assert peeked[0][0].progress == {"done": 40, "of": 100}
        with pytest.raises(pgqrs.PayloadError):
            await c.set_progress(msg, {"bad": object()})
        with pytest.raises(pgqrs.InvalidArgument, match="progress must be a JSON value"):
            await c.set_progress(msg, None)
        # Lost lease: the usual LeaseExpired, the row untouched.
        sql.execute(f'UPDATE "{schema}".messages SET lease = gen_random_uuid()')
        with pytest.raises(pgqrs.LeaseExpired):
            await c.set_progress(msg, {"done": 50})
        assert (await aadmin.peek("jobs"))[0][0].progress == {"done": 40, "of": 100}
    peeked_msg = (await aadmin.peek("jobs"))[0][0]
    with pytest.raises(pgqrs.InvalidArgument, match="cannot set_progress: only a message from"):
        peeked_msg.set_progress({"x": 1})
    with pytest.raises(pgqrs.InvalidArgument, match="cannot wait: only a message from enqueue"):
        msg.wait(timeout=1)


async def test_worker_handler_progress_goes_to_the_archive(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config
) -> None:
    await aadmin.create_queue("jobs")

    async def handle(msg: pgqrs.Message) -> str:
        for step in range(3):
            await msg.set_progress({"step": step})
        return "done"

    worker = pgqrs.aio.Worker(config, handle_signals=False, poll_only=True)
    worker.handler("jobs")(handle)
    task = await started(worker)
    try:
        async with pgqrs.aio.Producer(config, "jobs") as p:
            msg = await p.enqueue({"n": 1})
        done = await msg.wait(timeout=WAIT)
    finally:
        await stopped(worker, task)
    assert done.status == "completed" and done.progress == {"step": 2}
    assert (await aadmin.list_archive("jobs", limit=1))[0].progress == {"step": 2}


# -- retention -------------------------------------------------------------------------


async def test_retention_is_enforced_by_workers_in_batches(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    await aadmin.create_queue("jobs", archive_retention=3600)
    await aadmin.create_queue("keep")
    for q in ("jobs", "keep"):
        async with pgqrs.aio.Producer(config, q) as p:
            ids = [m.id for m in await p.enqueue_batch([{"n": i} for i in range(25)])]
        await aadmin.cancel_batch(ids)
    sql.execute(f"UPDATE \"{schema}\".archive SET archived_at = now() - interval '2 hours'")
    async with pgqrs.aio.Producer(config, "jobs") as p:
        fresh = await p.enqueue({"fresh": True})
    await aadmin.cancel(fresh.id)

    async def handle(msg: pgqrs.Message) -> None:
        return None

    worker = pgqrs.aio.Worker(
        config, heartbeat_interval=0.05, archive_prune_interval=0.05, handle_signals=False
    )
    worker.handler("jobs")(handle)
    worker.handler("keep")(handle)
    # Small batches: the worker must repeat a full one.
    runtime = worker._runtime
    runtime.options = dataclasses.replace(runtime.options, archive_prune_batch=10)
    task = await started(worker)
    try:
        await reached(
            worker,
            lambda: sql.execute(
                f"SELECT count(*) FROM \"{schema}\".archive WHERE queue = 'jobs'"
            ).fetchone()
            == (1,),
            "the old archive of jobs pruned",
        )
    finally:
        await stopped(worker, task)
    counts = dict(
        sql.execute(f'SELECT queue, count(*) FROM "{schema}".archive GROUP BY queue').fetchall()
    )
    assert counts == {"jobs": 1, "keep": 25}


def test_retention_bad_input_and_function_contract(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: Conn, schema: str
) -> None:
    admin.create_queue("jobs")
    for bad in (0, -5, "7 days", True):
        with pytest.raises(pgqrs.InvalidArgument, match="archive_retention"):
            admin.set_archive_retention("jobs", bad)  # type: ignore[arg-type]
    with pytest.raises(pgqrs.QueueNotFound):
        admin.set_archive_retention("nope", 60)
    with pytest.raises(pgqrs.InvalidArgument, match="archive_retention"):
        admin.create_queue("other", archive_retention=0)
    assert not [q for q in admin.list_queues() if q.name == "other"]
    # No retention: archive_prune answers NULL (nothing to do) at once.
    prune = f'SELECT pruned FROM "{schema}".archive_prune(%s, %s)'
    assert sql.execute(prune, ("jobs", 1000)).fetchone() == (None,)
    admin.set_archive_retention("jobs", 60)
    assert sql.execute(prune, ("jobs", 1000)).fetchone() == (0,)
    # Another session pruning the queue: NULL, no wait.
    with psycopg.connect(config.dsn) as holder:
        holder.execute(prune, ("jobs", 1000))  # holds the try-lock until it ends
        assert sql.execute(prune, ("jobs", 1000)).fetchone() == (None,)
    admin.set_archive_retention("jobs", None)
    assert sql.execute(prune, ("jobs", 1000)).fetchone() == (None,)
    with pytest.raises(psycopg.Error, match="batch must be from 1 to 100000, got 0"):
        sql.execute(prune, ("jobs", 0))
