"""Child process for the RSS measurement: ``python -m bench.rss_worker DSN CONCURRENCY JOBS``.

Runs a pgqrs.Worker with a handler that holds each job 10 ms (so all
CONCURRENCY slots stay busy) until JOBS jobs are archived, then prints
{"peak_rss_mb": ..., "baseline_rss_mb": ...} as JSON (VmHWM).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import threading
import time
from typing import Any

import pgqrs
from bench import systems
from bench.systems import QUEUE


def _rss_mb() -> float:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    dsn, concurrency, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    baseline = _rss_mb()
    worker = pgqrs.Worker(
        systems.config(dsn, pool_max_size=4),
        queues=[QUEUE],
        concurrency=concurrency,
        handle_signals=False,
    )
    peak_in_flight = 0

    @worker.handler(QUEUE)
    async def hold(msg: Any) -> None:
        nonlocal peak_in_flight
        peak_in_flight = max(peak_in_flight, worker.counters.in_flight)
        await asyncio.sleep(0.01)

    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    end = time.monotonic() + 300
    while worker.counters.completed < jobs and time.monotonic() < end:
        time.sleep(0.01)
    worker.stop()
    t.join(60)
    print(
        json.dumps(
            {
                "peak_rss_mb": _rss_mb(),
                "baseline_rss_mb": baseline,
                "completed": worker.counters.completed,
                "peak_in_flight": peak_in_flight,
            }
        )
    )


if __name__ == "__main__":
    main()
