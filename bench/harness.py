"""Running N concurrent clients and timing them: threads (sync) or tasks (asyncio).

Clients are built and connected before the clock starts; the clock runs
from the moment all of them are released until the last one finishes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

S = TypeVar("S")


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
) -> tuple[int, float]:
    """Run ``work`` on ``n`` threads at once; return (total ops, seconds)."""
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
    start = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    for s in states:
        close(s)
    if errors:
        raise errors[0]
    return sum(counts), elapsed


def tasks(
    n: int,
    make: Callable[[int], Awaitable[S]],
    work: Callable[[S], Awaitable[int]],
    close: Callable[[S], Awaitable[Any]],
) -> tuple[int, float]:
    """Run ``work`` as ``n`` asyncio tasks on one event loop; return (total ops, seconds)."""

    async def main() -> tuple[int, float]:
        states = [await make(i) for i in range(n)]
        start = time.perf_counter()
        try:
            counts = await asyncio.gather(*(work(s) for s in states))
            elapsed = time.perf_counter() - start
        finally:
            for s in states:
                await close(s)
        return sum(counts), elapsed

    return asyncio.run(main())
