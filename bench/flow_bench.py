"""FLOW: the cost of flow control (issue 17), as ratios in one run.

Drains a backlog with batch 100 and 4 consumers (dequeue + archive), through
the server functions (the client's own work is the same in every case, so
the ratios are the dequeue's):

* ``main``: today's dequeue before flow control: main's ``message_dequeue``
  body, installed next to the new one as ``message_dequeue_main``;
* (a) no limits; (b) ``concurrency_limit`` above what the consumers take;
  (c) 100 groups with ``group_concurrency=1``; (d) a rate limit far above
  the drain rate;
* and a rate limit below the drain rate, whose measured rate (after the
  bucket's first burst) is compared with the limit.

Targets (issue 17): (a) >= 0.97x main, (b) >= 0.9x (a), (c) >= 0.7x (a),
(d) >= 0.9x (a), the limited rate within 2% of the limit.

    python -m bench.flow_bench [--dsn DSN] [--reps 3] [--backlog 20000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

import pgqrs
from bench import server
from pgqrs._sql import render

SCHEMA = "flowbench"
QUEUE = "bench"
BATCH = 100
CONSUMERS = 4
ROOT = Path(__file__).resolve().parents[1]

#: case -> (dequeue function, create_queue limits, groups)
CASES: dict[str, tuple[str, dict[str, Any], int]] = {
    "main": ("message_dequeue_main", {}, 0),
    "a": ("message_dequeue", {}, 0),
    "b": ("message_dequeue", {"concurrency_limit": 100_000}, 0),
    "c": ("message_dequeue", {"group_concurrency": 1}, 100),
    "d": ("message_dequeue", {"rate_limit": "10000000/s"}, 0),
}


def main_dequeue_sql() -> str:
    """main's message_dequeue, renamed (the reference of 'today's dequeue')."""
    text = subprocess.run(
        ["git", "show", "main:sql/functions/message_dequeue.sql"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return render(text.replace(".message_dequeue(", ".message_dequeue_main("), SCHEMA)


def setup(dsn: str) -> pgqrs.Config:
    config = pgqrs.Config.from_dsn(dsn, schema=SCHEMA, pool_max_size=2)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    with pgqrs.Admin(config) as admin:
        admin.install()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(main_dequeue_sql())  # type: ignore[arg-type]
    return config


def reset(dsn: str, config: pgqrs.Config, limits: dict[str, Any], groups: int, n: int) -> None:
    with pgqrs.Admin(config) as admin:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                f"TRUNCATE {SCHEMA}.messages, {SCHEMA}.archive, {SCHEMA}.flow_leases, "
                f"{SCHEMA}.flow_buckets"
            )
            conn.execute(f"DELETE FROM {SCHEMA}.queues")
        admin.create_queue(QUEUE, **limits)
        group = f"'g' || (g % {groups})" if groups else "NULL"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO {SCHEMA}.messages (queue, payload, group_key) "  # type: ignore[arg-type]
                f"SELECT '{QUEUE}', jsonb_build_object('n', g), {group} "
                f"FROM generate_series(1, {n}) g"
            )
            conn.execute(f"VACUUM ANALYZE {SCHEMA}.messages")
            conn.execute("CHECKPOINT")


def drain(
    dsn: str,
    function: str,
    n: int,
    stop_after: float | None = None,
    stop: threading.Event | None = None,
) -> tuple[int, float]:
    """4 consumers drain with batch 100 (dequeue, then archive the batch) until
    ``n`` are archived (or ``stop_after`` seconds); (archived, seconds)."""
    done = [0]
    lock = threading.Lock()
    start = threading.Barrier(CONSUMERS + 1)
    dequeue = f"SELECT outcome, id, lease FROM {SCHEMA}.{function}(%s, %s, NULL, NULL)"
    if function == "message_dequeue":
        dequeue = (
            f"SELECT outcome, id, lease, retry_after FROM {SCHEMA}.{function}(%s, %s, NULL, NULL)"
        )
    archive = f"SELECT * FROM {SCHEMA}.message_archive(%s, %s, %s, NULL, NULL)"
    deadline = [float("inf")]

    def consumer() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            start.wait()
            while True:
                with lock:
                    if done[0] >= n or time.monotonic() > deadline[0]:
                        return
                    if stop is not None and stop.is_set():
                        return
                rows = conn.execute(dequeue, [QUEUE, BATCH]).fetchall()  # type: ignore[arg-type]
                leased = [r for r in rows if r[0] == "leased"]
                wait = next((r[3] for r in rows if r[0] == "throttled"), None)
                if leased:
                    ids, leases = [r[1] for r in leased], [r[2] for r in leased]
                    statuses = ["completed"] * len(leased)
                    conn.execute(archive, [ids, leases, statuses])  # type: ignore[arg-type]
                    with lock:
                        done[0] += len(leased)
                elif wait is not None:
                    time.sleep(wait)  # the rate limit's next token
                else:
                    time.sleep(0.0005)  # all held by the others: they archive soon

    threads = [threading.Thread(target=consumer) for _ in range(CONSUMERS)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    if stop_after is not None:
        deadline[0] = t0 + stop_after
    for t in threads:
        t.join()
    return done[0], time.monotonic() - t0


def limited_rate(dsn: str, config: pgqrs.Config, rate: int, seconds: float) -> float:
    """The measured dequeue rate under a rate limit below the drain rate: one
    continuous drain, then the messages' dequeue times (database clock) are
    counted over a window that starts 1.5 s after the first dequeue (the
    bucket's first burst, its capacity, is spent by then) and ends 0.5 s
    before the last."""
    reset(dsn, config, {"rate_limit": f"{rate}/s"}, 0, int(rate * (seconds + 4) * 1.2))
    drain(dsn, "message_dequeue", rate * (seconds + 2))
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "WITH w AS (SELECT min(dequeued_at) + interval '1.5 s' AS t1, "
            f"max(dequeued_at) - interval '0.5 s' AS t2 FROM {SCHEMA}.archive) "
            f"SELECT count(*), extract(epoch FROM w.t2 - w.t1)::float8 FROM {SCHEMA}.archive a, w "
            "WHERE a.dequeued_at >= w.t1 AND a.dequeued_at < w.t2 GROUP BY w.t1, w.t2"
        ).fetchone()
    assert row is not None
    return float(row[0]) / float(row[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.flow_bench", description=__doc__)
    ap.add_argument("--dsn", default=os.environ.get("PGQRS_BENCH_DSN"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--backlog", type=int, default=20_000)
    ap.add_argument("--rate", type=int, default=2_000, help="the limit below the drain rate")
    ap.add_argument("--rate-seconds", type=float, default=10.0)
    ap.add_argument("--cases", default=",".join(CASES), help="e.g. main,a (default: all)")
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    with server.server(args.dsn) as dsn:
        config = setup(dsn)
        rates: dict[str, list[float]] = {c: [] for c in cases}
        for rep in range(args.reps):
            order = list(cases)
            order = order[rep % len(order) :] + order[: rep % len(order)]
            for case in order:
                function, limits, groups = CASES[case]
                reset(dsn, config, limits, groups, args.backlog)
                taken, elapsed = drain(dsn, function, args.backlog)
                rates[case].append(taken / elapsed)
                print(f"  rep {rep} {case}: {taken / elapsed:,.0f} jobs/s", flush=True)
        med = {c: statistics.median(r) for c, r in rates.items()}
        measured = limited_rate(dsn, config, args.rate, args.rate_seconds) if "d" in cases else 0
    a = med["a"]
    # Paired: each rep's (a) against the same rep's main, then the median.
    paired = statistics.median(x / y for x, y in zip(rates["a"], rates["main"], strict=True))
    every = [
        ("main (today's dequeue)", "main", None, None),
        ("(a) no limits", "a", paired, 0.97),
        ("(b) concurrency_limit above use", "b", None, 0.9),
        ("(c) 100 groups, group_concurrency=1", "c", None, 0.7),
        ("(d) rate limit above drain rate", "d", None, 0.9),
    ]
    rows = [
        (name, med[c], ratio if ratio is not None or c == "main" else med[c] / a, target)
        for name, c, ratio, target in every
        if c in med
    ]
    print("\n| case | jobs/s (median) | ratio | target |\n| --- | --- | --- | --- |")
    for name, rate, ratio, target in rows:
        shown = "" if ratio is None else f"{ratio:.3f}x"
        goal = "" if target is None else f">= {target}x " + ("ok" if ratio >= target else "MISSED")
        print(f"| {name} | {rate:,.0f} | {shown} | {goal} |")
    if "d" not in cases:
        return 0
    error = abs(measured - args.rate) / args.rate
    print(
        f"| rate limit {args.rate}/s below the drain rate | {measured:,.1f} | "
        f"{error * 100:.2f}% off | within 2% {'ok' if error <= 0.02 else 'MISSED'} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
