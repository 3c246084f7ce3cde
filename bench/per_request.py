"""What one enqueue costs a web request, by the way the request gets its producer.

    python -m bench.per_request [--dsn DSN] [--requests 300] [--rounds 3]

* ``producer per request``: ``with pgqrs.Producer(config, q) as p: p.enqueue(...)``
  in each request (its own pool, opened and closed each time);
* ``shared producer``: one ``pgqrs.Producer`` for the process;
* ``task.enqueue``: a ``TaskRegistry``'s task (one pool for the registry);
* ``task.aenqueue``: the same from asyncio;
* reference: a hand-written INSERT on one open psycopg connection.

Interleaved rounds; the median per enqueue of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import psycopg

import pgqrs
from bench.server import server

SCHEMA = "pgqrs_per_request_bench"
QUEUE = "emails"


def timed(n: int, once: Callable[[int], object]) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        once(i)
    return (time.perf_counter() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with server(args.dsn) as dsn:
        config = pgqrs.Config(dsn=dsn, schema=SCHEMA)
        with pgqrs.Admin(config) as admin:
            admin.uninstall()
            admin.install()
            admin.create_queue(QUEUE)
        tasks = pgqrs.TaskRegistry(config)

        @tasks.task(queue=QUEUE)
        def send(to: str, n: int) -> None: ...

        def per_request(i: int) -> None:
            with pgqrs.Producer(config, QUEUE) as p:
                p.enqueue({"to": "a@example.com", "n": i})

        shared = pgqrs.Producer(config, QUEUE)
        shared.open()
        conn = psycopg.connect(dsn, autocommit=True)
        sql = f"INSERT INTO {SCHEMA}.messages (queue, payload) VALUES (%s, %s::jsonb)"

        def reference(i: int) -> None:
            conn.execute(sql, [QUEUE, f'{{"to": "a@example.com", "n": {i}}}'])

        loop = asyncio.new_event_loop()

        def aenqueue(i: int) -> None:
            loop.run_until_complete(send.aenqueue(to="a@example.com", n=i))

        ways: dict[str, Callable[[int], object]] = {
            "producer per request": per_request,
            "shared producer": lambda i: shared.enqueue({"to": "a@example.com", "n": i}),
            "task.enqueue (registry pool)": lambda i: send.enqueue(to="a@example.com", n=i),
            "task.aenqueue (registry pool)": aenqueue,
            "reference: INSERT on one connection": reference,
        }
        for once in ways.values():  # warm up: connect, prepare
            timed(5, once)
        results: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, once in ways.items():
                # A pool per request is slow: fewer of those.
                n = args.requests // 10 if name == "producer per request" else args.requests
                results[name].append(timed(n, once))
        ref = statistics.median(results["reference: INSERT on one connection"])
        for name, times in results.items():
            med = statistics.median(times)
            print(f"{name:40s} {med * 1000:7.3f} ms per enqueue  ({med / ref:5.2f}x reference)")
        loop.run_until_complete(tasks.aclose())
        loop.close()
        shared.close()
        conn.close()
        tasks.close()


if __name__ == "__main__":
    main()
