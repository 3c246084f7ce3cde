"""Exactly once within the visibility timeout, under concurrent consumers."""

from __future__ import annotations

import collections
import threading

import psycopg

import pgqrs

MESSAGES = 20_000
THREADS = 8
BATCH = 50


def test_eight_threads_drain_20000_messages_each_delivered_once(
    admin: pgqrs.Admin, config: pgqrs.Config, sql: psycopg.Connection
) -> None:
    admin.create_queue("drain", visibility_timeout=300)
    with pgqrs.Producer(config, "drain") as producer:
        for start in range(0, MESSAGES, 5000):
            producer.enqueue_batch([{"n": n} for n in range(start, start + 5000)])

    seen: list[list[int]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    pool = pgqrs.make_pool(config)
    pool.open()

    def drain(slot: int) -> None:
        try:
            with pgqrs.Consumer(config, "drain", pool=pool) as consumer:
                while True:
                    batch = consumer.dequeue(batch=BATCH)
                    if not batch:
                        return
                    seen[slot].extend(m.payload["n"] for m in batch)
                    consumer.archive_batch(batch)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool.close()

    assert not errors, errors
    counts = collections.Counter(n for part in seen for n in part)
    assert len(counts) == MESSAGES and set(counts.values()) == {1}
    assert sum(1 for part in seen if part) > 1  # the work really was shared
    s = config.schema
    assert sql.execute(f'SELECT count(*) FROM "{s}".messages').fetchone() == (0,)
    archived = sql.execute(
        f'SELECT count(*), count(DISTINCT id), max(attempts) FROM "{s}".archive '
        "WHERE status = 'completed'"
    ).fetchone()
    assert archived == (MESSAGES, MESSAGES, 1)
