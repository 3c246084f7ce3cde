"""Stopping: the stop request (``stop()``, signals) and the two-stage shutdown.

A first stop request (``stop()``, SIGINT or SIGTERM) drains: fetching ends,
prefetched messages go back at once, running handlers get the grace period.
A second one (or ``stop(now=True)``) ends the grace period at once. Then the
handlers still running are cancelled and their messages released; the
outcomes are written (for at most ``shutdown_write_timeout``, or
``HARD_STOP_WRITE_TIMEOUT`` when stopping at once), and the worker's row
says stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pgqrs._errors import Error
from pgqrs._worker.completer import Completer
from pgqrs._worker.events import Counters
from pgqrs._worker.fetcher import QueueState
from pgqrs._worker.heartbeat import Heartbeat
from pgqrs._worker.jobs import Job, JobState, JobTable
from pgqrs._worker.options import Options

logger = logging.getLogger("pgqrs.worker")

#: Seconds a worker told to stop at once (second signal, ``stop(now=True)``)
#: still tries to write outcomes and releases before it gives up on them.
HARD_STOP_WRITE_TIMEOUT = 1.0


class Stop:
    """Stop requests, from any thread or a signal, applied on the worker's loop."""

    def __init__(self, grace_period: float) -> None:
        self._grace_period = grace_period
        self.requested = False
        self.now = False
        #: The shutdown has begun (fetch no more, give back what is not started).
        self.stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._requested_event: asyncio.Event | None = None
        self._now_event: asyncio.Event | None = None
        #: Called on a stop "now" during the shutdown (the completer hurries).
        self.on_now: Callable[[], None] = lambda: None

    def attach(self) -> None:
        """On the worker's loop, as ``run()`` begins (a request made before still counts)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._requested_event = asyncio.Event()
        self._now_event = asyncio.Event()
        if self.requested:
            self._requested_event.set()
        if self.now:
            self._now_event.set()
        self.stopping = False

    def detach(self) -> None:
        """``run()`` returned: the next run starts afresh."""
        self.requested = self.now = False
        self._loop = None
        self._loop_thread = None
        self.on_now = lambda: None

    def request(self, now: bool = False) -> None:
        """Begin a graceful stop (``now``: skip the grace period); any thread."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            self._apply(now)
        else:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(self._apply, now)

    def _apply(self, now: bool) -> None:
        self.requested = True
        self.now = self.now or now
        if self._requested_event is not None:
            self._requested_event.set()
        if now and self._now_event is not None:
            self._now_event.set()
            if self.stopping:  # already draining: stop retrying failed writes soon
                self.on_now()

    async def wait_requested(self) -> None:
        assert self._requested_event is not None
        await self._requested_event.wait()

    async def wait_now(self) -> None:
        assert self._now_event is not None
        await self._now_event.wait()

    def now_requested(self) -> bool:
        return self._now_event is not None and self._now_event.is_set()

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            logger.warning("%s again: stopping now, releasing the leases of running jobs", name)
            self._apply(True)
        else:
            logger.info(
                "%s: stopping; running jobs get %.1fs to finish (send it again to stop at once)",
                name,
                self._grace_period,
            )
            self._apply(False)

    def install_signals(self, enabled: bool) -> InstalledSignals:
        """SIGINT and SIGTERM request a stop (main thread only, when ``enabled``);
        ``restore()`` on the result puts back what they replaced."""
        assert self._loop is not None
        installed = InstalledSignals(self._loop)
        if not enabled or threading.current_thread() is not threading.main_thread():
            return installed
        for sig in (signal.SIGINT, signal.SIGTERM):
            installed.install(sig, self.on_signal)
        return installed


class InstalledSignals:
    """The signal handlers a running worker installed, and what they replaced.

    Why restore: a worker embedded in an application (uvicorn, a test runner)
    runs beside handlers of the application's own; ``loop.remove_signal_handler``
    alone would leave the default action in their place.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: (signal, the Python-level handler before, the loop's own handler before)
        self._saved: list[tuple[int, Any, asyncio.Handle | None]] = []

    def install(self, sig: int, callback: Callable[[int], None]) -> None:
        previous = signal.getsignal(sig)
        # A handler this loop had for it (add_signal_handler keeps them here).
        loop_handlers = getattr(self._loop, "_signal_handlers", None)
        before = loop_handlers.get(sig) if isinstance(loop_handlers, dict) else None
        try:
            self._loop.add_signal_handler(sig, callback, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # e.g. Windows
            return
        self._saved.append((sig, previous, before))

    @property
    def signals(self) -> list[int]:
        return [sig for sig, _, _ in self._saved]

    def restore(self) -> None:
        """Remove the worker's handlers and put back the ones replaced."""
        saved, self._saved = self._saved, []
        for sig, previous, before in reversed(saved):
            with contextlib.suppress(Exception):  # the loop is closing: nothing to put back on
                self._loop.remove_signal_handler(sig)
            try:
                if isinstance(before, asyncio.Handle) and not before.cancelled():
                    callback = getattr(before, "_callback", None)
                    args = getattr(before, "_args", ())
                    if callback is not None:
                        self._loop.add_signal_handler(sig, callback, *args)
                        continue
                if previous is not None:
                    signal.signal(sig, previous)
            except (NotImplementedError, RuntimeError, ValueError) as exc:
                logger.warning("could not restore the handler of %s: %s", sig, exc)


async def write_status(write: Callable[[], Awaitable[None]], what: str, timeout: float) -> None:
    """Record the worker's state; a failure is logged (the row goes stale instead)."""
    try:
        await asyncio.wait_for(write(), timeout)
    except (Error, asyncio.TimeoutError) as exc:
        logger.warning("could not record the worker's state (%s): %s", what, exc)


async def shutdown(
    *,
    stop: Stop,
    options: Options,
    heartbeat: Heartbeat,
    worker_id: Callable[[], int | None],
    queues: list[QueueState],
    fetchers: list[asyncio.Task[None]],
    jobs: JobTable,
    completer: Completer,
    completer_task: asyncio.Task[None],
    give_back_waiting: Callable[[], None],
    give_back: Callable[[Job], None],
    counters: Counters,
) -> None:
    """The shutdown phases: drain (fetchers end, then running jobs within the
    grace period), release the jobs still running, write the last outcomes."""
    stop.stopping = True
    give_back_waiting()
    start = time.monotonic()
    grace_end = start + (0.0 if stop.now else options.grace_period)
    timeout = options.shutdown_write_timeout
    logger.info("worker %s stopping: %d job(s) running", worker_id(), len(jobs))
    status = asyncio.create_task(
        write_status(lambda: heartbeat.alive("stopping"), "stopping", timeout)
    )
    for q in queues:
        q.attention.set()
    now_wait = asyncio.create_task(stop.wait_now())
    try:
        # Fetchers end after their current dequeue (its messages are released),
        # then running jobs get the rest of the grace period.
        for stage in ("fetch", "jobs"):
            while not stop.now_requested():
                tasks = fetchers if stage == "fetch" else jobs.tasks()
                pending = [t for t in tasks if not t.done()]
                remaining = grace_end - time.monotonic()
                if not pending or remaining <= 0:
                    break
                await asyncio.wait(
                    [*pending, now_wait], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
    finally:
        now_wait.cancel()
    for t in fetchers:
        t.cancel()
    # Handlers still running give their messages back.
    late = [j for j in jobs.in_state(JobState.RUNNING) if j.task is not None and not j.task.done()]
    if late:
        logger.warning(
            "releasing %d job(s) still running at the end of the grace period: %s",
            len(late),
            [j.message.id for j in late],
        )
    for j in late:
        assert j.task is not None
        j.task.cancel()
    write_timeout = min(timeout, HARD_STOP_WRITE_TIMEOUT) if stop.now else timeout
    completer.hurry(time.monotonic() + write_timeout)
    # Jobs (the cancelled ones too) hand their outcome to the completer and
    # wait for it to be written; only then is nothing more to come.
    await asyncio.gather(*jobs.tasks(), return_exceptions=True)
    # A job cancelled before its first step never ran its own clean-up.
    for j in jobs.in_state(JobState.RUNNING):
        if j.task is not None and j.task.done():
            give_back(j)
    completer.finish()
    await completer_task
    status.cancel()
    await asyncio.gather(status, return_exceptions=True)
    await write_status(heartbeat.stopped, "stopped", timeout)
    logger.info(
        "worker %s stopped after %.1fs: %d processed, %d completed, %d failed",
        worker_id(),
        time.monotonic() - start,
        counters.processed,
        counters.completed,
        counters.failed,
    )
