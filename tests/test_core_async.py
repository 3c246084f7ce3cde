"""The asyncio twin: same names, same behaviour."""

from __future__ import annotations

import asyncio
import collections

import psycopg
import pytest

import pgqrs
import pgqrs.aio


async def test_seed_flow_under_asyncio(aadmin: pgqrs.aio.Admin, config: pgqrs.Config) -> None:
    await aadmin.create_queue("tasks")
    async with (
        pgqrs.aio.Producer(config, "tasks") as producer,
        pgqrs.aio.Consumer(config, "tasks") as consumer,
    ):
        message = await producer.enqueue('{"task": "send_email", "to": "user@example.com"}')
        assert message.id > 0
        msg = await consumer.dequeue()
        assert msg is not None and msg.payload == {"task": "send_email", "to": "user@example.com"}
        await consumer.archive(msg.id, "completed")
    stats = await aadmin.queue_stats("tasks")
    assert stats.archived == {"completed": 1} and stats.ready == 0
    assert (await aadmin.verify()).ok


async def test_async_fencing_and_lease_expiry(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config
) -> None:
    await aadmin.create_queue("q")
    async with (
        pgqrs.aio.Producer(config, "q") as producer,
        pgqrs.aio.Consumer(config, "q") as stale,
        pgqrs.aio.Consumer(config, "q") as fresh,
    ):
        await producer.enqueue({"n": 1})
        old = await stale.dequeue(visibility_timeout=0.2)
        assert old is not None
        assert await fresh.dequeue() is None
        new = None
        for _ in range(200):
            new = await fresh.dequeue(visibility_timeout=60)
            if new:
                break
            await asyncio.sleep(0.02)
        assert new is not None and new.id == old.id
        with pytest.raises(pgqrs.LeaseExpired):
            await stale.archive(old)
        with pytest.raises(pgqrs.LeaseExpired):
            await stale.extend(old, 10)
        with pytest.raises(pgqrs.LeaseNotHeld):
            await stale.extend(old.id, 10)  # a lost lease is forgotten
        await fresh.extend(new, 10)
        await fresh.release(new, delay=0)
        again = await fresh.dequeue()
        assert again is not None and again.attempts == 3
        await fresh.delete(again)


async def test_async_transactional_enqueue(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config, dsn: str
) -> None:
    await aadmin.create_queue("q")
    async with (
        pgqrs.aio.Producer(config, "q") as producer,
        pgqrs.aio.Consumer(config, "q") as consumer,
    ):
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            async with conn.transaction():
                await producer.enqueue({"kept": 1}, connection=conn)
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await producer.enqueue_batch([{"kept": 0}, {"kept": 0}], connection=conn)
                    raise RuntimeError("roll back")
        got = await consumer.dequeue(batch=10)
        assert [m.payload for m in got] == [{"kept": 1}]


async def test_async_concurrent_consumers_each_message_once(
    aadmin: pgqrs.aio.Admin, config: pgqrs.Config
) -> None:
    await aadmin.create_queue("q", visibility_timeout=300)
    pool = pgqrs.aio.make_pool(config)
    await pool.open()
    async with pgqrs.aio.Producer(config, "q", pool=pool) as producer:
        await producer.enqueue_batch(list(range(2000)))

    async def drain() -> list[int]:
        got: list[int] = []
        async with pgqrs.aio.Consumer(config, "q", pool=pool) as consumer:
            while batch := await consumer.dequeue(batch=25):
                got.extend(m.payload for m in batch)
                await consumer.archive_batch(batch)
        return got

    parts = await asyncio.gather(*(drain() for _ in range(6)))
    await pool.close()
    counts = collections.Counter(n for part in parts for n in part)
    assert len(counts) == 2000 and set(counts.values()) == {1}


async def test_async_errors(aadmin: pgqrs.aio.Admin, config: pgqrs.Config) -> None:
    with pytest.raises(pgqrs.QueueNotFound):
        await aadmin.queue_stats("missing")
    await aadmin.create_queue("q")
    with pytest.raises(pgqrs.QueueExists):
        await aadmin.create_queue("q")
    async with pgqrs.aio.Producer(config, "q") as producer:
        with pytest.raises(pgqrs.PayloadError):
            await producer.enqueue("not json")
    with pytest.raises(pgqrs.InvalidQueueName):
        pgqrs.aio.Consumer(config, "bad name")
    with pytest.raises(pgqrs.ConfigError):
        pgqrs.aio.Admin("postgresql://not-a-config")  # type: ignore[arg-type]


async def test_async_admin_maintenance(aadmin: pgqrs.aio.Admin, config: pgqrs.Config) -> None:
    await aadmin.create_queue("q", max_attempts=1)
    async with (
        pgqrs.aio.Producer(config, "q") as producer,
        pgqrs.aio.Consumer(config, "q") as consumer,
    ):
        await producer.enqueue_batch([1, 2])
        for m in await consumer.dequeue(batch=2):
            await consumer.release(m)
        assert await consumer.dequeue() is None  # both exhausted: moved to dead
        assert [a.status for a in await aadmin.list_archive("q")] == ["dead", "dead"]
        assert len(await aadmin.redrive("q")) == 2
        await aadmin.pause_queue("q")
        assert await consumer.dequeue() is None
        await aadmin.resume_queue("q")
        assert await consumer.dequeue() is not None
        assert await aadmin.purge_queue("q") == 2
    assert [q.name for q in await aadmin.list_queues()] == ["q"]
    await aadmin.delete_queue("q")
    await aadmin.uninstall()
    assert not (await aadmin.verify()).installed
