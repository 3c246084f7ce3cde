"""Running N concurrent clients and timing them: threads (sync) or tasks (asyncio).

Clients are built and connected before the clock starts; the clock runs
from the moment all of them are released until the last one finishes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

S = TypeVar("S")


class Timing(NamedTuple):
    """A timed run: operations done, wall seconds, and this process's CPU
    seconds over the same span (the client's cost: the server is another
    process)."""

    ops: int
    seconds: float
    cpu: float


class Quota:
    """A shared count of jobs done, so N consumers stop after ``target`` jobs."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.done = 0
        self._lock = threading.Lock()

    def more(self) -> bool:
        return self.done < self.target

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n


def threads(
    n: int,
    make: Callable[[int], S],
    work: Callable[[S], int],
    close: Callable[[S], Any],
) -> Timing:
    """Run ``work`` on ``n`` threads at once."""
    states = [make(i) for i in range(n)]
    barrier = threading.Barrier(n + 1)
    counts = [0] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            counts[i] = work(states[i])
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in pool:
        t.start()
    barrier.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for t in pool:
        t.join()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    for s in states:
        close(s)
    if errors:
        raise errors[0]
    return Timing(sum(counts), elapsed, cpu)


def tasks(
    n: int,
    make: Callable[[int], Awaitable[S]],
    work: Callable[[S], Awaitable[int]],
    close: Callable[[S], Awaitable[Any]],
) -> Timing:
    """Run ``work`` as ``n`` asyncio tasks on one event loop."""

    async def main() -> Timing:
        states = [await make(i) for i in range(n)]
        start, cpu = time.perf_counter(), time.process_time()
        try:
            counts = await asyncio.gather(*(work(s) for s in states))
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        finally:
            for s in states:
                await close(s)
        return Timing(sum(counts), elapsed, cpu)

    return asyncio.run(main())
