"""Handlers: what a worker calls for each message, how a handler steers
retries, and running a job (``Runner``: call, decide, settle)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import datetime
import inspect
import logging
import queue as queue_module
import re
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pgqrs._async import _calls as calls
from pgqrs._async._db import Database
from pgqrs._errors import Error, InvalidArgument, LeaseExpired, PayloadError
from pgqrs._models import Message
from pgqrs._ops import seconds
from pgqrs._payload import encode_json
from pgqrs._tasks.wire import TASK_HEADER
from pgqrs._worker.completer import Completer, Outcome, Settlement
from pgqrs._worker.events import Counters, Events
from pgqrs._worker.fetcher import QueueState, fetch_queue
from pgqrs._worker.jobs import Job, JobTable
from pgqrs._worker.options import Backoff, Options
from pgqrs._worker.outcome import (
    Cancelled,
    Decision,
    HandlerOutcome,
    Raised,
    Returned,
    Stopped,
    decide,
)
from pgqrs._worker.prefetch import Prefetch
from pgqrs._worker.slots import min_batch

if TYPE_CHECKING:
    from pgqrs._tasks.registry import TaskRegistry

logger = logging.getLogger("pgqrs.worker")

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
class Route:
    """What a task message (header ``pgqrs-task``) is handed to."""

    func: Handler
    is_async: bool


@dataclasses.dataclass(frozen=True)
class HandlerSpec:
    """A registered handler and its per-queue options (None: the worker's or queue's).

    ``tasks``: the queue's tasks by name (a registry served by the worker);
    ``func`` is then None when the queue has no plain handler.
    """

    queue: str
    func: Handler | None
    is_async: bool
    concurrency: int | None = None
    backoff: Backoff | None = None
    max_attempts: int | None = None
    visibility_timeout: float | None = None
    tasks: Mapping[str, Route] | None = None


def with_tasks(
    handlers: dict[str, HandlerSpec], registries: Sequence[TaskRegistry]
) -> dict[str, HandlerSpec]:
    """The handlers with the registries' tasks added to their queues' specs (a
    queue with tasks and no plain handler gets a spec of its own)."""
    if not registries:
        return handlers
    specs = dict(handlers)
    routes: dict[str, dict[str, Route]] = {}
    for registry in registries:
        for name, task in registry.tasks.items():
            queue_routes = routes.setdefault(task.queue, {})
            if name in queue_routes:
                raise InvalidArgument(
                    f"task {name!r} of queue {task.queue!r} is in two registries the worker serves"
                )
            func = task.ahandle_message if task.is_async else task.handle_message
            queue_routes[name] = Route(func, task.is_async)
    for queue, queue_routes in routes.items():
        spec = specs.get(queue)
        if spec is None:
            spec = HandlerSpec(queue=queue, func=None, is_async=False)
        specs[queue] = dataclasses.replace(spec, tasks=queue_routes)
    return specs


def route(spec: HandlerSpec, m: Message) -> tuple[Handler, bool]:
    """The function for ``m``: its task's (header ``pgqrs-task``), else the
    queue's plain handler. ``Abort`` (permanent) when there is neither."""
    tasks = spec.tasks
    if tasks is not None and TASK_HEADER in m.headers:
        name = m.headers[TASK_HEADER]
        target = tasks.get(name) if isinstance(name, str) else None
        if target is None:
            known = ", ".join(map(repr, sorted(tasks))) or "none"
            raise Abort(
                f"message {m.id} is for task {name!r}, which this worker does not know on "
                f"queue {spec.queue!r} (its tasks there: {known}); register the task in the "
                "registry the worker serves, or check the name the producer sent"
            )
        return target.func, target.is_async
    if spec.func is None:
        raise Abort(
            f"message {m.id} has no {TASK_HEADER!r} header and queue {spec.queue!r} has only "
            "tasks here: enqueue it through its task, or give the queue a plain handler "
            "(@worker.handler)"
        )
    return spec.func, spec.is_async


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


def served_queues(handlers: dict[str, HandlerSpec], wanted: list[str] | None) -> list[str]:
    """The queues a worker serves (``wanted``, or every queue given a handler);
    ``InvalidArgument`` when one has no handler."""
    if not handlers:
        raise InvalidArgument(
            "the worker has no handlers: register one with @worker.handler(queue), "
            "or serve tasks with Worker(..., tasks=registry)"
        )
    names = wanted if wanted is not None else sorted(handlers)
    missing = [n for n in names if n not in handlers]
    if missing:
        raise InvalidArgument(
            f"no handler for queue(s) {', '.join(map(repr, missing))}: "
            "register one with @worker.handler(queue) for each queue the worker serves"
        )
    return names


async def load_queue(db: Database, spec: HandlerSpec, opts: Options) -> QueueState:
    """The state of the queue ``spec`` serves, its limits settled: the handler's,
    within the worker's (and the queue's max_attempts)."""
    limit = min(spec.concurrency or opts.concurrency, opts.concurrency)
    return await fetch_queue(
        db,
        spec.queue,
        limit=limit,
        max_attempts=spec.max_attempts or opts.max_attempts,
        visibility_timeout=spec.visibility_timeout or opts.visibility_timeout,
        min_batch=min_batch(limit, opts.concurrency, opts.fetch_batch_fraction),
    )


async def call(
    spec: HandlerSpec, m: Message, threads: DaemonThreads, max_bytes: int
) -> HandlerOutcome:
    """Call ``spec``'s handler with ``m`` (a sync one on ``threads``) and say how it
    ended; the result is encoded here, so a result refused counts as a raise.
    ``asyncio.CancelledError`` (the worker stops waiting) goes through."""
    try:
        if spec.tasks is None:  # the common case: one handler for the queue
            assert spec.func is not None
            func, is_async = spec.func, spec.is_async
        else:
            func, is_async = route(spec, m)
        if is_async:
            result = await func(m)
        else:
            result = await threads.run(func, m)
    except Retry as exc:
        return Raised(exc, retry=True, delay=exc.delay)
    except Abort as exc:
        return Raised(exc, abort=True)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # SystemExit or KeyboardInterrupt in a handler thread too
        return Raised(exc)
    # The handler succeeded: its result never makes it run again (its side
    # effects happened). One that cannot be stored is archived as completed
    # with a record of its type and why, and one warning.
    try:
        return Returned(result, encode_json(result, "result", max_bytes))
    except PayloadError as exc:
        kind = type_name(type(result))
        logger.warning(
            "message %s (queue %r): the handler returned a result that cannot be stored (%s: %s); "
            'archived as completed with {"unstorable": ...} instead',
            m.id,
            m.queue,
            kind,
            exc,
        )
        return Returned(result, unstorable_result(kind, str(exc), max_bytes))


def type_name(kind: type) -> str:
    """A type's name as error records show it: builtins bare, pgqrs's public
    name, others with their module."""
    if kind.__module__ == "builtins":
        return kind.__qualname__
    if kind.__module__.startswith("pgqrs."):
        return f"pgqrs.{kind.__qualname__}"  # the public name, not the private module
    return f"{kind.__module__}.{kind.__qualname__}"


def unstorable_result(kind: str, reason: str, max_bytes: int) -> str | None:
    """The archived ``result`` of a handler whose result cannot be stored:
    ``{"unstorable": "<type>", "reason": "..."}`` (None if even that is refused,
    with a max_payload_bytes below ~200 bytes)."""
    record = {"unstorable": kind, "reason": storable_text(reason, MAX_ERROR_MESSAGE)[0]}
    try:
        return encode_json(record, "result", max_bytes)
    except PayloadError:
        return None


#: Longest error message stored, in characters; longer ones are cut, with a
#: note saying how much (docs/worker.md). The same in the Rust worker.
MAX_ERROR_MESSAGE = 4_000
#: Longest traceback stored, in characters: its end is kept (the innermost
#: frames and the exception), its start cut with a note.
MAX_TRACEBACK = 16_000
_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str, limit: int, *, keep_end: bool = False) -> tuple[str, bool]:
    """``text`` as PostgreSQL can store it in jsonb: NUL and lone surrogates
    replaced by U+FFFD, cut to ``limit`` characters with a note (the end kept
    when ``keep_end``); and whether it was changed."""
    changed = False
    if _UNSTORABLE_CHARS.search(text):
        text, changed = _UNSTORABLE_CHARS.sub("\ufffd", text), True
    if len(text) > limit:
        cut = len(text) - limit
        if keep_end:
            text = f"[{cut} characters cut] ...{text[-limit:]}"
        else:
            text = f"{text[:limit]}... [{cut} characters cut]"
        changed = True
    return text, changed


def error_record(exc: BaseException, attempt: int, worker_id: int | None) -> dict[str, Any]:
    """What is stored as the message's error: type, message and traceback,
    always storable: NUL and lone surrogates replaced, cut to MAX_ERROR_MESSAGE
    and MAX_TRACEBACK characters, with a log line when that happens (a record
    the database refuses would leave the message held, its lease extended
    forever)."""
    kind = type(exc)
    try:
        message = str(exc)
    except Exception as str_failed:  # a __str__ that raises
        message = f"(str() of the exception failed: {type(str_failed).__name__})"
    try:
        # Each piece cut alone first: the exception's line repeats its message.
        trace = "".join(
            storable_text(piece, MAX_ERROR_MESSAGE)[0]
            for piece in traceback.format_exception(kind, exc, exc.__traceback__)
        )
    except Exception as format_failed:
        trace = f"(the traceback could not be formatted: {type(format_failed).__name__})"
    message, cut_message = storable_text(message, MAX_ERROR_MESSAGE)
    trace, cut_trace = storable_text(trace, MAX_TRACEBACK, keep_end=True)
    if cut_message or cut_trace:
        logger.warning(
            "a handler's %s error was cleaned (NUL, lone surrogates) or cut (message to %d, "
            "traceback to %d characters) to be stored",
            type_name(kind),
            MAX_ERROR_MESSAGE,
            MAX_TRACEBACK,
        )
    return {
        "type": type_name(kind),
        "message": message,
        "traceback": trace,
        "attempt": attempt,
        "worker_id": worker_id,
    }


def error_json(record: dict[str, Any], max_bytes: int) -> str | None:
    """The error record's JSON text; when even the cleaned and cut record is
    refused (max_payload_bytes below ~20 KB), without its traceback, then
    with its message cut short, then None (message_fail keeps the last one)."""
    for attempt in (
        record,
        {**record, "traceback": None},
        {**record, "traceback": None, "message": storable_text(record["message"], 200)[0]},
    ):
        try:
            return encode_json(attempt, "error", max_bytes)
        except PayloadError:
            continue
    return None


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


class Runner:
    """Runs a job: calls its handler, counts and logs how it ended, decides
    its settlement (``outcome``) and hands it to the completer; once written,
    records it (counters, the job's event)."""

    def __init__(
        self,
        handlers: dict[str, HandlerSpec],
        threads: DaemonThreads,
        jobs: JobTable,
        completer: Completer,
        prefetch: Prefetch,
        events: Events,
        counters: Counters,
        *,
        backoff: Backoff,
        max_bytes: int,
        worker_id: Callable[[], int | None],
        free: Callable[[Job], None],
        written: Callable[[], None],
        db: Database | None = None,
    ) -> None:
        """``free(job)``: the handler is over, its slot is free (the runtime
        starts what waits). ``written()``: an outcome was written."""
        self._handlers = handlers
        self._threads = threads
        self._jobs = jobs
        self._completer = completer
        self._prefetch = prefetch
        self._events = events
        self._counters = counters
        self._backoff = backoff
        self._max_bytes = max_bytes
        self._worker_id = worker_id
        self._free = free
        self._written = written
        self._progress = None if db is None else Progress(db, max_bytes)

    def spawn(self, job: Job) -> None:
        """Start the RUNNING job's handler, in a task of its own."""
        job.task = asyncio.create_task(self.run(job), name=f"pgqrs-job-{job.message.id}")

    def give_back(self, job: Job) -> None:
        """A RUNNING job whose handler never started: free its slot, release it."""
        self._free(job)
        self.release([job])

    def release(self, jobs: list[Job]) -> None:
        """Release SETTLING jobs no handler started: their attempt is refunded."""
        for job in jobs:
            self._completer.submit(
                Settlement(message=job.message, kind="release", refund=True, on_done=self._untrack)
            )

    def _untrack(self, s: Settlement, _outcome: Outcome) -> None:
        """A given-back message's release is written (or given up on)."""
        self._jobs.remove(s.message)
        self._written()

    async def run(self, job: Job) -> None:
        """Run the handler, free the slot, hand the outcome to the completer.

        The task ends there: the message stays held (SETTLING) until
        ``_settled`` learns that its outcome is written.
        """
        q, m = job.queue, job.message
        spec = self._handlers[q.name]
        outcome: HandlerOutcome
        if m._cancel_requested:  # cancelled while it waited for a slot: never started
            outcome = Cancelled()
        else:
            if self._progress is not None:
                m._owner = self._progress.owner(spec.is_async)
            if self._events.active:
                self._events.emit_now("started", m, self._worker_id())
            begun = time.monotonic()
            try:
                outcome = await call(spec, m, self._threads, self._max_bytes)
                self._prefetch.finished(q, time.monotonic() - begun)
            except asyncio.CancelledError:
                # Admin.cancel (cancel_held cancelled the task), or the grace
                # period ended (or a second signal): give the message back.
                outcome = Cancelled() if m._cancel_requested else Stopped()
            if m._cancel_requested:  # whatever the handler did: it was cancelled
                outcome = Cancelled()
        try:
            decision = decide(outcome, m.attempts, q.own_max_attempts)
            settlement = self._settlement(job, outcome, decision, spec.backoff or self._backoff)
        except Exception:
            # Never a job left holding its slot and lease for ever: give the
            # message back (the attempt counts), and say why.
            logger.exception(
                "message %s (queue %r): its outcome could not be settled; released", m.id, q.name
            )
            job.kind = "released"
            settlement = Settlement(message=m, kind="release", on_done=self._settled)
        self._free(job)
        self._completer.submit(settlement)

    def _settlement(
        self, job: Job, outcome: HandlerOutcome, decision: Decision, backoff: Backoff
    ) -> Settlement:
        """Count and log the handler's outcome; what to write, and the event for after."""
        m = job.message
        if isinstance(outcome, Returned):  # the common case first
            self._counters.processed += 1
            job.kind = "completed"
            if self._events.active:
                job.after = self._events.build(
                    "completed", m, self._worker_id(), result=outcome.result
                )
            return Settlement(
                message=m, kind="archive", result=outcome.result_json, on_done=self._settled
            )
        q, c, max_bytes, wid = job.queue, self._counters, self._max_bytes, self._worker_id()
        if isinstance(outcome, Cancelled):
            job.kind = "cancelled"
            return Settlement(message=m, kind="archive", status="cancelled", on_done=self._settled)
        if isinstance(outcome, Stopped):
            job.kind = "released"
            if self._events.active:
                self._events.emit_now("interrupted", m, wid)
            err = {
                "type": "WorkerStopped",
                "message": "the worker stopped before the handler finished",
                "attempt": m.attempts,
                "worker_id": wid,
            }
            error = encode_json(err, "error", max_bytes)
            return Settlement(message=m, kind="release", error=error, on_done=self._settled)
        c.processed += 1
        if isinstance(outcome, Raised):
            _log_failure(q, m, outcome)
        if decision.failed:
            c.failed += 1
            self._events.emit_now("failed", m, wid, error=decision.error)
        # Retried or dead: message_fail says which once written (``_settled``).
        job.kind = "failed"
        job.decision = decision
        assert decision.error is not None
        error = error_json(error_record(decision.error, m.attempts, wid), max_bytes)
        return Settlement(
            message=m,
            kind="fail",
            error=error,
            delay=decision.delay,
            dead=decision.dead,
            backoff=backoff,
            on_done=self._settled,
        )

    def _settled(self, s: Settlement, outcome: Outcome) -> None:
        m = s.message
        job = self._jobs.remove(m)
        kind, after = (job.kind, job.after) if job is not None else (None, None)
        if outcome == "cancelled" or (kind == "cancelled" and outcome == "ok"):
            # Archived as cancelled (the server turns any settlement of a
            # message whose cancel was requested into status cancelled).
            self._counters.cancelled += 1
            logger.info("message %s (queue %r) cancelled", m.id, m.queue)
            self._events.emit_now("cancelled", m, self._worker_id())
        elif kind == "released":  # released at shutdown, handler still running
            if outcome == "ok":
                logger.info("released message %s (handler still running at shutdown)", m.id)
        elif outcome == "ok":
            if kind == "completed":
                self._counters.completed += 1
            if after is not None:
                self._events.emit(after)
        elif outcome in ("retried", "dead"):
            self._failed_written(s, outcome, job.decision if job is not None else None)
        elif outcome in ("lease_lost", "not_found"):
            # Either way the fence held: another consumer took the message over
            # (and may already have archived it, hence not_found).
            self._counters.lease_lost += 1
            logger.warning(
                "message %s (queue %r): lease lost before its outcome (%s) was written; another "
                "consumer has it now, or has already settled it",
                m.id,
                m.queue,
                kind,
            )
            self._events.emit_now("lease_lost", m, self._worker_id())
        self._written()

    def cancel_held(self, held: list[tuple[int, Any]]) -> int:
        """The cancellation of these messages (id, lease) was requested: flag
        each one this worker still holds under that lease (``msg.cancelled``
        becomes true; a ``def`` handler may stop), cancel an ``async def``
        handler's task; a prefetched one never starts. Its settlement then
        archives it as cancelled. Returns how many were held."""
        found = 0
        for msg_id, lease in held:
            job = self._jobs.by_lease(lease)
            if job is None or job.message.id != msg_id or job.message._cancel_requested:
                continue
            found += 1
            m = job.message
            m._cancel_requested = True
            logger.info("cancelling message %s (queue %r)", m.id, m.queue)
            spec = self._handlers.get(job.queue.name)
            if (
                job.task is not None
                and spec is not None
                and spec.is_async
                and job.kind is None  # the handler has not returned yet
                and not job.task.done()
            ):
                job.task.cancel()
        return found

    def _failed_written(self, s: Settlement, outcome: str, decision: Decision | None) -> None:
        """message_fail retried the message or archived it as dead: count it, log
        a death the handler did not ask for, emit the event."""
        m = s.message
        error = decision.error if decision is not None else None
        if outcome == "retried":
            self._counters.retried += 1
            self._events.emit_now("retried", m, self._worker_id(), error=error, delay=s.delay)
            return
        self._counters.dead += 1
        if decision is None or not decision.aborted:
            logger.warning(
                "message %s (queue %r) is dead after %d attempt(s)",
                m.id,
                m.queue,
                s.attempts if s.attempts is not None else m.attempts,
            )
        self._events.emit_now("dead", m, self._worker_id(), error=error)


def _log_failure(q: QueueState, m: Message, outcome: Raised) -> None:
    exc = outcome.error
    if outcome.retry:
        return
    if outcome.abort:
        logger.warning("message %s (queue %r) aborted by its handler: %s", m.id, q.name, exc)
    elif isinstance(exc, PayloadError):
        logger.warning("message %s (queue %r): handler result refused: %s", m.id, q.name, exc)
    else:
        logger.warning(
            "message %s (queue %r) failed on attempt %d/%d: %s: %s",
            m.id,
            q.name,
            m.attempts,
            q.max_attempts,
            type(exc).__name__,
            exc,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )


class Progress:
    """``msg.set_progress`` for the worker's handlers: one fenced statement
    (message_set_progress) on the worker's pool. An ``async def`` handler
    awaits it; a ``def`` handler (on a thread) blocks on it, run on the loop."""

    def __init__(self, db: Database, max_bytes: int) -> None:
        self._db = db
        self._max_bytes = max_bytes
        self._loop = asyncio.get_running_loop()
        self._async = _AsyncProgress(self)
        self._thread = _ThreadProgress(self)

    def owner(self, is_async: bool) -> Any:
        return self._async if is_async else self._thread

    async def write(self, m: Message, progress: Any) -> bool:
        if m.lease is None:
            raise InvalidArgument(f"message {m.id} is not leased: no progress to record")
        text = encode_json(progress, "progress", self._max_bytes)
        if text is None:
            raise InvalidArgument("progress must be a JSON value, not None")
        outcome = await calls.message_set_progress(self._db, id=m.id, lease=m.lease, progress=text)
        if outcome not in ("ok", "cancelled"):
            raise LeaseExpired(
                f"cannot set progress of message {m.id}: the lease expired and the message was "
                "redelivered, or archived since; nothing was changed",
                [m.id],
            )
        m.progress = progress
        if outcome == "cancelled":
            m._cancel_requested = True
        return outcome == "cancelled"


class _AsyncProgress:
    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def _message_set_progress(self, m: Message, progress: Any) -> Any:
        return self._progress.write(m, progress)


class _ThreadProgress:
    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def _message_set_progress(self, m: Message, progress: Any) -> bool:
        future = asyncio.run_coroutine_threadsafe(
            self._progress.write(m, progress), self._progress._loop
        )
        return future.result()
