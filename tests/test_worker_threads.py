"""Sync handlers' threads hand their outcomes back to the worker's event loop.

No database here: this is the hand-off between the handler threads and the
loop (``pgqrs._worker.handlers.DaemonThreads``); the worker tests run sync
handlers against a real server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from pgqrs._worker.handlers import DaemonThreads


def _wait_until(cond: Any, what: str, timeout: float = 10.0) -> None:
    """Block the calling thread (the loop's, on purpose) until ``cond()``."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def test_every_outcome_reaches_its_future() -> None:
    """Thousands of fast handlers on 8 threads: each future gets its own result
    or exception, none is lost or set twice."""

    def handler(n: Any) -> int:
        if n % 7 == 0:
            raise ValueError(f"job {n}")
        return int(n) * 2

    async def main() -> None:
        threads = DaemonThreads(8, "test-handler")
        try:
            futures = [threads.run(handler, n) for n in range(3000)]  # type: ignore[arg-type]
            # A lost wake-up would leave futures unset: fail, do not hang.
            outcomes = await asyncio.wait_for(
                asyncio.gather(*futures, return_exceptions=True), timeout=60
            )
        finally:
            threads.shutdown()
        for n, outcome in enumerate(outcomes):
            if n % 7 == 0:
                assert isinstance(outcome, ValueError) and str(outcome) == f"job {n}"
            else:
                assert outcome == n * 2

    asyncio.run(main())


def test_outcomes_that_arrive_together_wake_the_loop_once() -> None:
    """All 50 outcomes are handed back while the loop is busy: one wake-up
    applies them all (one call_soon_threadsafe per job, before, woke the
    loop 50 times)."""

    async def main() -> None:
        threads = DaemonThreads(8, "test-handler")
        applied = 0
        apply = threads._apply

        def counting_apply() -> None:
            nonlocal applied
            applied += 1
            apply()

        threads._apply = counting_apply  # type: ignore[method-assign]
        try:
            futures = [threads.run(lambda n: n, n) for n in range(50)]  # type: ignore[arg-type]
            # Keep the loop busy until every handler has handed its outcome back.
            _wait_until(lambda: len(threads._outcomes) == 50, "50 outcomes")
            assert await asyncio.gather(*futures) == list(range(50))
        finally:
            threads.shutdown()
        assert applied == 1

    asyncio.run(main())


def test_a_cancelled_future_is_skipped_and_later_jobs_still_complete() -> None:
    """The worker stops waiting for a handler (grace period over): its outcome,
    handed back later, is dropped without an error on the loop."""
    release = threading.Event()
    errors: list[dict[str, Any]] = []

    def slow(n: Any) -> Any:
        release.wait(10)
        return n

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        threads = DaemonThreads(2, "test-handler")
        try:
            stuck = threads.run(slow, 1)  # type: ignore[arg-type]
            stuck.cancel()
            release.set()
            _wait_until(lambda: threads._wake_pending, "the cancelled job's outcome")
            await asyncio.sleep(0)  # the scheduled _apply runs first
            assert not threads._outcomes
            assert await threads.run(lambda n: n, 2) == 2  # type: ignore[arg-type]
        finally:
            threads.shutdown()
        with pytest.raises(asyncio.CancelledError):
            stuck.result()

    asyncio.run(main())
    assert errors == []
