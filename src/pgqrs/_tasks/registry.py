"""``TaskRegistry`` and ``Task``: declare a job once, enqueue it by calling it.

Why a registry: it is the one place a task's name, queue and settings live,
shared by the code that enqueues (which needs a Config and a pool) and the
worker that serves it (``Worker(..., tasks=registry)``). Enqueueing goes
through one pool per registry (per event loop for ``aenqueue``): a
``Producer`` per call would open a pool of its own each time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import inspect
import json
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, cast

import psycopg

from pgqrs._async.admin import Admin as AsyncAdmin
from pgqrs._async.producer import Producer as AsyncProducer
from pgqrs._config import DEFAULT_MAX_PAYLOAD_BYTES, Config
from pgqrs._errors import ConfigError, Error, InvalidArgument, PayloadError
from pgqrs._models import ArchivedMessage, Message
from pgqrs._ops import Seconds
from pgqrs._payload import encode_json, encode_payload
from pgqrs._sync.admin import Admin
from pgqrs._sync.producer import Producer
from pgqrs._tasks.convert import from_json, hints_of, to_json
from pgqrs._tasks.wire import TASK_HEADER
from pgqrs._validate import validate_queue_name
from pgqrs._worker.handlers import Abort

P = ParamSpec("P")
R = TypeVar("R")

#: Enqueue options: a task's parameters cannot use these names.
RESERVED = frozenset(
    {"connection", "delay", "available_at", "priority", "dedup_key", "group", "headers"}
)


class TaskFailed(Error):
    """``TaskHandle.result()``: the task's message was archived, but not as
    completed (``archived.status`` is dead, failed or cancelled); the archived
    row, with its error record, is ``archived``."""

    def __init__(self, archived: ArchivedMessage) -> None:
        error = archived.error if isinstance(archived.error, dict) else {}
        reason = error.get("message") or archived.error
        super().__init__(
            f"task message {archived.id} (queue {archived.queue!r}) ended {archived.status}"
            + (f": {error.get('type', 'error')}: {reason}" if reason else "")
        )
        self.archived = archived


class TaskRegistry:
    """The tasks of an application, and where they are enqueued.

    ``config``: the database tasks are enqueued on (or ``bind(config)`` later,
    e.g. at application start). ``eager=True`` runs each task inline when it is
    enqueued, for unit tests (arguments still go through JSON, so what cannot
    be sent fails the same way). ``default_queue``: the queue of tasks that do
    not name one.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        eager: bool = False,
        default_queue: str | None = None,
    ) -> None:
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.eager = bool(eager)
        self.default_queue = None if default_queue is None else validate_queue_name(default_queue)
        self._config: Config | None = None
        self._lock = threading.Lock()
        self._sync: _SyncClients | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncClients]
        self._async = weakref.WeakKeyDictionary()
        if config is not None:
            self.bind(config)

    # -- declaring ----------------------------------------------------------------------

    def task(
        self,
        *,
        queue: str | None = None,
        name: str | None = None,
        max_attempts: int | None = None,
        priority: int = 0,
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Decorator: declare the function as a task.

        ``queue``: where its messages go (default: the registry's
        ``default_queue``). ``name``: the name on the wire, what a worker
        routes by and what Rust enqueues it by (default: the function's
        ``__name__``). ``max_attempts``: give up after this many attempts
        (at most the queue's own). ``priority``: the default for ``enqueue``.
        """
        q = queue if queue is not None else self.default_queue
        if q is None:
            raise InvalidArgument(
                "a task needs a queue: @tasks.task(queue=...), or TaskRegistry(default_queue=...)"
            )
        q = validate_queue_name(q)
        if max_attempts is not None and (
            isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
        ):
            raise InvalidArgument(f"max_attempts must be an int >= 1, got {max_attempts!r}")

        def declare(func: Callable[P, R]) -> Task[P, R]:
            task = Task(
                self, func, queue=q, name=name, max_attempts=max_attempts, priority=priority
            )
            with self._lock:
                if task.name in self.tasks:
                    raise InvalidArgument(
                        f"task name {task.name!r} is taken (by {self.tasks[task.name].func!r}): "
                        "pass name=... to tell them apart"
                    )
                self.tasks[task.name] = task
            return task

        return declare

    @property
    def queues(self) -> list[str]:
        """The queues the tasks go to, sorted."""
        return sorted({t.queue for t in self.tasks.values()})

    def on_queue(self, queue: str) -> dict[str, Task[Any, Any]]:
        """The tasks of ``queue``, by name."""
        return {n: t for n, t in self.tasks.items() if t.queue == queue}

    # -- where to enqueue ---------------------------------------------------------------

    def bind(self, config: Config) -> None:
        """Enqueue on ``config``'s database from now on (e.g. at application start)."""
        if not isinstance(config, Config):
            raise ConfigError(
                f"expected a pgqrs.Config, got {type(config).__name__} "
                "(build one with pgqrs.Config.from_dsn(...))"
            )
        with self._lock:
            in_use = self._sync is not None or len(self._async) > 0
            if self._config is not None and self._config != config and in_use:
                raise ConfigError(
                    "this registry is bound and in use: close() (and aclose()) it before rebinding"
                )
            self._config = config

    @property
    def config(self) -> Config:
        if self._config is None:
            raise ConfigError(
                "this TaskRegistry has no database: pass TaskRegistry(config), or call "
                "registry.bind(config) at start-up (or set eager=True in unit tests)"
            )
        return self._config

    @property
    def max_bytes(self) -> int:
        return self._config.max_payload_bytes if self._config else DEFAULT_MAX_PAYLOAD_BYTES

    def clients(self) -> _SyncClients:
        """The blocking clients: one pool, an Admin and a Producer per queue."""
        with self._lock:
            if self._sync is None:
                self._sync = _SyncClients(self.config)
            return self._sync

    async def aclients(self) -> _AsyncClients:
        """The asyncio clients of the running loop (a pool belongs to one loop)."""
        loop = asyncio.get_running_loop()
        clients = self._async.get(loop)
        if clients is None:
            clients = self._async[loop] = _AsyncClients(self.config)
        await clients.open()
        return clients

    def close(self) -> None:
        """Close the blocking pool (``aclose()`` for the asyncio one)."""
        with self._lock:
            sync, self._sync = self._sync, None
        if sync is not None:
            sync.admin.close()

    async def aclose(self) -> None:
        """Close the pool of the running loop (and the blocking one)."""
        clients = self._async.pop(asyncio.get_running_loop(), None)
        if clients is not None:
            await clients.admin.close()
        self.close()


class _SyncClients:
    def __init__(self, config: Config) -> None:
        self.admin = Admin(config)  # owns the pool; the producers borrow it
        self.admin.open()
        self.producers: dict[str, Producer] = {}

    def producer(self, queue: str) -> Producer:
        p = self.producers.get(queue)
        if p is None:
            p = self.producers[queue] = Producer(self.admin.config, queue, pool=self.admin._db.pool)
        return p


class _AsyncClients:
    def __init__(self, config: Config) -> None:
        self.admin = AsyncAdmin(config)
        self.producers: dict[str, AsyncProducer] = {}

    async def open(self) -> None:
        await self.admin.open()

    def producer(self, queue: str) -> AsyncProducer:
        p = self.producers.get(queue)
        if p is None:
            p = self.producers[queue] = AsyncProducer(
                self.admin.config, queue, pool=self.admin._db.pool
            )
        return p


class Task(Generic[P, R]):
    """A declared task (made by ``@registry.task(...)``).

    Calling it calls the function (no queue). ``enqueue``/``aenqueue`` put a
    message on the task's queue; ``run`` runs it inline, as a worker would
    (arguments through JSON and back).
    """

    def __init__(
        self,
        registry: TaskRegistry,
        func: Callable[P, R],
        *,
        queue: str,
        name: str | None,
        max_attempts: int | None,
        priority: int,
    ) -> None:
        if not callable(func):
            raise InvalidArgument(f"a task must be a function, got {func!r}")
        self.registry = registry
        self.func = func
        self.queue = queue
        chosen = name if name is not None else getattr(func, "__name__", None)
        if not isinstance(chosen, str) or not chosen.strip():
            raise InvalidArgument(f"a task name must be a non-empty str, got {chosen!r}")
        self.name: str = chosen
        self.max_attempts = max_attempts
        self.priority = priority
        self.is_async = inspect.iscoroutinefunction(func)
        self.signature = inspect.signature(func)
        for p in self.signature.parameters.values():
            if p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL):
                raise InvalidArgument(
                    f"task {self.name!r}: parameter {p.name!r} cannot be passed by name; a "
                    "task's arguments are sent as a JSON object by name"
                )
            if p.name in RESERVED:
                raise InvalidArgument(
                    f"task {self.name!r}: parameter {p.name!r} has the name of an enqueue "
                    f"option ({', '.join(sorted(RESERVED))}); rename it"
                )
        self._var_kw = any(p.kind == p.VAR_KEYWORD for p in self.signature.parameters.values())
        self._hints = hints_of(func)
        self.__doc__ = func.__doc__
        self.__name__ = self.name
        self.__wrapped__ = func

    def __repr__(self) -> str:
        return f"<pgqrs task {self.name!r} on queue {self.queue!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function itself, here and now (no JSON, no queue)."""
        return self.func(*args, **kwargs)

    # -- arguments ----------------------------------------------------------------------

    def payload(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The message payload for these arguments: a JSON object by name."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgument(f"task {self.name!r}: {exc}") from None
        out: dict[str, Any] = {}
        for key, value in bound.arguments.items():
            if self.signature.parameters[key].kind == inspect.Parameter.VAR_KEYWORD:
                for k, v in value.items():
                    out[k] = to_json(v, f"task {self.name!r} argument {k!r}")
            else:
                out[key] = to_json(value, f"task {self.name!r} argument {key!r}")
        return out

    def arguments(self, payload: Any) -> dict[str, Any]:
        """The keyword arguments a message's payload gives, typed by the hints.

        PayloadError (naming the argument or field) when they do not fit.
        """
        if not isinstance(payload, dict):
            raise PayloadError(
                f"task {self.name!r}: the payload must be a JSON object of arguments by name, "
                f"got {type(payload).__name__}"
            )
        kwargs: dict[str, Any] = {}
        params = self.signature.parameters
        for key, value in payload.items():
            p = params.get(key)
            if p is None or p.kind == inspect.Parameter.VAR_KEYWORD:
                if not self._var_kw:
                    raise PayloadError(
                        f"task {self.name!r} has no parameter {key!r} (it takes "
                        f"{', '.join(params) or 'none'})"
                    )
                kwargs[key] = value
                continue
            kwargs[key] = from_json(
                value, self._hints.get(key, p.annotation), f"task {self.name!r} argument {key!r}"
            )
        missing = [
            n
            for n, p in params.items()
            if p.default is p.empty and p.kind != p.VAR_KEYWORD and n not in payload
        ]
        if missing:
            raise PayloadError(
                f"task {self.name!r}: the payload lacks argument(s) {', '.join(map(repr, missing))}"
            )
        return kwargs

    def result_json(self, value: Any) -> Any:
        """The function's return value as JSON values (what is archived)."""
        return to_json(value, f"task {self.name!r} result")

    def decode_result(self, value: Any) -> Any:
        """An archived result as the function's return type says."""
        hint = self._hints.get("return", Any)
        return from_json(value, hint, f"task {self.name!r} result")

    # -- enqueueing ---------------------------------------------------------------------

    def _options(
        self,
        connection: Any,
        delay: Seconds | None,
        available_at: datetime.datetime | None,
        priority: int | None,
        dedup_key: str | None,
        group: str | None,
        headers: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        if headers is not None and TASK_HEADER in headers:
            raise InvalidArgument(f"headers: {TASK_HEADER!r} is set by the task itself")
        options: dict[str, Any] = {
            "delay": delay,
            "available_at": available_at,
            "priority": self.priority if priority is None else priority,
            "dedup_key": dedup_key,
            "headers": {**(headers or {}), TASK_HEADER: self.name},
            "connection": connection,
            "group": group,
        }
        return options

    def enqueue(
        self,
        *args: Any,
        connection: psycopg.Connection[Any] | None = None,
        delay: Seconds | None = None,
        available_at: datetime.datetime | None = None,
        priority: int | None = None,
        dedup_key: str | None = None,
        group: str | None = None,
        headers: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> TaskHandle:
        """Put a message for this task on its queue; return its handle.

        The task's arguments by name (or position); the options are
        ``Producer.enqueue``'s: ``connection`` joins the caller's transaction
        (a psycopg 3 ``Connection``: Django's, SQLAlchemy's
        ``driver_connection``, your pool's). In eager mode the task runs now.
        """
        payload = self.payload(*args, **kwargs)
        if self.registry.eager:
            return TaskHandle(self, None, eager=self._eager(payload))
        producer = self.registry.clients().producer(self.queue)
        options = self._options(
            connection, delay, available_at, priority, dedup_key, group, headers
        )
        return TaskHandle(self, producer.enqueue(payload, **options))

    async def aenqueue(
        self,
        *args: Any,
        connection: psycopg.AsyncConnection[Any] | None = None,
        delay: Seconds | None = None,
        available_at: datetime.datetime | None = None,
        priority: int | None = None,
        dedup_key: str | None = None,
        group: str | None = None,
        headers: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> AsyncTaskHandle:
        """``enqueue`` for asyncio: ``connection`` is a psycopg ``AsyncConnection``."""
        payload = self.payload(*args, **kwargs)
        if self.registry.eager:
            return AsyncTaskHandle(self, None, eager=await self._aeager(payload))
        producer = (await self.registry.aclients()).producer(self.queue)
        options = self._options(
            connection, delay, available_at, priority, dedup_key, group, headers
        )
        return AsyncTaskHandle(self, await producer.enqueue(payload, **options))

    def with_options(
        self,
        *,
        connection: Any = None,
        delay: Seconds | None = None,
        available_at: datetime.datetime | None = None,
        priority: int | None = None,
        dedup_key: str | None = None,
        group: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> TaskCall[P, R]:
        """The enqueue options on their own, so that the type checker checks the
        task's arguments: ``send_email.with_options(delay=60).enqueue(to=...)``
        (``enqueue`` itself takes both, and checks the arguments at run time)."""
        return TaskCall(
            self,
            {
                "connection": connection,
                "delay": delay,
                "available_at": available_at,
                "priority": priority,
                "dedup_key": dedup_key,
                "group": group,
                "headers": headers,
            },
        )

    # -- running inline -----------------------------------------------------------------

    def _through_json(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The arguments as a worker would get them: encoded, stored, decoded."""
        text = encode_payload(payload, self.registry.max_bytes)
        return self.arguments(json.loads(text))

    def _finish(self, payload: dict[str, Any], result: Any) -> ArchivedMessage:
        value = self.result_json(result)
        text = encode_json(value, "result", self.registry.max_bytes)
        return _inline_archive(self, payload, None if text is None else json.loads(text))

    def _eager(self, payload: dict[str, Any]) -> ArchivedMessage:
        kwargs = self._through_json(payload)
        if self.is_async:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                result = asyncio.run(cast(Callable[..., Any], self.func)(**kwargs))
            else:
                raise InvalidArgument(
                    f"task {self.name!r} is async and an event loop runs here: use "
                    f"`await {getattr(self.func, '__name__', 'task')}.aenqueue(...)`"
                ) from None
        else:
            result = self.func(**kwargs)  # type: ignore[call-arg]
        return self._finish(payload, result)

    async def _aeager(self, payload: dict[str, Any]) -> ArchivedMessage:
        kwargs = self._through_json(payload)
        result = self.func(**kwargs)  # type: ignore[call-arg]
        if inspect.isawaitable(result):
            result = await result
        return self._finish(payload, result)

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the task now, as a worker would: the arguments go through JSON
        and back (typed by the hints), the result must be storable. For an
        ``async def`` task this returns the coroutine to await."""
        payload = self.payload(*args, **kwargs)
        call_kwargs = self._through_json(payload)
        result = self.func(**call_kwargs)  # type: ignore[call-arg]
        if inspect.isawaitable(result):

            async def finish() -> Any:
                value = await cast(Awaitable[Any], result)
                self._finish(payload, value)
                return value

            return cast(R, finish())
        self._finish(payload, result)
        return result

    # -- what a worker calls --------------------------------------------------------------

    def _give_up(self, m: Message, exc: BaseException) -> BaseException:
        """Past the task's max_attempts: the worker archives it dead (Abort)."""
        if self.max_attempts is not None and m.attempts >= self.max_attempts:
            if isinstance(exc, Abort):
                return exc
            return Abort(
                f"task {self.name!r} gave up after {m.attempts} attempt(s) "
                f"(max_attempts={self.max_attempts}): {type(exc).__name__}: {exc}"
            )
        return exc

    def _decoded(self, m: Message) -> dict[str, Any]:
        try:
            return self.arguments(m.payload)
        except PayloadError as exc:
            # Permanent: the same payload will never decode.
            raise Abort(f"message {m.id}: {exc}") from exc

    def handle_message(self, m: Message) -> Any:
        """The worker's call for a sync task: decode, call, encode the result."""
        kwargs = self._decoded(m)
        try:
            result = self.func(**kwargs)  # type: ignore[call-arg]
        except Exception as exc:  # Retry and Abort too
            given = self._give_up(m, exc)
            if given is exc:
                raise
            raise given from exc
        return self.result_json(result)

    async def ahandle_message(self, m: Message) -> Any:
        """The worker's call for an ``async def`` task."""
        kwargs = self._decoded(m)
        try:
            result = await cast(Callable[..., Awaitable[Any]], self.func)(**kwargs)
        except Exception as exc:  # Retry and Abort too
            given = self._give_up(m, exc)
            if given is exc:
                raise
            raise given from exc
        return self.result_json(result)


class TaskCall(Generic[P, R]):
    """A task with its enqueue options set (``Task.with_options``): its
    ``enqueue``/``aenqueue`` take exactly the task's arguments."""

    def __init__(self, task: Task[P, R], options: dict[str, Any]) -> None:
        self.task = task
        self.options = options

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        # The task's parameters never take an option's name (checked when declared).
        merged: dict[str, Any] = {**kwargs, **self.options}
        return self.task.enqueue(*args, **merged)

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> AsyncTaskHandle:
        merged: dict[str, Any] = {**kwargs, **self.options}
        return await self.task.aenqueue(*args, **merged)


def _inline_archive(task: Task[Any, Any], payload: Any, result: Any) -> ArchivedMessage:
    """The archived row an eager run stands for (no database: id 0)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return ArchivedMessage(
        id=0,
        queue=task.queue,
        payload=payload,
        priority=task.priority,
        attempts=1,
        enqueued_at=now,
        dequeued_at=now,
        dedup_key=None,
        headers={TASK_HEADER: task.name},
        archived_at=now,
        status="completed",
        result=result,
        error=None,
    )


@dataclasses.dataclass
class _HandleBase:
    task: Task[Any, Any]
    #: The enqueued message (None in eager mode: nothing was enqueued).
    message: Message | None
    #: Eager mode: the run's outcome, as the archive would hold it.
    eager: ArchivedMessage | None = None

    @property
    def id(self) -> int | None:
        """The message id (None in eager mode)."""
        return None if self.message is None else self.message.id

    def _result(self, archived: ArchivedMessage) -> Any:
        if archived.status != "completed":
            raise TaskFailed(archived)
        return self.task.decode_result(archived.result)


class TaskHandle(_HandleBase):
    """What ``enqueue`` returns: the message, and a way to wait for its outcome."""

    def wait(self, *, timeout: float | None = None) -> ArchivedMessage:
        """Wait until the message is archived (``Admin.wait``); return the row."""
        if self.eager is not None:
            return self.eager
        assert self.message is not None
        return self.task.registry.clients().admin.wait(self.message.id, timeout=timeout)

    def result(self, *, timeout: float | None = None) -> Any:
        """Wait, then the result typed as the task's return hint says;
        ``TaskFailed`` when it ended dead, failed or cancelled."""
        return self._result(self.wait(timeout=timeout))


class AsyncTaskHandle(_HandleBase):
    """What ``aenqueue`` returns (``pgqrs.aio.TaskHandle``)."""

    async def wait(self, *, timeout: float | None = None) -> ArchivedMessage:
        if self.eager is not None:
            return self.eager
        assert self.message is not None
        admin = (await self.task.registry.aclients()).admin
        return await admin.wait(self.message.id, timeout=timeout)

    async def result(self, *, timeout: float | None = None) -> Any:
        return self._result(await self.wait(timeout=timeout))
