"""Screenshots of the dashboard for docs/dashboard.md, taken by headless chromium.

    python -m bench.dashboard_screenshots [--dsn DSN] [--out docs/dashboard]

Fills a schema of its own (``dashboard_demo``, dropped afterwards) with a
day of realistic history (per-minute throughput with a daily swing, a few
dead letters with real tracebacks, workers holding leases), serves the
dashboard in-process and saves one PNG per page. Needs chromium and
chromedriver (Debian: apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import psycopg

import pgqrs
from pgqrs.dashboard import create_app

SCHEMA = "dashboard_demo"


#: A handler's traceback as a worker stores it (the shape pgqrs's worker writes).
TRACEBACK = """Traceback (most recent call last):
  File "/srv/app/billing/tasks.py", line 88, in render_invoice
    pdf = renderer.render(invoice, timeout=30)
  File "/srv/app/billing/renderer.py", line 41, in render
    raise TimeoutError(f"PDF renderer did not answer within {timeout}s (invoice {invoice.id})")
TimeoutError: PDF renderer did not answer within 30s (invoice 48213)
"""


def fill(dsn: str) -> dict[str, int]:
    config = pgqrs.Config.from_dsn(dsn, schema=SCHEMA)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    with pgqrs.Admin(config) as admin:
        admin.install()
        admin.create_queue("emails", max_attempts=5, rate_limit="100/s")
        admin.create_queue(
            "billing.invoices", max_attempts=3, visibility_timeout=120, concurrency_limit=8
        )
        admin.create_queue("thumbnails", visibility_timeout=60, group_concurrency=1)
        admin.create_queue("reports", max_attempts=2, archive_retention=7 * 86400)
        admin.pause_queue("reports")
        admin.create_schedule(
            "nightly-report",
            queue="reports",
            payload={"report": "daily"},
            cron="30 2 * * *",
            time_zone="Europe/Berlin",
            missed="latest",
        )
        admin.create_schedule(
            "invoice-sweep", queue="billing.invoices", payload={"sweep": True}, interval=300
        )
        admin.create_schedule(
            "thumbnail-gc", queue="thumbnails", payload={"gc": True}, cron="@hourly"
        )
        admin.pause_schedule("thumbnail-gc")
    s = f'"{SCHEMA}"'
    seq = f"pg_get_serial_sequence('{s}.messages', 'id')"
    error = {
        "type": "TimeoutError",
        "message": "PDF renderer did not answer within 30s (invoice 48213)",
        "traceback": TRACEBACK,
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        # A day of history: per queue and minute, a daily swing of completions.
        conn.execute(
            f"""INSERT INTO {s}.archive
                    (id, queue, payload, priority, attempts, enqueued_at, dequeued_at,
                     headers, archived_at, status, result, error)
                SELECT nextval({seq}), h.*  -- ids in time order, as real ones are
                FROM (
                SELECT q.name,
                       jsonb_build_object('id', k, 'tenant', 'acme-' || (k %% 7)), 0,
                       CASE WHEN (k * 31 + m) %% 89 = 0 THEN q.max_attempts ELSE 1 END,
                       t - interval '4 seconds', t - interval '2 seconds', '{{}}'::jsonb, t,
                       CASE WHEN (k * 31 + m) %% 89 = 0 THEN 'dead' ELSE 'completed' END,
                       CASE WHEN (k * 31 + m) %% 89 = 0 THEN NULL ELSE '{{"ok": true}}'::jsonb END,
                       CASE WHEN (k * 31 + m) %% 89 = 0 THEN jsonb_build_object(
                           'reason', 'max_attempts exceeded', 'max_attempts', q.max_attempts,
                           'last_error', %(error)s::jsonb) END
                FROM generate_series(1439, 1, -1) m
                CROSS JOIN (VALUES ('emails', 5, 30), ('billing.invoices', 3, 8),
                                   ('thumbnails', 5, 18)) q(name, max_attempts, base)
                CROSS JOIN LATERAL generate_series(
                    1, greatest(1, (q.base * (1.2 + sin(m / 229.0)) * (0.8 + random() * 0.4))::int)
                ) k
                CROSS JOIN LATERAL (
                    SELECT date_trunc('minute', now()) - make_interval(mins => m)
                           + make_interval(secs => random() * 59) AS t
                ) x
                ORDER BY t
                ) h""",
            {"error": psycopg.types.json.Jsonb(error)},
        )
        # Waiting now: a backlog on emails, delayed retries on thumbnails.
        conn.execute(
            f"""INSERT INTO {s}.messages (queue, payload, priority, visible_at, attempts,
                                          enqueued_at, headers, last_error)
                SELECT 'emails',
                       jsonb_build_object('to', 'user' || i || '@example.com',
                                          'template',
                                          (ARRAY['welcome', 'receipt', 'reset'])[1 + i % 3]),
                       CASE WHEN i % 40 = 0 THEN 10 ELSE 0 END,
                       now() - interval '1 second' * (900 - i / 2),
                       0, now() - interval '1 second' * (900 - i / 2),
                       '{{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}}'::jsonb, NULL
                FROM generate_series(1, 1200) i"""
        )
        conn.execute(
            f"""INSERT INTO {s}.messages (queue, payload, priority, visible_at, attempts,
                                          enqueued_at, headers, last_error)
                SELECT 'thumbnails',
                       jsonb_build_object('image', 'img/' || i || '.jpg',
                                          'sizes', '[64, 256]'::jsonb),
                       0, now() + interval '1 minute' * i, 2, now() - interval '3 minutes',
                       '{{}}'::jsonb,
                       jsonb_build_object('type', 'ConnectionError',
                                          'message', 'object store returned 503')
                FROM generate_series(1, 14) i"""
        )
        conn.execute(
            f"""INSERT INTO {s}.messages (queue, payload, enqueued_at, visible_at)
                SELECT 'reports',
                       jsonb_build_object('report', 'monthly',
                                          'month', '2026-' || lpad(i::text, 2, '0')),
                       now() - interval '2 hours', now() - interval '2 hours'
                FROM generate_series(1, 11) i"""
        )
        ids = []
        for host, queues, started, beat, status in (
            ("app-7f9c4d-x2x8q", ["emails", "thumbnails"], "3 hours", "2 seconds", "running"),
            ("app-7f9c4d-m4kzt", ["emails", "thumbnails"], "3 hours", "4 seconds", "running"),
            ("billing-5d8b7-qq1", ["billing.invoices"], "50 minutes", "1 second", "running"),
            ("app-7f9c4d-old01", ["emails"], "1 day", "5 hours", "stopped"),
        ):
            row = conn.execute(
                f"""INSERT INTO {s}.workers (hostname, pid, queues, started_at, heartbeat_at,
                                             status, stopped_at)
                    VALUES (%s, 1, %s, now() - %s::interval, now() - %s::interval, %s,
                            CASE WHEN %s = 'stopped' THEN now() - %s::interval END)
                    RETURNING id""",
                [host, queues, started, beat, status, status, beat],
            ).fetchone()
            assert row is not None
            ids.append(int(row[0]))
        conn.execute(f"UPDATE {s}.workers SET pid = 4100 + id")
        # The oldest emails are being processed by the two app workers.
        conn.execute(
            f"""UPDATE {s}.messages SET lease = gen_random_uuid(), attempts = 1,
                       leased_by = CASE WHEN id %% 2 = 0 THEN %s ELSE %s END,
                       dequeued_at = now() - interval '3 seconds',
                       visible_at = now() + interval '27 seconds'
                WHERE id IN (SELECT id FROM {s}.messages WHERE queue = 'emails'
                             ORDER BY priority DESC, id LIMIT 6)""",
            [ids[0], ids[1]],
        )
        dead = conn.execute(
            f"SELECT max(id) FROM {s}.archive WHERE status = 'dead' AND queue = 'billing.invoices'"
        ).fetchone()
        assert dead is not None
        conn.execute(f"VACUUM ANALYZE {s}.messages")
        conn.execute(f"VACUUM ANALYZE {s}.archive")
    return {"dead": int(dead[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: $PGQRS_DSN, else embedded)")
    parser.add_argument("--out", default="docs/dashboard", type=Path)
    args = parser.parse_args()
    dsn = args.dsn or pgqrs.Config.from_env(schema=SCHEMA).dsn
    found = fill(dsn)
    sys.path.insert(0, "tests")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    from _dashboard_server import serving

    options = Options()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options
    )
    config = pgqrs.Config.from_dsn(dsn, schema=SCHEMA, pool_max_size=4)
    args.out.mkdir(parents=True, exist_ok=True)
    shots = [
        ("queues", "/"),
        ("queue", "/queues/emails"),
        ("queue-day", "/queues/billing.invoices?window=day"),
        ("message", f"/messages/{found['dead']}"),
        ("archive", "/archive?status=dead"),
        ("workers", "/workers"),
        ("schedules", "/schedules"),
    ]
    try:
        with serving(create_app(config)) as url:
            for name, path in shots:
                driver.set_window_size(1360, 900)
                driver.get(url + path)
                time.sleep(0.3)
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(1360, min(max(int(height), 700), 1500))
                time.sleep(0.2)
                driver.save_screenshot(str(args.out / f"{name}.png"))
                print(f"saved {args.out / (name + '.png')}")
    finally:
        driver.quit()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')


if __name__ == "__main__":
    main()
