"""The public worker classes: ``pgqrs.Worker`` (blocking) and ``pgqrs.aio.Worker``.

Both wrap the one asyncio runtime; only ``run()`` differs.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pgqrs._async.admin import DEFAULT_WORKER_DEAD_AFTER, DEFAULT_WORKER_PRUNE_AFTER
from pgqrs._config import Config, check_dsn
from pgqrs._errors import ConfigError, InvalidArgument
from pgqrs._models import Message
from pgqrs._ops import MAX_BATCH, Seconds, seconds
from pgqrs._schedule import schedule_spec
from pgqrs._validate import validate_queue_name
from pgqrs._worker.defaults import (
    DEFAULT_ARCHIVE_PRUNE_BATCH,
    DEFAULT_ARCHIVE_PRUNE_INTERVAL,
    DEFAULT_BATCH_CAP,
    DEFAULT_COMPLETION_BACKLOG,
    DEFAULT_CONCURRENCY,
    DEFAULT_FETCH_BATCH_FRACTION,
    DEFAULT_FETCH_DELAY,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_FLUSH_SIZE,
    DEFAULT_GRACE_PERIOD,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_LEASE_CHECK_INTERVAL,
    DEFAULT_LEASE_EXTEND_AT,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_PREFETCH,
    DEFAULT_PREFETCH_DURATION_WEIGHT,
    DEFAULT_PREFETCH_HORIZON,
    DEFAULT_PREFETCH_MAX_WAIT,
    DEFAULT_PREFETCH_PER_SLOT,
    DEFAULT_REAP_INTERVAL,
    DEFAULT_SCHEDULE_CATCH_UP,
    DEFAULT_SCHEDULE_TICK,
    DEFAULT_SHUTDOWN_WRITE_TIMEOUT,
)
from pgqrs._worker.events import Counters, EventKind, JobEvent, Signals, check_kind
from pgqrs._worker.handlers import make_spec
from pgqrs._worker.options import Backoff, Options
from pgqrs._worker.runtime import Runtime

if TYPE_CHECKING:
    from pgqrs._tasks.registry import TaskRegistry

#: A handler: called with the Message; returns a JSON-able result (or an
#: awaitable of one, for ``async def``). The bound lets mypy check that a
#: decorated function takes a Message.
F = TypeVar("F", bound=Callable[[Message], object])


def _count(value: int, what: str, high: int, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{what} must be an int from {low} to {high}, got {value!r}")
    return value


def _prefetch(value: int | Literal["auto"]) -> int | None:
    """``prefetch`` checked: an int from 0 to MAX_BATCH, or "auto" (returned as None)."""
    if value == "auto" and isinstance(value, str):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BATCH:
        raise InvalidArgument(
            f'prefetch must be "auto" or an int from 0 to {MAX_BATCH}, got {value!r}'
        )
    return value


def _optional_bool(value: object, what: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise InvalidArgument(f"{what} must be True, False or None, got {value!r}")
    return value


def _secs(value: Seconds, what: str, *, allow_zero: bool = False) -> float:
    result = seconds(value, what, allow_zero=allow_zero)
    assert result is not None
    return result


class WorkerBase:
    """Shared by the blocking and asyncio workers: configuration, handlers,
    events, counters and ``stop()``."""

    def __init__(
        self,
        config: Config,
        queues: Sequence[str] | None = None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        poll_interval: Seconds = DEFAULT_POLL_INTERVAL,
        poll_only: bool = False,
        listen_dsn: str | None = None,
        batch_size: int = DEFAULT_BATCH_CAP,
        grace_period: Seconds = DEFAULT_GRACE_PERIOD,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        visibility_timeout: Seconds | None = None,
        flush_interval: Seconds = DEFAULT_FLUSH_INTERVAL,
        flush_size: int = DEFAULT_FLUSH_SIZE,
        completion_backlog: int = DEFAULT_COMPLETION_BACKLOG,
        prefetch: int | Literal["auto"] = DEFAULT_PREFETCH,
        heartbeat_interval: Seconds = DEFAULT_HEARTBEAT_INTERVAL,
        reap_interval: Seconds = DEFAULT_REAP_INTERVAL,
        archive_prune_interval: Seconds = DEFAULT_ARCHIVE_PRUNE_INTERVAL,
        lease_extend_at: float = DEFAULT_LEASE_EXTEND_AT,
        handle_signals: bool | None = None,
        tasks: TaskRegistry | Sequence[TaskRegistry] | None = None,
        run_schedules: bool | None = None,
    ) -> None:
        """Serve ``queues`` (default: every queue given a handler).

        ``concurrency``: handlers running at once, across all queues. A slot
        is free again when its handler returns; the outcome then waits in the
        completion backlog to be written. ``completion_backlog``: the worker
        holds at most ``concurrency + completion_backlog`` messages (running,
        or waiting for their write); fetching waits while it holds that many.
        0 frees no room: a slot is reused only once its outcome is written.
        ``prefetch``: messages a dequeue may take beyond the free slots, leased
        while they wait for one (within the same held bound; given back,
        attempt refunded, on stop). ``"auto"`` (the default) adapts to the
        handlers' speed: only what the queue's handlers are expected to start
        within a few milliseconds, from how long they recently took, so slow
        handlers get none and fast ones get round trips carrying many rows.
        An int from 0 fixes it (0: a message is leased only when a handler
        can start it).
        ``poll_interval``: seconds between polls of an idle queue (NOTIFY wakes it sooner).
        ``poll_only``: no LISTEN (for pgBouncer in transaction mode), or pass
        ``listen_dsn``, a direct connection string used for LISTEN only.
        ``batch_size``: most messages fetched by one dequeue.
        ``grace_period``: seconds running handlers get to finish on stop.
        ``backoff``, ``max_attempts``, ``visibility_timeout``: defaults for
        every handler (the queue's own settings when None).
        ``handle_signals``: install SIGINT/SIGTERM handlers while running
        (main thread only; what they replace is put back when ``run()``
        returns). The default: True for the blocking ``pgqrs.Worker``, which
        owns its process; False for ``pgqrs.aio.Worker``, which runs inside
        an application that has its own (uvicorn, ...).
        ``tasks``: a ``TaskRegistry`` (or several) to serve, as ``include``.
        ``run_schedules``: fire the schedules of the schema (docs/schedules.md);
        None (the default): only when this worker declares some with ``schedule()``.
        """
        if not isinstance(config, Config):
            raise ConfigError(
                f"expected a pgqrs.Config, got {type(config).__name__} "
                "(build one with pgqrs.Config.from_dsn(...))"
            )
        if queues is not None:
            if isinstance(queues, str):
                raise InvalidArgument(
                    f"queues must be a list of names, got the str {queues!r} (write [{queues!r}])"
                )
            queues = [validate_queue_name(q) for q in queues]
            if len(set(queues)) != len(queues):
                raise InvalidArgument(f"queues lists a name twice: {queues!r}")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise InvalidArgument(f"backoff must be a pgqrs.Backoff, got {backoff!r}")
        if max_attempts is not None:
            _count(max_attempts, "max_attempts", 2**31 - 1)
        if not isinstance(lease_extend_at, (int, float)) or not 0.1 <= lease_extend_at <= 0.9:
            raise InvalidArgument(
                f"lease_extend_at must be a fraction from 0.1 to 0.9, got {lease_extend_at!r}"
            )
        if listen_dsn is not None and poll_only:
            raise InvalidArgument(
                "listen_dsn is for LISTEN, which poll_only=True turns off: pass one or the other"
            )
        if listen_dsn is not None and (not isinstance(listen_dsn, str) or not listen_dsn.strip()):
            raise InvalidArgument(f"listen_dsn must be a connection string, got {listen_dsn!r}")
        if listen_dsn is not None:
            check_dsn(listen_dsn, "listen_dsn")  # now, and without repeating its password
        vt = seconds(visibility_timeout, "visibility_timeout", allow_zero=False)
        options = Options(
            concurrency=_count(concurrency, "concurrency", 10_000),
            poll_interval=_secs(poll_interval, "poll_interval"),
            poll_only=bool(poll_only),
            listen_dsn=listen_dsn,
            batch_cap=_count(batch_size, "batch_size", MAX_BATCH),
            fetch_batch_fraction=DEFAULT_FETCH_BATCH_FRACTION,
            fetch_delay=DEFAULT_FETCH_DELAY,
            completion_backlog=_count(completion_backlog, "completion_backlog", 1_000_000, low=0),
            prefetch=_prefetch(prefetch),
            prefetch_horizon=DEFAULT_PREFETCH_HORIZON,
            prefetch_per_slot=DEFAULT_PREFETCH_PER_SLOT,
            prefetch_duration_weight=DEFAULT_PREFETCH_DURATION_WEIGHT,
            prefetch_max_wait=DEFAULT_PREFETCH_MAX_WAIT,
            flush_interval=_secs(flush_interval, "flush_interval", allow_zero=True),
            flush_size=_count(flush_size, "flush_size", MAX_BATCH),
            grace_period=_secs(grace_period, "grace_period", allow_zero=True),
            heartbeat_interval=_secs(heartbeat_interval, "heartbeat_interval"),
            reap_interval=_secs(reap_interval, "reap_interval"),
            archive_prune_interval=_secs(archive_prune_interval, "archive_prune_interval"),
            archive_prune_batch=DEFAULT_ARCHIVE_PRUNE_BATCH,
            worker_dead_after=DEFAULT_WORKER_DEAD_AFTER,
            worker_prune_after=DEFAULT_WORKER_PRUNE_AFTER,
            lease_extend_at=float(lease_extend_at),
            lease_check_interval=DEFAULT_LEASE_CHECK_INTERVAL,
            shutdown_write_timeout=DEFAULT_SHUTDOWN_WRITE_TIMEOUT,
            backoff=backoff or Backoff(),
            max_attempts=max_attempts,
            visibility_timeout=vt,
            handle_signals=self._handle_signals_default
            if handle_signals is None
            else bool(handle_signals),
            run_schedules=_optional_bool(run_schedules, "run_schedules"),
            schedule_tick=DEFAULT_SCHEDULE_TICK,
            schedule_catch_up=DEFAULT_SCHEDULE_CATCH_UP,
        )
        self._runtime = Runtime(config, queues, options)
        if tasks is not None:
            for registry in [tasks] if not isinstance(tasks, Sequence) else tasks:
                self.include(registry)

    #: ``handle_signals`` when not given (see ``__init__``).
    _handle_signals_default = True

    def include(self, registry: TaskRegistry) -> None:
        """Serve the tasks of ``registry``: each task message (header
        ``pgqrs-task``) goes to its task; the queue's plain handler, if any,
        still gets the messages without the header. A message for a task the
        registry lacks is archived dead at once (a permanent error)."""
        from pgqrs._tasks.registry import TaskRegistry

        if not isinstance(registry, TaskRegistry):
            raise InvalidArgument(f"include() takes a pgqrs.TaskRegistry, got {registry!r}")
        if registry in self._runtime.registries:
            raise InvalidArgument("this registry is already included")
        self._runtime.registries.append(registry)

    @property
    def config(self) -> Config:
        return self._runtime.config

    @property
    def id(self) -> int | None:
        """This worker's row in the workers table (None before ``run()``)."""
        return self._runtime.worker_id

    @property
    def counters(self) -> Counters:
        """Running totals: processed, completed, failed, retried, dead, and right
        now: in_flight (messages held) and running (handlers running)."""
        return self._runtime.counters

    @property
    def signals(self) -> Signals:
        """Test hooks: moments a test can await instead of polling or sleeping
        (registered, listening, heartbeat, fetched, idle, lease_extended,
        outcome_written, and any of them; see ``Signals``), e.g.
        ``await worker.signals.outcome_written.wait(lambda: worker.counters.completed == 10)``."""
        return self._runtime.signals

    @property
    def listening(self) -> bool:
        """True while the LISTEN connection is up (always False with poll_only)."""
        listener = self._runtime.listener
        return listener is not None and listener.listening

    def handler(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        visibility_timeout: Seconds | None = None,
    ) -> Callable[[F], F]:
        """Decorator: call the function for each message of ``queue``.

        It receives the Message; what it returns (JSON-able, or None) is
        archived as the result. Sync functions run in a thread, ``async def``
        ones on the event loop. Raise ``pgqrs.Retry(delay=...)`` to try again
        later, ``pgqrs.Abort`` to give up at once; any other exception is
        retried with ``backoff`` until ``max_attempts`` (at most the queue's),
        then the message is archived as dead. ``concurrency`` caps this
        queue's running handlers; ``visibility_timeout`` sets its lease length.
        """
        name = validate_queue_name(queue)
        wanted = self._runtime.wanted_queues
        if wanted is not None and name not in wanted:
            raise InvalidArgument(f"queue {name!r} is not among this worker's queues {wanted!r}")

        def register(func: F) -> F:
            if name in self._runtime.handlers:
                raise InvalidArgument(f"queue {name!r} already has a handler")
            self._runtime.handlers[name] = make_spec(
                name,
                func,
                concurrency=concurrency,
                backoff=backoff,
                max_attempts=max_attempts,
                visibility_timeout=visibility_timeout,
            )
            return func

        return register

    def schedule(
        self,
        name: str,
        *,
        queue: str,
        payload: Any,
        cron: str | None = None,
        interval: Seconds | datetime.timedelta | None = None,
        time_zone: str = "UTC",
        missed: str = "skip",
        headers: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> None:
        """Declare schedule ``name``: enqueue ``payload`` on ``queue`` at each slot
        of ``cron`` (5 fields or @hourly/@daily/@weekly/@monthly/@yearly, in
        ``time_zone``) or every ``interval`` seconds (docs/schedules.md).

        Checked now; written when the worker starts (an upsert: restarting, or
        many workers declaring it, changes nothing; a changed declaration
        replaces the stored one). The worker then fires every due schedule,
        together with the other workers that do: each slot is enqueued once.
        """
        spec = schedule_spec(
            name,
            queue=queue,
            payload=payload,
            cron=cron,
            interval=interval,
            time_zone=time_zone,
            missed=missed,
            headers=headers,
            priority=priority,
            max_bytes=self.config.max_payload_bytes,
        )
        if any(s.name == spec.name for s in self._runtime.schedules):
            raise InvalidArgument(f"schedule {spec.name!r} is declared twice on this worker")
        self._runtime.schedules.append(spec)

    def on(
        self, event: EventKind | None = None
    ) -> Callable[[Callable[[JobEvent], Any]], Callable[[JobEvent], Any]]:
        """Decorator: call the function with each ``JobEvent`` of kind ``event``
        (started, completed, failed, retried, dead, lease_lost; None for all).

        Subscribers run on the worker's event loop thread and must be quick;
        one that raises is logged and ignored.
        """
        check_kind(event)

        def register(func: Callable[[JobEvent], Any]) -> Callable[[JobEvent], Any]:
            self._runtime.events.subscribe(event, func)
            return func

        return register

    def subscribe(
        self, event: EventKind | None, callback: Callable[[JobEvent], Any]
    ) -> Callable[[], None]:
        """Like ``on``, as a call; returns a function that unsubscribes."""
        return self._runtime.events.subscribe(event, callback)

    def stop(self, *, now: bool = False) -> None:
        """Stop gracefully (from any thread, or a handler): fetch no more, let
        running handlers finish within the grace period. ``now=True`` skips the
        grace period. ``run()`` returns once the worker has stopped."""
        self._runtime.request_stop(now)


class AsyncWorker(WorkerBase):
    """The asyncio worker (``pgqrs.aio.Worker``). It leaves signals to the
    application unless ``handle_signals=True``."""

    _handle_signals_default = False

    async def run(self, *, until_empty: bool = False) -> None:
        """Serve until ``stop()`` (or SIGINT/SIGTERM with ``handle_signals``);
        return once stopped.

        ``until_empty``: return as soon as the served queues have no message
        ready and the worker holds none (for tests: enqueue, run, check).
        Delayed messages (and retries waiting for their backoff) are not
        ready: it does not wait for them.
        Fails fast when a queue is missing or the database unreachable at
        start; afterwards connection failures are logged and retried.
        """
        await self._runtime.run(until_empty=until_empty)


class Worker(WorkerBase):
    """The blocking worker (``pgqrs.Worker``): the asyncio runtime on its own event loop."""

    def run(self, *, until_empty: bool = False) -> None:
        """Block until ``stop()``, SIGINT or SIGTERM; return once stopped
        (``until_empty``: once nothing is ready or held, as ``pgqrs.aio.Worker``)."""
        try:
            asyncio.get_running_loop()
            in_a_loop = True
        except RuntimeError:  # no loop: the normal case
            in_a_loop = False
        if not in_a_loop:
            asyncio.run(self._runtime.run(until_empty=until_empty))
            return
        raise RuntimeError(
            "Worker.run() blocks, and this thread runs an event loop: use "
            "pgqrs.aio.Worker and `await worker.run()` there (or call Worker.run() "
            "from a thread of its own, e.g. `await asyncio.to_thread(worker.run)`)"
        )
