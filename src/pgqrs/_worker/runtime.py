"""The worker runtime: start, run jobs, keep leases and heartbeat, shut down.

One asyncio implementation serves both ``pgqrs.aio.Worker`` (awaited on the
caller's loop) and ``pgqrs.Worker`` (run on a loop of its own).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
import time
import uuid
from typing import Any

from pgqrs._async._db import Database
from pgqrs._config import Config
from pgqrs._errors import Error, InvalidArgument, PayloadError, queue_not_found
from pgqrs._models import Message
from pgqrs._payload import encode_json
from pgqrs._worker.backoff import Backoff, Reconnect
from pgqrs._worker.completer import Completer, Outcome, Settlement
from pgqrs._worker.events import Counters, Events, JobEvent
from pgqrs._worker.fetcher import Fetcher, QueueState, Slots
from pgqrs._worker.handlers import Abort, DaemonThreads, HandlerSpec, Retry, error_record
from pgqrs._worker.leases import LeaseKeeper
from pgqrs._worker.listener import Listener

logger = logging.getLogger("pgqrs.worker")

#: Seconds a worker told to stop at once (second signal, ``stop(now=True)``)
#: still tries to write outcomes and releases before it gives up on them.
HARD_STOP_WRITE_TIMEOUT = 1.0


@dataclasses.dataclass(frozen=True)
class Options:
    """The worker's settings (validated by the public classes)."""

    concurrency: int
    poll_interval: float
    poll_only: bool
    #: Not in the repr: it may hold a password.
    listen_dsn: str | None = dataclasses.field(repr=False)
    batch_cap: int
    fetch_batch_fraction: float
    fetch_delay: float
    completion_backlog: int
    #: Fixed prefetch (None: adaptive, see the three fields below).
    prefetch: int | None
    prefetch_horizon: float
    prefetch_per_slot: int
    prefetch_duration_weight: float
    prefetch_max_wait: float
    flush_interval: float
    flush_size: int
    grace_period: float
    heartbeat_interval: float
    reap_interval: float
    worker_dead_after: float
    worker_prune_after: float
    lease_extend_at: float
    lease_check_interval: float
    shutdown_write_timeout: float
    backoff: Backoff
    max_attempts: int | None
    visibility_timeout: float | None
    handle_signals: bool


@dataclasses.dataclass(eq=False, slots=True)
class Job:
    queue: QueueState
    message: Message
    task: asyncio.Task[None] | None = None
    #: The handler returned or raised (or will never run): the slot is free,
    #: the message waits in the completion backlog for its outcome to be written.
    settling: bool = False
    #: What the outcome means once written: completed, retried or dead (None:
    #: released at shutdown, the handler still running).
    kind: str | None = None
    #: The event to emit once the outcome is written (None: nobody subscribed).
    after: JobEvent | None = None


class Runtime:
    def __init__(self, config: Config, queues: list[str] | None, options: Options) -> None:
        self.config = config
        self.options = options
        self.wanted_queues = queues
        self.handlers: dict[str, HandlerSpec] = {}
        self.events = Events()
        self.counters = Counters()
        self.worker_id: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._stop_requested = False
        self._stop_now = False
        self._stop_event: asyncio.Event | None = None
        self._now_event: asyncio.Event | None = None
        self._stopping = False
        #: Messages held, by lease (unique per delivery, unlike the message id).
        self._jobs: dict[uuid.UUID, Job] = {}
        self._running = False
        #: The LISTEN connection's state (None in poll_only mode).
        self.listener: Listener | None = None

    # -- control, callable from any thread ---------------------------------

    def request_stop(self, now: bool = False) -> None:
        """Begin a graceful stop (``now``: skip the grace period)."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            self._apply_stop(now)
        else:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(self._apply_stop, now)

    def _apply_stop(self, now: bool) -> None:
        self._stop_requested = True
        self._stop_now = self._stop_now or now
        if self._stop_event is not None:
            self._stop_event.set()
        if now and self._now_event is not None:
            self._now_event.set()
            if self._stopping:  # already draining: stop retrying failed writes soon
                self._completer.hurry(time.monotonic() + HARD_STOP_WRITE_TIMEOUT)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stop_requested:
            logger.warning("%s again: stopping now, releasing the leases of running jobs", name)
            self._apply_stop(True)
        else:
            logger.info(
                "%s: stopping; running jobs get %.1fs to finish (send it again to stop at once)",
                name,
                self.options.grace_period,
            )
            self._apply_stop(False)

    # -- running -------------------------------------------------------------

    async def run(self) -> None:
        if self._running:
            raise Error("this worker is already running")
        if not self.handlers:
            raise InvalidArgument(
                "the worker has no handlers: register one with @worker.handler(queue)"
            )
        names = self.wanted_queues if self.wanted_queues is not None else sorted(self.handlers)
        missing = [n for n in names if n not in self.handlers]
        if missing:
            raise InvalidArgument(
                f"no handler for queue(s) {', '.join(map(repr, missing))}: "
                "register one with @worker.handler(queue) for each queue the worker serves"
            )
        self._running = True
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stop_event = asyncio.Event()
        self._now_event = asyncio.Event()
        if self._stop_requested:
            self._stop_event.set()
        if self._stop_now:
            self._now_event.set()
        self._stopping = False
        signals = self._install_signals()
        db = Database(self.config)
        threads = DaemonThreads(self.options.concurrency, "pgqrs-handler")
        try:
            await self._serve(db, names, threads)
        finally:
            for sig in signals:
                self._loop.remove_signal_handler(sig)
            threads.shutdown()
            await db.close()
            self._running = False
            self._stop_requested = self._stop_now = False
            self._loop = None
            self._loop_thread = None

    def _install_signals(self) -> list[int]:
        if (
            not self.options.handle_signals
            or threading.current_thread() is not threading.main_thread()
        ):
            return []
        assert self._loop is not None
        installed: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # e.g. Windows
                continue
            installed.append(sig)
        return installed

    async def _serve(self, db: Database, names: list[str], threads: DaemonThreads) -> None:
        opts = self.options
        await db.open()
        queues: list[QueueState] = []
        for name in names:
            rows = await db.fetch("queue_get", [name], queue=name)
            if not rows:
                raise queue_not_found(name)
            spec = self.handlers[name]
            limits = [x for x in (spec.max_attempts, opts.max_attempts) if x is not None]
            queues.append(
                QueueState(
                    name=name,
                    spec=spec,
                    limit=min(spec.concurrency or opts.concurrency, opts.concurrency),
                    # The queue's max_attempts is enforced at dequeue: a handler can only lower it.
                    max_attempts=min([rows[0]["max_attempts"], *limits[:1]]),
                    visibility_timeout=spec.visibility_timeout or opts.visibility_timeout,
                )
            )
        by_name = {q.name: q for q in queues}
        await self._register(db, names)
        logger.info(
            "worker %s serving %s (concurrency %d, %s)",
            self.worker_id,
            ", ".join(names),
            opts.concurrency,
            "polling only" if opts.poll_only else "LISTEN + polling",
        )
        slots = Slots(
            opts.concurrency,
            opts.completion_backlog,
            queues,
            opts.fetch_batch_fraction,
            prefetch=opts.prefetch,
            horizon=opts.prefetch_horizon,
            per_slot=opts.prefetch_per_slot,
            duration_weight=opts.prefetch_duration_weight,
        )
        self._slots = slots
        self._threads = threads
        self._db = db
        self._completer = Completer(
            db,
            flush_interval=opts.flush_interval,
            flush_size=opts.flush_size,
            idle=lambda: slots.used == 0,
        )
        self._keeper = LeaseKeeper(
            db,
            extend_at=opts.lease_extend_at,
            check_interval=opts.lease_check_interval,
            holds=lambda m: m.lease in self._jobs,
            on_lost=self._lease_lost,
        )

        def wake_all() -> None:
            for q in queues:
                q.wake()

        def on_notify(payload: str) -> None:
            q = by_name.get(payload)
            if q is not None:
                q.wake()

        background: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._keeper.run(), name="pgqrs-leases"),
            asyncio.create_task(self._heartbeat(db, names), name="pgqrs-heartbeat"),
        ]
        if not opts.poll_only:
            self.listener = Listener(
                opts.listen_dsn or self.config.dsn,
                self.config.schema,
                self.config.connect_kwargs(),
                on_notify=on_notify,
                on_connect=wake_all,
            )
            background.append(asyncio.create_task(self.listener.run(), name="pgqrs-listen"))
        completer_task = asyncio.create_task(self._completer.run(), name="pgqrs-completer")
        fetchers = [
            asyncio.create_task(
                Fetcher(
                    db,
                    q,
                    slots,
                    batch_cap=opts.batch_cap,
                    poll_interval=opts.poll_interval,
                    fetch_delay=opts.fetch_delay,
                    worker_id=lambda: self.worker_id,
                    stopping=lambda: self._stopping,
                    on_fetched=self._on_fetched,
                ).run(),
                name=f"pgqrs-fetch-{q.name}",
            )
            for q in queues
        ]
        internal = [*background, completer_task, *fetchers]
        assert self._stop_event is not None and self._now_event is not None
        stop_wait = asyncio.create_task(self._stop_event.wait())
        try:
            done, _ = await asyncio.wait(
                [stop_wait, *internal], return_when=asyncio.FIRST_COMPLETED
            )
            crashed = [t for t in done if t is not stop_wait]
            for t in crashed:
                logger.error("worker task %s ended unexpectedly: %r", t.get_name(), t.exception())
            await self._shutdown(db, queues, fetchers, completer_task)
            for t in crashed:
                t.result()  # re-raise the bug that stopped the worker
        finally:
            stop_wait.cancel()
            for t in internal:
                t.cancel()
            await asyncio.gather(stop_wait, *internal, return_exceptions=True)
            for job in list(self._jobs.values()):
                if job.task is not None:
                    job.task.cancel()

    async def _shutdown(
        self,
        db: Database,
        queues: list[QueueState],
        fetchers: list[asyncio.Task[None]],
        completer_task: asyncio.Task[None],
    ) -> None:
        assert self._now_event is not None
        opts = self.options
        self._stopping = True
        self._give_back_waiting()
        start = time.monotonic()
        grace_end = start + (0.0 if self._stop_now else opts.grace_period)
        logger.info("worker %s stopping: %d job(s) running", self.worker_id, len(self._jobs))
        status = asyncio.create_task(
            self._write_status(db, "worker_heartbeat", [self.worker_id, "stopping"])
        )
        for q in queues:
            q.attention.set()
        now_wait = asyncio.create_task(self._now_event.wait())
        try:
            # Fetchers end after their current dequeue (its messages are released),
            # then running jobs get the rest of the grace period.
            for stage in ("fetch", "jobs"):
                while not self._now_event.is_set():
                    tasks = fetchers if stage == "fetch" else self._job_tasks()
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
        late = [
            j
            for j in self._jobs.values()
            if not j.settling and j.task is not None and not j.task.done()
        ]
        if late:
            logger.warning(
                "releasing %d job(s) still running at the end of the grace period: %s",
                len(late),
                [j.message.id for j in late],
            )
        for j in late:
            assert j.task is not None
            j.task.cancel()
        write_timeout = (
            min(opts.shutdown_write_timeout, HARD_STOP_WRITE_TIMEOUT)
            if self._stop_now
            else opts.shutdown_write_timeout
        )
        self._completer.hurry(time.monotonic() + write_timeout)
        # Jobs (the cancelled ones too) hand their outcome to the completer and
        # wait for it to be written; only then is nothing more to come.
        await asyncio.gather(*self._job_tasks(), return_exceptions=True)
        # A job cancelled before its first step never ran its own clean-up.
        for j in [j for j in self._jobs.values() if j.task is not None and j.task.done()]:
            self._give_back(j)
        self._completer.finish()
        await completer_task
        status.cancel()
        await asyncio.gather(status, return_exceptions=True)
        await self._write_status(db, "worker_stop", [self.worker_id])
        c = self.counters
        logger.info(
            "worker %s stopped after %.1fs: %d processed, %d completed, %d failed",
            self.worker_id,
            time.monotonic() - start,
            c.processed,
            c.completed,
            c.failed,
        )

    async def _write_status(self, db: Database, query: str, params: list[Any]) -> None:
        try:
            await asyncio.wait_for(db.fetch(query, params), self.options.shutdown_write_timeout)
        except (Error, asyncio.TimeoutError) as exc:
            logger.warning("could not record the worker's state (%s): %s", query, exc)

    async def _register(self, db: Database, names: list[str]) -> None:
        """Add this worker to the workers table (at start, and again if it was pruned)."""
        rows = await db.fetch(
            "worker_register",
            [socket.gethostname(), os.getpid(), names, not self.options.poll_only],
        )
        self.worker_id = rows[0]["id"]

    async def _heartbeat(self, db: Database, names: list[str]) -> None:
        reconnect = Reconnect()
        last_reap = time.monotonic()
        while True:
            await asyncio.sleep(self.options.heartbeat_interval)
            try:
                status = "stopping" if self._stopping else "running"
                rows = await db.fetch("worker_heartbeat", [self.worker_id, status])
                if not rows:  # pruned while we could not reach the database
                    await self._register(db, names)
                    logger.warning(
                        "worker row was pruned; registered again as worker %s", self.worker_id
                    )
                if time.monotonic() - last_reap >= self.options.reap_interval:
                    last_reap = time.monotonic()
                    await db.fetch(
                        "worker_reap",
                        [self.options.worker_dead_after, self.options.worker_prune_after],
                    )
            except Error as exc:
                reconnect.failed()
                log = logger.warning if reconnect.failures == 1 else logger.debug
                log("heartbeat failed: %s", exc)
            else:
                reconnect.succeeded()

    # -- jobs ------------------------------------------------------------------

    def _on_fetched(
        self, q: QueueState, messages: list[Message], sent: float, with_slot: int
    ) -> None:
        dequeued_at = messages[0].dequeued_at if messages else None
        if dequeued_at is not None:
            # One statement set every lease: same start, same length.
            duration = (messages[0].visible_until - dequeued_at).total_seconds()
            if duration > 0:
                self._keeper.hold(messages, duration, sent)
        if self._stopping:
            # Fetched but not started: give them straight back.
            for i, m in enumerate(messages):
                self._give_back(self._track(q, m), waiting=i >= with_slot)
            return
        self.counters.prefetched += len(messages) - with_slot
        ahead: list[Job] = []
        for i, m in enumerate(messages):
            job = self._track(q, m)
            if i < with_slot:
                job.task = asyncio.create_task(self._run_job(job), name=f"pgqrs-job-{m.id}")
            else:
                q.ready.append(job)  # prefetched: starts when a slot frees up
                ahead.append(job)
        if ahead and self.options.prefetch is None:
            asyncio.get_running_loop().call_later(
                self.options.prefetch_max_wait, self._give_back_stale, q, ahead
            )
        if q.ready:
            # Slots freed while the dequeue ran (nothing may be left running
            # to start these when it returns).
            self._start_waiting(q)
        if self._slots.used == 0:  # nothing fetched, nothing running: write outcomes now
            self._completer.nudge()

    def _track(self, q: QueueState, m: Message) -> Job:
        job = Job(q, m)
        assert m.lease is not None
        self._jobs[m.lease] = job
        self.counters.in_flight += 1
        return job

    def _job_tasks(self) -> list[asyncio.Task[None]]:
        return [j.task for j in self._jobs.values() if j.task is not None]

    def _to_backlog(self, job: Job) -> None:
        """The job's handler is over (or will never start): free its slot."""
        job.settling = True
        self._slots.to_backlog(job.queue)
        if self._slots.waiting and not self._stopping:
            self._start_waiting(job.queue)
        if self._slots.used == 0:
            # Maybe the worker goes idle; decide once the fetchers had their say.
            asyncio.get_running_loop().call_soon(self._check_idle)

    def _check_idle(self) -> None:
        if self._slots.used == 0:
            self._completer.nudge()

    def _start_waiting(self, freed: QueueState) -> None:
        """Start prefetched messages on free slots: the queue that freed one first."""
        for q in (freed, *self._slots.queues):
            while q.ready and self._slots.startable(q):
                job: Job = q.ready.popleft()
                self._slots.start_waiting(q)
                job.task = asyncio.create_task(
                    self._run_job(job), name=f"pgqrs-job-{job.message.id}"
                )

    def _give_back_stale(self, q: QueueState, ahead: list[Job]) -> None:
        """prefetch="auto": ``prefetch_max_wait`` after a dequeue took ``ahead``
        beyond the free slots, give back those still waiting for a slot (the
        queue's handlers turned slow after the dequeue), so that any worker may
        take them, and stop fetching ahead."""
        if self._stopping:
            return
        # Still waiting: not started (no task) and not given back (settling).
        stale = {id(j) for j in ahead if j.task is None and not j.settling}
        if not stale:
            return
        waited = self.options.prefetch_max_wait
        self._slots.slowed(q, waited)
        logger.info(
            "gave back %d prefetched message(s) of %r: none started within %.1fs",
            len(stale),
            q.name,
            waited,
        )
        keep: collections.deque[Job] = collections.deque()
        for job in q.ready:
            if id(job) in stale:
                self._give_back(job, waiting=True)
            else:
                keep.append(job)
        q.ready = keep

    def _give_back_waiting(self) -> None:
        """Stopping: give back the prefetched messages no handler will start."""
        for q in self._slots.queues:
            while q.ready:
                self._give_back(q.ready.popleft(), waiting=True)

    def _give_back(self, job: Job, waiting: bool = False) -> None:
        """Release a tracked message that no handler started: its attempt is refunded.
        ``waiting``: a prefetched one (it holds no slot)."""
        job.task = None
        if waiting:
            job.settling = True
            self._slots.waiting_to_backlog()
        else:
            self._to_backlog(job)
        self._completer.submit(
            Settlement(message=job.message, kind="release", refund=True, on_done=self._untrack)
        )

    def _untrack(self, s: Settlement, _outcome: Outcome) -> None:
        """The outcome of a job is written (or given up on): the message is no longer held."""
        m = s.message
        assert m.lease is not None
        if self._jobs.pop(m.lease, None) is not None:
            self.counters.in_flight -= 1
            self._slots.settled()

    def _emit(self, kind: str, m: Message, **extra: Any) -> None:
        if self.events.active:
            self.events.emit(JobEvent(kind, m, self.worker_id, **extra))

    def _event(self, kind: str, m: Message, **extra: Any) -> JobEvent | None:
        """The event to emit later; None when nobody listens (not built per job for nothing)."""
        return JobEvent(kind, m, self.worker_id, **extra) if self.events.active else None

    def _lease_lost(self, m: Message) -> None:
        logger.warning(
            "lost the lease of message %s (queue %r): it expired and may be running elsewhere",
            m.id,
            m.queue,
        )

    async def _run_job(self, job: Job) -> None:
        """Run the handler, free the slot, hand the outcome to the completer.

        The task ends there: the message stays held (in the completion
        backlog) until ``_settled`` learns that its outcome is written.
        """
        q, m = job.queue, job.message
        counters = self.counters
        counters.running += 1
        begun = time.monotonic()
        try:
            settlement, job.kind, job.after = await self._call(q, m)
            self._slots.finished(q, time.monotonic() - begun)
        except asyncio.CancelledError:
            # The grace period ended (or a second signal): give the message back.
            err = {
                "type": "WorkerStopped",
                "message": "the worker stopped before the handler finished",
                "attempt": m.attempts,
                "worker_id": self.worker_id,
            }
            settlement = Settlement(
                message=m,
                kind="release",
                error=encode_json(err, "error", self.config.max_payload_bytes),
            )
        finally:
            counters.running -= 1
        job.task = None
        self._to_backlog(job)
        settlement.on_done = self._settled
        self._completer.submit(settlement)

    def _settled(self, s: Settlement, outcome: Outcome) -> None:
        m = s.message
        assert m.lease is not None
        job = self._jobs.get(m.lease)
        kind, after = (job.kind, job.after) if job is not None else (None, None)
        self._untrack(s, outcome)
        if kind is None:  # released at shutdown, handler still running
            if outcome == "ok":
                logger.info("released message %s (handler still running at shutdown)", m.id)
        elif outcome == "ok":
            if kind == "completed":
                self.counters.completed += 1
            elif kind == "retried":
                self.counters.retried += 1
            elif kind == "dead":
                self.counters.dead += 1
            if after is not None:
                self.events.emit(after)
        elif outcome in ("lease_lost", "not_found"):
            # Either way the fence held: another consumer took the message over
            # (and may already have archived it, hence not_found).
            self.counters.lease_lost += 1
            logger.warning(
                "message %s (queue %r): lease lost before its outcome (%s) was written; another "
                "consumer has it now, or has already settled it",
                m.id,
                m.queue,
                kind,
            )
            self._emit("lease_lost", m)

    async def _call(self, q: QueueState, m: Message) -> tuple[Settlement, str, JobEvent | None]:
        """Run the handler; return what to write, and the event to emit once written."""
        spec = q.spec
        max_bytes = self.config.max_payload_bytes
        self._emit("started", m)
        try:
            if spec.is_async:
                result = await spec.func(m)
            else:
                result = await self._threads.run(spec.func, m)
            result_json = encode_json(result, "result", max_bytes)
        except Retry as exc:
            self.counters.processed += 1
            return self._retry_or_die(q, m, exc, exc.delay)
        except Abort as exc:
            self.counters.processed += 1
            self.counters.failed += 1
            self._emit("failed", m, error=exc)
            logger.warning("message %s (queue %r) aborted by its handler: %s", m.id, q.name, exc)
            return self._dead(m, exc)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # SystemExit or KeyboardInterrupt in a handler thread too
            self.counters.processed += 1
            self.counters.failed += 1
            self._emit("failed", m, error=exc)
            if isinstance(exc, PayloadError):
                logger.warning(
                    "message %s (queue %r): handler result refused: %s", m.id, q.name, exc
                )
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
            return self._retry_or_die(q, m, exc, None)
        self.counters.processed += 1
        return (
            Settlement(message=m, kind="archive", status="completed", result=result_json),
            "completed",
            self._event("completed", m, result=result),
        )

    def _retry_or_die(
        self, q: QueueState, m: Message, exc: BaseException, delay: float | None
    ) -> tuple[Settlement, str, JobEvent | None]:
        if m.attempts >= q.max_attempts:
            logger.warning(
                "message %s (queue %r) is dead after %d attempt(s)", m.id, q.name, m.attempts
            )
            return self._dead(m, exc)
        backoff = q.spec.backoff or self.options.backoff
        wait = backoff.delay(m.attempts) if delay is None else delay
        error = encode_json(
            error_record(exc, m.attempts, self.worker_id), "error", self.config.max_payload_bytes
        )
        return (
            Settlement(message=m, kind="release", delay=wait, error=error),
            "retried",
            self._event("retried", m, error=exc, delay=wait),
        )

    def _dead(self, m: Message, exc: BaseException) -> tuple[Settlement, str, JobEvent | None]:
        error = encode_json(
            error_record(exc, m.attempts, self.worker_id), "error", self.config.max_payload_bytes
        )
        return (
            Settlement(message=m, kind="archive", status="dead", error=error),
            "dead",
            self._event("dead", m, error=exc),
        )
