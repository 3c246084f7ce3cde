"""The worker runtime's wiring: start, serve (fetch -> run -> settle), shut down.

One asyncio implementation serves both ``pgqrs.aio.Worker`` (awaited on the
caller's loop) and ``pgqrs.Worker`` (run on a loop of its own). The parts,
each in its own module: ``fetcher`` dequeues into the job table (``jobs``),
whose RUNNING jobs get a task here that calls the handler (``handlers``);
``outcome`` decides what the outcome means, ``completer`` writes it; then
the job leaves the table. ``leases``, ``heartbeat`` and ``listener`` run
beside them; ``shutdown`` ends it all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pgqrs._async._db import Database
from pgqrs._config import Config
from pgqrs._errors import Error
from pgqrs._models import Message
from pgqrs._schedule import ScheduleSpec
from pgqrs._telemetry import LeaseObserver
from pgqrs._telemetry import hooks as telemetry
from pgqrs._worker.completer import Completer, database_writer
from pgqrs._worker.events import Counters, Events, Signals
from pgqrs._worker.fetcher import Fetcher, QueueState
from pgqrs._worker.handlers import (
    DaemonThreads,
    HandlerSpec,
    Runner,
    load_queue,
    served_queues,
    with_tasks,
)
from pgqrs._worker.heartbeat import Heartbeat
from pgqrs._worker.jobs import Job, JobState, JobTable
from pgqrs._worker.leases import LeaseKeeper
from pgqrs._worker.listener import Listener
from pgqrs._worker.options import Options
from pgqrs._worker.prefetch import Prefetch
from pgqrs._worker.reconnect import retry_connection
from pgqrs._worker.schedules import Scheduler, declare
from pgqrs._worker.shutdown import HARD_STOP_WRITE_TIMEOUT, Stop, shutdown
from pgqrs._worker.slots import Slots

if TYPE_CHECKING:
    from pgqrs._tasks.registry import TaskRegistry

logger = logging.getLogger("pgqrs.worker")


class Runtime:
    # Set up by each run (``_serve``).
    jobs: JobTable
    _queues: list[QueueState]
    _slots: Slots
    _prefetch: Prefetch
    _completer: Completer
    _keeper: LeaseKeeper
    _runner: Runner

    def __init__(self, config: Config, queues: list[str] | None, options: Options) -> None:
        self.config = config
        self.options = options
        self.wanted_queues = queues
        self.handlers: dict[str, HandlerSpec] = {}
        #: Task registries served (``Worker(tasks=...)``, ``include``); their
        #: tasks join the handlers when ``run()`` starts.
        self.registries: list[TaskRegistry] = []
        #: ``run(until_empty=True)``: stop once idle (``_check_idle``).
        self._until_empty = False
        #: until_empty: idle was seen once; every queue is fetched again to confirm.
        self._confirming = False
        #: Declared with Worker.schedule(), upserted at start.
        self.schedules: list[ScheduleSpec] = []
        self.scheduler: Scheduler | None = None
        self.events = Events()
        self.counters = Counters()
        self.signals = Signals()
        self.worker_id: int | None = None
        #: Told of lease extensions and lost leases (set by ``pgqrs.otel``).
        self.lease_observer: LeaseObserver | None = None
        if telemetry.worker is not None:  # pgqrs.otel.instrument() ran: it subscribes
            telemetry.worker(self.events, self.counters, self)
        self.stop = Stop(options.grace_period)
        self._running = False
        #: The LISTEN connection's state (None in poll_only mode).
        self.listener: Listener | None = None

    def _leases_extended(self, messages: list[Message]) -> None:
        self.signals.lease_extended.fire(len(messages))
        observer = self.lease_observer
        if observer is not None:
            by_queue: dict[str, int] = {}
            for m in messages:
                by_queue[m.queue] = by_queue.get(m.queue, 0) + 1
            for queue, n in by_queue.items():
                observer(queue, "extended", n)

    def _lease_lost(self, message: Message) -> None:
        observer = self.lease_observer
        if observer is not None:
            observer(message.queue, "lost", 1)

    def request_stop(self, now: bool = False) -> None:
        """Begin a graceful stop (``now``: skip the grace period); any thread."""
        self.stop.request(now)

    async def run(self, *, until_empty: bool = False) -> None:
        """Serve until stopped (``until_empty``: until nothing is ready or held)."""
        if self._running:
            raise Error("this worker is already running")
        specs = with_tasks(self.handlers, self.registries)
        names = served_queues(specs, self.wanted_queues)
        self._running = True
        self._until_empty = until_empty
        self._confirming = False
        self.stop.attach()
        signals = self.stop.install_signals(self.options.handle_signals)
        db = Database(self.config)
        threads = DaemonThreads(self.options.concurrency, "pgqrs-handler")
        try:
            await self._serve(db, names, threads, specs)
        finally:
            signals.restore()
            threads.shutdown()
            await db.close()
            self._running = False
            self.stop.detach()

    async def _serve(
        self,
        db: Database,
        names: list[str],
        threads: DaemonThreads,
        specs: dict[str, HandlerSpec],
    ) -> None:
        opts = self.options
        heartbeat = Heartbeat(
            db,
            names,
            opts,
            stopping=lambda: self.stop.stopping,
            on_registered=lambda wid: setattr(self, "worker_id", wid),
            registered=self.signals.registered,
            beat=self.signals.heartbeat,
            on_cancelled=lambda held: self._runner.cancel_held(held),
        )

        async def start() -> list[QueueState]:
            # Any error but a connection failure (a missing queue or schema,
            # a privilege) is fatal: retry_connection passes it on.
            await db.open()
            queues = [await load_queue(db, specs[n], opts) for n in names]
            await declare(db, self.schedules)
            await heartbeat.register()
            return queues

        started = await retry_connection(start, "worker start-up", self.stop.wait_requested)
        if started is None:
            logger.info("worker stopped before it started")
            return
        queues = started
        logger.info(
            "worker %s serving %s (concurrency %d, %s)",
            self.worker_id,
            ", ".join(names),
            opts.concurrency,
            "polling only" if opts.poll_only else "LISTEN + polling",
        )

        def attention() -> None:
            for q in queues:
                q.attention.set()

        self._queues = queues
        self._slots = slots = Slots(opts.concurrency, opts.completion_backlog, queues, attention)
        self._prefetch = Prefetch(
            slots,
            opts.prefetch,
            horizon=opts.prefetch_horizon,
            per_slot=opts.prefetch_per_slot,
            duration_weight=opts.prefetch_duration_weight,
        )
        self.jobs = JobTable(slots, self.counters)
        self._completer = completer = Completer(
            database_writer(db),
            flush_interval=opts.flush_interval,
            flush_size=opts.flush_size,
            idle=lambda: slots.used == 0,
        )
        self.stop.on_now = lambda: completer.hurry(time.monotonic() + HARD_STOP_WRITE_TIMEOUT)
        self._runner = Runner(
            specs,
            threads,
            self.jobs,
            completer,
            self._prefetch,
            self.events,
            self.counters,
            backoff=opts.backoff,
            max_bytes=self.config.max_payload_bytes,
            worker_id=lambda: self.worker_id,
            free=self._free,
            written=self._written,
            db=db,
        )
        self._keeper = LeaseKeeper(
            db,
            extend_at=opts.lease_extend_at,
            check_interval=opts.lease_check_interval,
            holds=self.jobs.holds,
            on_extended=self._leases_extended,
            on_lost=self._lease_lost,
            on_cancelled=self._runner.cancel_held,
        )

        def stopping() -> bool:
            return self.stop.stopping

        background: list[asyncio.Task[Any]] = [
            _task(self._keeper.run, "pgqrs-leases", stopping),
            _task(heartbeat.run, "pgqrs-heartbeat", stopping),
        ]
        if not opts.poll_only:
            self.listener = Listener(
                opts.listen_dsn or self.config.dsn,
                self.config.schema,
                self.config.connect_kwargs(),
                queues=queues,
                on_listening=self.signals.listening.fire,
            )
            background.append(_task(self.listener.run, "pgqrs-listen", stopping))
        if opts.run_schedules or (opts.run_schedules is None and self.schedules):
            self.scheduler = Scheduler(
                db,
                tick=opts.schedule_tick,
                catch_up=opts.schedule_catch_up,
                stopped=lambda: self.stop.stopping,
                on_tick=self.signals.schedule_tick.fire,
            )
            background.append(_task(self.scheduler.run, "pgqrs-schedules", stopping))
        completer_task = _task(completer.run, "pgqrs-completer", lambda: False)
        fetchers = [
            _task(
                Fetcher(
                    db,
                    q,
                    slots,
                    self._prefetch,
                    batch_cap=opts.batch_cap,
                    poll_interval=opts.poll_interval,
                    fetch_delay=opts.fetch_delay,
                    worker_id=lambda: self.worker_id,
                    stopping=lambda: self.stop.stopping,
                    on_fetched=self._on_fetched,
                ).run,
                f"pgqrs-fetch-{q.name}",
                stopping,
            )
            for q in queues
        ]
        internal = [*background, completer_task, *fetchers]
        stop_wait = asyncio.create_task(self.stop.wait_requested())
        try:
            done, _ = await asyncio.wait(
                [stop_wait, *internal], return_when=asyncio.FIRST_COMPLETED
            )
            crashed = [t for t in done if t is not stop_wait]
            for t in crashed:
                logger.error("worker task %s ended unexpectedly: %r", t.get_name(), t.exception())
            await shutdown(
                stop=self.stop,
                options=opts,
                heartbeat=heartbeat,
                worker_id=lambda: self.worker_id,
                queues=queues,
                fetchers=fetchers,
                jobs=self.jobs,
                completer=completer,
                completer_task=completer_task,
                give_back_waiting=lambda: self._runner.release(self.jobs.give_back_waiting()),
                give_back=self._runner.give_back,
                counters=self.counters,
            )
            for t in crashed:
                t.result()  # re-raise the bug that stopped the worker
        finally:
            stop_wait.cancel()
            for t in internal:
                t.cancel()
            await asyncio.gather(stop_wait, *internal, return_exceptions=True)
            for task in self.jobs.tasks():
                task.cancel()

    # -- jobs: fetched -> running -> settling -> written ---------------------------------

    def _on_fetched(
        self, q: QueueState, messages: list[Message], sent: float, with_slot: int
    ) -> None:
        if messages and messages[0].dequeued_at is not None:
            # One statement set every lease: same start, same length.
            duration = (messages[0].visible_until - messages[0].dequeued_at).total_seconds()
            if duration > 0:
                self._keeper.hold(messages, duration, sent)
        states = [
            JobState.RUNNING if i < with_slot else JobState.PREFETCHED for i in range(len(messages))
        ]
        jobs = [self.jobs.add(q, m, state) for m, state in zip(messages, states, strict=True)]
        if self.stop.stopping:  # fetched but not started: give them straight back
            for job in jobs[:with_slot]:
                self._runner.give_back(job)
            self._runner.release(self.jobs.give_back_waiting(q, among=jobs[with_slot:]))
            return
        self.counters.prefetched += len(messages) - with_slot
        for job in jobs[:with_slot]:
            self._runner.spawn(job)
        if len(jobs) > with_slot and self.options.prefetch is None:
            asyncio.get_running_loop().call_later(
                self.options.prefetch_max_wait, self._give_back_stale, q, jobs[with_slot:]
            )
        if q.prefetched:
            # Slots freed while the dequeue ran (nothing may be left running
            # to start these when it returns).
            self._start_waiting(q)
        if self._slots.used == 0:  # nothing fetched, nothing running: write outcomes now
            self._completer.nudge()
        self.signals.fetched.fire()
        if messages:
            self._confirming = False
        else:
            self._check_idle()

    def _start_waiting(self, freed: QueueState) -> None:
        """Start prefetched messages on free slots: the queue that freed one first."""
        for job in self.jobs.start_waiting((freed, *self._queues)):
            self._runner.spawn(job)

    def _free(self, job: Job) -> None:
        """The job's handler is over (or will never start): free its slot."""
        self.jobs.settle(job)
        if self._slots.waiting and not self.stop.stopping:
            self._start_waiting(job.queue)
        if self._slots.used == 0:
            # Maybe the worker goes idle; decide once the fetchers had their say.
            asyncio.get_running_loop().call_soon(self._nudge_if_idle)

    def _nudge_if_idle(self) -> None:
        if self._slots.used == 0:
            self._completer.nudge()

    def _give_back_stale(self, q: QueueState, ahead: list[Job]) -> None:
        """prefetch="auto": ``prefetch_max_wait`` after a dequeue took ``ahead``
        beyond the free slots, give back those still waiting for a slot (the
        queue's handlers turned slow after the dequeue), so that any worker may
        take them, and stop fetching ahead."""
        if self.stop.stopping:
            return
        stale = self.jobs.give_back_waiting(q, among=ahead)
        if not stale:
            return
        waited = self.options.prefetch_max_wait
        self._prefetch.slowed(q, waited)
        logger.info(
            "gave back %d prefetched message(s) of %r: none started within %.1fs",
            len(stale),
            q.name,
            waited,
        )
        self._runner.release(stale)

    def _written(self) -> None:
        self.signals.outcome_written.fire()
        self._check_idle()

    def _check_idle(self) -> None:
        if self.counters.in_flight != 0:
            return
        if all(q.found == 0 for q in self._queues):
            self.signals.idle.fire()
            if self._until_empty:
                self._empty()
        elif self._until_empty:
            # Nothing held, but a queue's last dequeue found messages: ask it
            # now rather than at its next poll (idle or not, it will say).
            for q in self._queues:
                if q.found != 0:
                    q.notified = True
                    q.attention.set()

    def _empty(self) -> None:
        """until_empty: idle. The first time, fetch every queue once more (a
        message retried at once, or enqueued by a handler, is ready again
        though the last dequeue found none); idle again with nothing
        fetched between: stop."""
        if self._confirming:
            self.request_stop()
            return
        self._confirming = True
        for q in self._queues:
            q.found = None
            q.notified = True
            q.attention.set()


#: Longest wait before a task that failed unexpectedly runs again, in seconds.
RESTART_MAX_WAIT = 30.0


def _task(
    run: Callable[[], Awaitable[None]], name: str, stopping: Callable[[], bool]
) -> asyncio.Task[None]:
    """``run()`` in a task that outlives its unexpected errors: the worker
    never dies of an error that is not a connection failure (those are each
    task's own to wait out). The error is logged with its traceback and the
    task runs again after a growing wait; it ends when ``run`` returns, or
    when an error comes while ``stopping()``."""

    async def keep_running() -> None:
        failures = 0
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                logger.exception("worker task %s failed unexpectedly; it runs again", name)
                if stopping():
                    return
                await asyncio.sleep(min(RESTART_MAX_WAIT, 0.05 * 2**failures))

    return asyncio.create_task(keep_running(), name=name)
