"""Time one Prometheus scrape (pgqrs.prometheus) with 1,000,000 messages waiting.

    python -m bench.metrics_scrape [--dsn DSN] [--messages 1000000] [--scrapes 20]

Fills one queue with the messages (one INSERT ... generate_series), plus a few
small queues, an archive and workers; ANALYZEs; then times the collector's
statement, and queue_stats' full count of the same queue for comparison, and
prints the scrape's plan buffers (it must not read the whole table).
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

import pgqrs
from bench.server import server
from pgqrs.prometheus import QueueHealthCollector

SCHEMA = "pgqrs_metrics_bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args()
    with server(args.dsn) as dsn:
        config = pgqrs.Config(dsn=dsn, schema=SCHEMA)
        with pgqrs.Admin(config) as admin:
            admin.uninstall()
            admin.install()
            for name in ("big", "small-a", "small-b"):
                admin.create_queue(name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            t0 = time.perf_counter()
            conn.execute(
                f"INSERT INTO {SCHEMA}.messages (queue, payload, visible_at) "
                "SELECT 'big', jsonb_build_object('n', g), "
                "CASE WHEN g %% 10 = 0 THEN now() + interval '1 hour' ELSE now() END "
                "FROM generate_series(1, %s) g",
                [args.messages],
            )
            conn.execute(
                f"INSERT INTO {SCHEMA}.messages (queue, payload) "
                "SELECT q, '1' FROM unnest(ARRAY['small-a', 'small-b']) q, generate_series(1, 100)"
            )
            conn.execute(
                f"INSERT INTO {SCHEMA}.archive (id, queue, payload, priority, attempts, "
                "enqueued_at, headers, status) SELECT -g, 'big', '1', 0, 1, now(), '{}', "
                "CASE WHEN g % 5 = 0 THEN 'dead' ELSE 'completed' END "
                "FROM generate_series(1, 100000) g"
            )
            conn.execute(f"VACUUM ANALYZE {SCHEMA}.messages")
            conn.execute(f"VACUUM ANALYZE {SCHEMA}.archive")
            print(f"filled {args.messages:,} messages in {time.perf_counter() - t0:.1f}s")
            plan = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                + pgqrs._sql.queries(SCHEMA)["metrics_scrape"]
                .replace("$1", "10000")
                .replace("$2", "60")
            ).fetchone()
            assert plan is not None
            top = plan[0][0]
            shared = top["Plan"].get("Shared Hit Blocks", 0) + top["Plan"].get(
                "Shared Read Blocks", 0
            )
            pages = conn.execute(
                f"SELECT relpages FROM pg_class WHERE oid = '{SCHEMA}.messages'::regclass"
            ).fetchone()
            assert pages is not None
            print(f"scrape plan: {shared:,} buffers touched; messages table: {pages[0]:,} pages")

        collector = QueueHealthCollector(config)
        collector.scrape()  # connect
        times = []
        for _ in range(args.scrapes):
            t = time.perf_counter()
            rows = collector.scrape()
            times.append(time.perf_counter() - t)
        collector.close()
        ready = next(v for m, q, label, v in rows if (m, q, label) == ("messages", "big", "ready"))
        print(
            f"scrape: median {statistics.median(times) * 1000:.1f} ms, "
            f"max {max(times) * 1000:.1f} ms over {args.scrapes} (big ready ~ {ready:,.0f})"
        )
        with pgqrs.Admin(config) as admin:
            t = time.perf_counter()
            stats = admin.queue_stats("big")
            full = time.perf_counter() - t
            print(
                f"for comparison, queue_stats('big') (exact, full count): {full * 1000:.0f} ms, "
                f"ready {stats.ready:,}"
            )
            admin.uninstall()


if __name__ == "__main__":
    main()
