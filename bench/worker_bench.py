"""W4 (worker drain), W5 (idle pickup latency) and RSS: the worker runtime.

The worker runs in this process on its own thread (``pgqrs.Worker.run()``),
except for the RSS measurement, which runs it alone in a child process
(``python -m bench.rss_worker``) so the figure is the worker's own.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pgqrs
from bench import systems
from bench.systems import QUEUE
from bench.workloads import Ctx, Result, reset

#: Seconds a worker benchmark may take before it is declared stuck.
DEADLINE = 300.0


class RunningWorker:
    """A pgqrs.Worker on a thread, with a no-op handler that can record start times."""

    def __init__(
        self,
        dsn: str,
        *,
        concurrency: int,
        handler_kind: str = "async",
        on_start: Callable[[Any], None] | None = None,
        **options: Any,
    ) -> None:
        cfg = systems.config(dsn, pool_max_size=4)
        self.worker = pgqrs.Worker(
            cfg, queues=[QUEUE], concurrency=concurrency, handle_signals=False, **options
        )
        self.first: float | None = None
        record = on_start

        if handler_kind == "async":

            @self.worker.handler(QUEUE)
            async def noop_async(msg: Any) -> None:
                if self.first is None:
                    self.first = time.perf_counter()
                if record is not None:
                    record(msg)
        else:

            @self.worker.handler(QUEUE)
            def noop_sync(msg: Any) -> None:
                if self.first is None:
                    self.first = time.perf_counter()
                if record is not None:
                    record(msg)

        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:
            self.error = exc

    def start(self) -> RunningWorker:
        self.thread.start()
        return self

    def wait_for(self, cond: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if self.error is not None:
                raise RuntimeError(f"worker failed while waiting for {what}") from self.error
            if time.monotonic() > end:
                raise TimeoutError(f"worker: no {what} within {timeout} s")
            time.sleep(0.002)

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(60)


# --- W4 ----------------------------------------------------------------------------------


def w4(ctx: Ctx) -> Iterator[Result]:
    """W4: the worker runtime draining 50,000 jobs with a no-op handler, concurrency 1/16/64.

    Every point runs at the worker's defaults (prefetch="auto", batch_size
    100), except one at concurrency 16 with prefetch=0 (a message leased only
    when a handler can start it; the default before "auto"), for comparison,
    and one with four workers at concurrency 100 (each on its own thread and
    event loop in this process, as W3's four consumers are threads): the
    worker's reference is the consumer API's batch drain at the same
    concurrency (W3 archive batch=100, one and four consumers). Concurrency 1
    drains 5,000 (a few jobs per round trip pair at most); the sync-handler
    points (a thread hop per job) drain 25,000, once. The points run in
    interleaved rounds (each point once per round), so a noisy neighbour
    weighs on all of them alike.
    """
    full = 5_000 if ctx.quick else 50_000
    # (workers, handler, concurrency, Worker(prefetch=...) or None for the default, jobs, runs)
    points: list[tuple[int, str, int, int | None, int, int]] = [
        (1, "async", 1, None, full // 10, ctx.reps),
        (1, "async", 16, None, full, ctx.reps),
        (1, "async", 64, None, full, ctx.reps),
        (1, "sync", 16, None, full // 2, 1),
        (1, "sync", 64, None, full // 2, 1),
        (1, "async", 16, 0, full, ctx.reps),
        (4, "async", 100, None, full, ctx.reps),
    ]
    results: list[Result] = []
    for workers, kind, conc, prefetch, jobs, _reps in points:
        case = (
            ("" if workers == 1 else f"workers={workers} ")
            + f"concurrency={conc}"
            + ("" if kind == "async" else " sync handler")
            + ("" if prefetch is None else f" prefetch={prefetch}")
        )
        meta = {
            "jobs": jobs,
            "workers": workers,
            "handler": kind,
            "prefetch": "auto" if prefetch is None else prefetch,
        }
        results.append(Result("W4", case, "pgqrs-worker", "jobs/s", [], meta))
    for rep in range(max(p[5] for p in points)):
        for (workers, kind, conc, prefetch, jobs, reps), res in zip(points, results, strict=True):
            if rep >= reps:
                continue
            reset(ctx, "pgqrs", jobs)
            options = {} if prefetch is None else {"prefetch": prefetch}
            fleet = [
                RunningWorker(ctx.dsn, concurrency=conc, handler_kind=kind, **options).start()
                for _ in range(workers)
            ]

            def done(fleet: list[RunningWorker] = fleet, n: int = jobs) -> bool:
                for w in fleet:
                    if w.error is not None:
                        raise RuntimeError("a W4 worker failed") from w.error
                return sum(w.worker.counters.completed for w in fleet) >= n

            fleet[0].wait_for(done, f"{jobs} completed jobs")
            end = time.perf_counter()
            for w in fleet:
                w.stop()
            firsts = [w.first for w in fleet if w.first is not None]
            assert firsts
            rate = jobs / (end - min(firsts))
            res.runs.append(rate)
            ctx.log(f"  W4 {res.case}: {rate:,.0f} jobs/s")
    yield from results


# --- W5 ----------------------------------------------------------------------------------


def w5(ctx: Ctx) -> Iterator[Result]:
    """W5: idle pickup latency (enqueue returns -> handler starts), NOTIFY and poll-only.

    One producer enqueues one job at a time into an empty queue and waits for
    the handler to start before the next (after a short random pause, so the
    worker is idle again). Poll-only uses poll_interval=0.25 s.
    """
    samples = {"notify": 40 if ctx.quick else 300, "poll-only": 8 if ctx.quick else 30}
    poll_interval = 0.25
    for mode, n in samples.items():
        lat = _latencies(ctx, mode, n, poll_interval)
        lat.sort()
        q = statistics.quantiles(lat, n=100, method="inclusive")
        for name, value in (("p50", q[49]), ("p95", q[94]), ("p99", q[98])):
            yield Result(
                "W5",
                mode,
                name,
                "ms",
                [value],
                {
                    "samples": n,
                    "poll_interval_s": poll_interval,
                    "max_ms": lat[-1],
                    "min_ms": lat[0],
                },
            )
        ctx.log(f"  W5 {mode}: p50 {q[49]:.2f} ms p95 {q[94]:.2f} ms p99 {q[98]:.2f} ms (n={n})")


def _latencies(ctx: Ctx, mode: str, n: int, poll_interval: float) -> list[float]:
    """``n`` pickup latencies in ms, one job at a time into an empty queue."""
    reset(ctx, "pgqrs")
    started: dict[int, float] = {}
    seen = threading.Event()

    def record(msg: Any) -> None:
        started[msg.id] = time.perf_counter()
        seen.set()

    opts: dict[str, Any] = {"poll_interval": poll_interval}
    if mode == "poll-only":
        opts["poll_only"] = True
    w = RunningWorker(ctx.dsn, concurrency=8, on_start=record, **opts).start()
    if mode == "notify":
        w.wait_for(lambda: w.worker.listening, "LISTEN connection", 30)
    lat: list[float] = []
    try:
        with pgqrs.Producer(systems.config(ctx.dsn), QUEUE) as producer:
            producer.enqueue(systems.payload(0))  # warm up both sides
            w.wait_for(lambda: bool(started), "first job")
            time.sleep(0.05)
            for i in range(n):
                seen.clear()
                msg = producer.enqueue(systems.payload(i))
                returned = time.perf_counter()
                if not seen.wait(30):
                    raise TimeoutError("W5: the worker did not pick up a job within 30 s")
                w.wait_for(lambda m=msg.id: m in started, f"job {msg.id}")
                lat.append((started[msg.id] - returned) * 1000)
                time.sleep(random.uniform(0.005, 0.02))
    finally:
        w.stop()
    return lat


# --- RSS ---------------------------------------------------------------------------------


def rss(ctx: Ctx) -> Iterator[Result]:
    """RSS: peak RSS of a worker process at concurrency 64 working through 10,000 jobs."""
    jobs = 2_000 if ctx.quick else 10_000
    res = Result("RSS", "concurrency=64 jobs=10,000", "pgqrs-worker", "MB", [], {"jobs": jobs})
    base = Result("RSS", "baseline (imported, idle)", "pgqrs-worker", "MB", [])
    for _ in range(1 if ctx.quick else 2):
        reset(ctx, "pgqrs", jobs)
        out = subprocess.run(
            [sys.executable, "-m", "bench.rss_worker", ctx.dsn, "64", str(jobs)],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"rss_worker failed:\n{out.stderr[-2000:]}")
        data = json.loads(out.stdout.strip().splitlines()[-1])
        res.runs.append(data["peak_rss_mb"])
        base.runs.append(data["baseline_rss_mb"])
        res.extra.update(data)
        ctx.log(
            f"  RSS: peak {data['peak_rss_mb']:.1f} MB (baseline {data['baseline_rss_mb']:.1f} MB)"
        )
    yield base
    yield res
