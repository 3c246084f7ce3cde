"""Handlers: what a worker calls for each message, and how a handler steers retries."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import datetime
import inspect
import queue as queue_module
import threading
import traceback
from collections.abc import Callable
from typing import Any

from pgqrs._errors import Error, InvalidArgument
from pgqrs._models import Message
from pgqrs._ops import seconds
from pgqrs._worker.backoff import Backoff

#: A handler: takes the Message, returns a JSON-able result (or None); sync or async.
Handler = Callable[[Message], Any]


class Retry(Error):
    """Raise from a handler to put the message back and try again after ``delay``
    seconds (the handler's backoff when None). The attempt counts toward
    max_attempts; on the last attempt the message goes to the archive as dead."""

    def __init__(self, delay: float | datetime.timedelta | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.delay = seconds(delay, "Retry(delay)")
        self.reason = reason


class Abort(Error):
    """Raise from a handler to give up on the message now: it goes to the
    archive as dead, with this exception recorded, whatever attempts are left."""


@dataclasses.dataclass(frozen=True)
class HandlerSpec:
    """A registered handler and its per-queue options (None: the worker's or queue's)."""

    queue: str
    func: Handler
    is_async: bool
    concurrency: int | None = None
    backoff: Backoff | None = None
    max_attempts: int | None = None
    visibility_timeout: float | None = None


def make_spec(
    queue: str,
    func: Handler,
    *,
    concurrency: int | None,
    backoff: Backoff | None,
    max_attempts: int | None,
    visibility_timeout: float | datetime.timedelta | None,
) -> HandlerSpec:
    if not callable(func):
        raise InvalidArgument(f"a handler must be callable, got {func!r}")
    for name, value in (("concurrency", concurrency), ("max_attempts", max_attempts)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise InvalidArgument(f"handler {name} must be an int >= 1 (or None), got {value!r}")
    if backoff is not None and not isinstance(backoff, Backoff):
        raise InvalidArgument(f"backoff must be a pgqrs.Backoff, got {backoff!r}")
    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 (async callable objects)
    )
    return HandlerSpec(
        queue=queue,
        func=func,
        is_async=is_async,
        concurrency=concurrency,
        backoff=backoff,
        max_attempts=max_attempts,
        visibility_timeout=seconds(visibility_timeout, "visibility_timeout", allow_zero=False),
    )


def error_record(exc: BaseException, attempt: int, worker_id: int | None) -> dict[str, Any]:
    """What is stored as the message's error: type, message and traceback."""
    kind = type(exc)
    if kind.__module__ == "builtins":
        name = kind.__qualname__
    elif kind.__module__.startswith("pgqrs."):
        name = f"pgqrs.{kind.__qualname__}"  # the public name, not the private module
    else:
        name = f"{kind.__module__}.{kind.__qualname__}"
    return {
        "type": name,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(kind, exc, exc.__traceback__)),
        "attempt": attempt,
        "worker_id": worker_id,
    }


class DaemonThreads:
    """Runs sync handlers on daemon threads.

    Not concurrent.futures' pool: its threads are joined at interpreter exit,
    so a handler stuck past the grace period would keep a stopped worker's
    process alive. The ``size`` threads start on first use; the worker never
    runs more handlers than that at once.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._jobs: queue_module.SimpleQueue[Any] = queue_module.SimpleQueue()
        self._threads: list[threading.Thread] = []
        #: Outcomes handed back by the threads, applied on the loop by ``_apply``.
        self._outcomes: collections.deque[tuple[asyncio.Future[Any], Any, BaseException | None]]
        self._outcomes = collections.deque()
        #: An ``_apply`` is scheduled on the loop and has not started yet.
        self._wake_pending = False

    def run(self, func: Handler, msg: Message) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._threads:
            for n in range(self._size):
                thread = threading.Thread(target=self._serve, name=f"{self._name}-{n}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._jobs.put((loop, future, func, msg, contextvars.copy_context()))
        return future

    def _serve(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            loop, future, func, msg, context = item
            del item
            try:
                result = context.run(func, msg)
            except BaseException as exc:  # handed to the loop, which decides
                self._hand_back(loop, future, None, exc)
            else:
                self._hand_back(loop, future, result, None)
            del loop, future, func, msg, context

    def _hand_back(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        result: Any,
        exc: BaseException | None,
    ) -> None:
        """From a handler thread: give the outcome to the loop. One wake-up of the
        loop applies every outcome handed back before it runs: each
        ``call_soon_threadsafe`` writes to the loop's self-pipe and costs a loop
        iteration, once per job when handlers are fast."""
        self._outcomes.append((future, result, exc))
        if not self._wake_pending:
            self._wake_pending = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(self._apply)

    def _apply(self) -> None:
        """On the loop: set the futures of the outcomes handed back so far.

        The flag is cleared before the deque is read, so an outcome appended
        after the last read finds it clear and schedules another ``_apply``.
        """
        self._wake_pending = False
        outcomes = self._outcomes
        while outcomes:
            future, result, exc = outcomes.popleft()
            if future.done():  # cancelled: the worker stopped waiting
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self) -> None:
        """Let idle threads end; busy ones end when their handler returns."""
        for _ in self._threads:
            self._jobs.put(None)
        self._threads = []
