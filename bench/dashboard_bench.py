"""Dashboard page times on big tables: 1,000,000 waiting + 1,000,000 archived messages.

    python -m bench.dashboard_bench [--dsn DSN] [--rows 1000000] [--repeat 7] [--keep]

Fills a schema of its own (``dashboard_bench``, dropped at the end unless
--keep) with INSERT ... SELECT generate_series, VACUUM ANALYZEs it (as
autovacuum would), serves the dashboard in-process and prints, per page, the
median server time (from the request reaching the app to its last byte,
measured by an ASGI wrapper, so the HTTP client's time is left out) over
--repeat requests after one warm-up. The target (issue 20) is 200 ms a page.
Without --dsn it uses $PGQRS_DSN, else the embedded server (as the CLI does).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import httpx
import psycopg

import pgqrs
from pgqrs.dashboard import create_app

SCHEMA = "dashboard_bench"
TARGET_MS = 200.0


def fill(dsn: str, rows: int) -> None:
    """1 waiting table and 1 archive of ``rows`` rows each, spread over time like real ones."""
    config = pgqrs.Config.from_dsn(dsn, schema=SCHEMA)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    with pgqrs.Admin(config) as admin:
        admin.install()
        admin.create_queue("bulk")
        admin.create_queue("emails", max_attempts=3)
        admin.create_queue("reports")
        admin.pause_queue("reports")
    s = f'"{SCHEMA}"'
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(
            f"""INSERT INTO {s}.workers (hostname, pid, queues, heartbeat_at)
                SELECT 'worker-' || w, 1000 + w, ARRAY['bulk', 'emails'], now()
                FROM generate_series(1, 5) w"""
        )
        # The archive: ids 1..rows, enqueued over the last 30 days, 2% dead.
        conn.execute(
            f"""INSERT INTO {s}.archive
                    (id, queue, payload, priority, attempts, enqueued_at, dequeued_at,
                     headers, archived_at, status, result, error)
                SELECT i,
                       CASE WHEN i %% 10 < 6 THEN 'bulk' WHEN i %% 10 < 9 THEN 'emails'
                            ELSE 'reports' END,
                       jsonb_build_object('order', i, 'customer', 'c' || (i %% 9973)),
                       0, CASE WHEN i %% 50 = 0 THEN 3 ELSE 1 END,
                       t, t + interval '1 second', '{{}}'::jsonb, t + interval '2 seconds',
                       CASE WHEN i %% 50 = 0 THEN 'dead' ELSE 'completed' END,
                       CASE WHEN i %% 50 = 0 THEN NULL ELSE '{{"ok": true}}'::jsonb END,
                       CASE WHEN i %% 50 = 0 THEN jsonb_build_object(
                           'reason', 'max_attempts exceeded', 'max_attempts', 3,
                           'last_error', jsonb_build_object('type', 'TimeoutError',
                               'message', 'upstream timed out')) END
                FROM generate_series(1, %(rows)s) i,
                     LATERAL (SELECT now() - interval '30 days' * (1 - i::float8 / %(rows)s)
                                  - interval '5 seconds' AS t) x""",
            {"rows": rows},
        )
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{s}.messages', 'id'), %(rows)s)",
            {"rows": rows},
        )
        # Waiting: enqueued over the last 2 days; 1% priority 5, 2% delayed, the
        # oldest 200 in flight (leased by the workers).
        conn.execute(
            f"""INSERT INTO {s}.messages
                    (queue, payload, priority, visible_at, attempts, lease, leased_by,
                     enqueued_at, dequeued_at, headers, last_error)
                SELECT CASE WHEN i %% 10 = 0 THEN 'emails' ELSE 'bulk' END,
                       jsonb_build_object('order', %(rows)s + i, 'customer', 'c' || (i %% 9973)),
                       CASE WHEN i %% 100 = 0 THEN 5 ELSE 0 END,
                       CASE WHEN i <= 200 THEN now() + interval '5 minutes'
                            WHEN i %% 50 = 1 THEN now() + interval '1 hour'
                            ELSE t END,
                       CASE WHEN i <= 200 OR i %% 50 = 1 THEN 1 ELSE 0 END,
                       CASE WHEN i <= 200 THEN gen_random_uuid() END,
                       CASE WHEN i <= 200 THEN (SELECT min(id) FROM {s}.workers) + i %% 5 END,
                       t, CASE WHEN i <= 200 OR i %% 50 = 1 THEN now() END, '{{}}'::jsonb,
                       CASE WHEN i %% 50 = 1 THEN '{{"type": "IOError", "message": "busy"}}'::jsonb
                       END
                FROM generate_series(1, %(rows)s) i,
                     LATERAL (SELECT now() - interval '2 days' * (1 - i::float8 / %(rows)s)
                                  AS t) x""",
            {"rows": rows},
        )
        print(
            f"filled {rows:,} waiting + {rows:,} archived in {time.perf_counter() - started:.0f}s"
        )
        started = time.perf_counter()
        conn.execute(f"VACUUM ANALYZE {s}.messages")
        conn.execute(f"VACUUM ANALYZE {s}.archive")
        conn.execute(f"VACUUM ANALYZE {s}.workers")
        print(f"vacuum analyze: {time.perf_counter() - started:.0f}s")


class Timed:
    """ASGI wrapper: records each request's server time (start to last body byte)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last_ms = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        await self.app(scope, receive, send)
        self.last_ms = (time.perf_counter() - started) * 1000


def pages(dsn: str) -> list[tuple[str, str]]:
    """The pages to time, with ids looked up in the filled tables."""
    with psycopg.connect(dsn) as conn:
        s = f'"{SCHEMA}"'
        waiting = conn.execute(f"SELECT max(id) FROM {s}.messages").fetchone()
        archived = conn.execute(f"SELECT max(id) FROM {s}.archive WHERE id % 50 = 0").fetchone()
        deep = conn.execute(
            f"SELECT priority, id FROM {s}.messages WHERE queue = 'bulk' AND priority = 0 "
            "ORDER BY id OFFSET 500000 LIMIT 1"
        ).fetchone()
    assert waiting and archived and deep
    return [
        ("Queues", "/"),
        ("Queue bulk, last hour", "/queues/bulk"),
        ("Queue bulk, last day", "/queues/bulk?window=day"),
        ("Queue bulk, delayed only", "/queues/bulk?state=delayed"),
        ("Queue bulk, page at message 500,000", f"/queues/bulk?after={deep[0]}_{deep[1]}"),
        ("Queue emails", "/queues/emails"),
        ("Message (waiting)", f"/messages/{waiting[0]}"),
        ("Message (dead, archived)", f"/messages/{archived[0]}"),
        ("Archive", "/archive"),
        ("Archive, dead of bulk", "/archive?queue=bulk&status=dead"),
        ("Archive, dead of all queues", "/archive?status=dead"),
        (
            "Archive, one day 10 days ago",
            "/archive?since=" + _days_ago(10) + "&until=" + _days_ago(9),
        ),
        ("Workers", "/workers"),
        ("Schedules", "/schedules"),
    ]


def _days_ago(days: int) -> str:
    import datetime

    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def measure(dsn: str, repeat: int) -> list[tuple[str, float, float]]:
    sys.path.insert(0, "tests")
    from _dashboard_server import serving

    config = pgqrs.Config.from_dsn(dsn, schema=SCHEMA, pool_max_size=4)
    app = Timed(create_app(config))
    results = []
    with serving(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        for name, path in pages(dsn):
            times = []
            for attempt in range(repeat + 1):
                response = client.get(path)
                if response.status_code != 200:
                    raise RuntimeError(
                        f"{path}: HTTP {response.status_code}: {response.text[-500:]}"
                    )
                if attempt:  # the first request warms the pool and caches
                    times.append(app.last_ms)
            results.append((name, statistics.median(times), max(times)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: $PGQRS_DSN, else embedded)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the filled schema")
    parser.add_argument("--no-fill", action="store_true", help="reuse a kept schema")
    args = parser.parse_args()
    dsn = args.dsn or pgqrs.Config.from_env(schema=SCHEMA).dsn
    if not args.no_fill:
        fill(dsn, args.rows)
    try:
        results = measure(dsn, args.repeat)
    finally:
        if not args.keep:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    print("\n| page | median ms | max ms |\n|---|---:|---:|")
    for name, median, worst in results:
        flag = "" if median < TARGET_MS else "  (over target)"
        print(f"| {name} | {median:.1f} | {worst:.1f} |{flag}")


if __name__ == "__main__":
    main()
