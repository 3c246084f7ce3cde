"""What the job-lifecycle features cost the hot path (issue 16).

    python -m bench.lifecycle_bench [--dsn DSN] [--messages 2000] [--rounds 5]

1. Archiving with the archive's NOTIFY trigger (``archive_notify``), against
   the same statements with the trigger dropped (the reference, same run):
   nobody waiting (the trigger probes the empty ``archive_waiters``), someone
   waiting for another message (the probe finds a row, the join finds none,
   no NOTIFY), and a waiter for every archived message (one NOTIFY per
   statement). Batches of 1 (a lone consumer) and 100 (the worker's
   completer). Rounds alternate, so load drifts hit every variant alike.
2. ``archive_prune`` with nothing to delete: a queue with a retention and
   100,000 fresh archive rows; the time per call and the plan's buffers.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import psycopg

import pgqrs
from bench.server import server

SCHEMA = "pgqrs_lifecycle_bench"
VARIANTS = (
    "no trigger (reference)",
    "nobody waits",
    "another id waited for",
    "every id waited for",
)


def _fill(conn: psycopg.Connection[Any], n: int) -> list[tuple[int, str]]:
    """``n`` leased messages of queue 'q': (id, lease)."""
    conn.execute(
        f"INSERT INTO {SCHEMA}.messages (queue, payload, lease, visible_at, attempts) "
        "SELECT 'q', jsonb_build_object('n', g), gen_random_uuid(), now() + interval '1 hour', 1 "
        "FROM generate_series(1, %s) g",
        [n],
    )
    rows = conn.execute(
        f"SELECT id, lease::text FROM {SCHEMA}.messages WHERE queue = 'q' ORDER BY id"
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def _archive_all(conn: psycopg.Connection[Any], held: list[tuple[int, str]], batch: int) -> float:
    """Seconds to archive ``held`` in statements of ``batch`` messages."""
    sql = (
        f"SELECT * FROM {SCHEMA}.message_archive(%s::bigint[], %s::uuid[], %s::text[], NULL, NULL)"
    )
    t0 = time.perf_counter()
    for start in range(0, len(held), batch):
        chunk = held[start : start + batch]
        conn.execute(
            sql,
            [[i for i, _ in chunk], [lease for _, lease in chunk], ["completed"] * len(chunk)],
        ).fetchall()
    return time.perf_counter() - t0


def _variant(conn: psycopg.Connection[Any], variant: str, ids: list[int]) -> None:
    conn.execute(f"DELETE FROM {SCHEMA}.archive_waiters")
    trigger = "DISABLE" if variant == VARIANTS[0] else "ENABLE"
    conn.execute(f"ALTER TABLE {SCHEMA}.archive {trigger} TRIGGER archive_notify")
    if variant == VARIANTS[2]:
        conn.execute(
            f"INSERT INTO {SCHEMA}.archive_waiters VALUES (-1, now() + interval '1 hour')"
        )
    elif variant == VARIANTS[3]:
        conn.execute(
            f"INSERT INTO {SCHEMA}.archive_waiters SELECT unnest(%s::bigint[]), "
            "now() + interval '1 hour'",
            [ids],
        )


def archive_cost(dsn: str, messages: int, rounds: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The commit's WAL flush costs the same in every variant and, on a
        # shared machine, varies more than what is measured: left out.
        conn.execute("SET synchronous_commit = off")
        listener = psycopg.connect(dsn, autocommit=True)
        listener.execute(f'LISTEN "{SCHEMA}.archived"')  # notifications are delivered somewhere
        for batch in (1, 100):
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(rounds):
                for variant in VARIANTS:
                    conn.execute(f"TRUNCATE {SCHEMA}.messages, {SCHEMA}.archive")
                    held = _fill(conn, messages)
                    _variant(conn, variant, [i for i, _ in held])
                    times[variant].append(_archive_all(conn, held, batch) / messages)
                    for _ in listener.notifies(timeout=0.01):
                        pass
            ref = statistics.median(times[VARIANTS[0]])
            print(f"\narchive, batches of {batch} ({messages} messages x {rounds} rounds):")
            for variant in VARIANTS:
                med = statistics.median(times[variant])
                print(f"  {variant:<26} {med * 1e6:8.1f} us/message   x{med / ref:5.2f}")
        listener.close()
        conn.execute(f"ALTER TABLE {SCHEMA}.archive ENABLE TRIGGER archive_notify")


def prune_cost(dsn: str, calls: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {SCHEMA}.messages, {SCHEMA}.archive")
        conn.execute(
            f"INSERT INTO {SCHEMA}.archive (id, queue, payload, priority, attempts, enqueued_at, "
            "headers, status) SELECT g, CASE WHEN g % 2 = 0 THEN 'q' ELSE 'other' END, '1', 0, 1, "
            "now(), '{}', 'completed' FROM generate_series(1, 100000) g"
        )
        # Old rows of another queue: the scan must not wade through them.
        conn.execute(
            f"UPDATE {SCHEMA}.archive SET archived_at = now() - interval '30 days' "
            "WHERE queue = 'other'"
        )
        conn.execute(f"ANALYZE {SCHEMA}.archive")
        conn.execute(f"UPDATE {SCHEMA}.queues SET archive_retention = interval '7 days'")
        sql = f"SELECT * FROM {SCHEMA}.archive_prune('q', 1000)"
        for _ in range(20):  # warm the plan cache
            conn.execute(sql).fetchall()
        t0 = time.perf_counter()
        for _ in range(calls):
            assert conn.execute(sql).fetchone() == (0,)
        per_call = (time.perf_counter() - t0) / calls
        conn.execute(f"UPDATE {SCHEMA}.queues SET archive_retention = NULL")
        t0 = time.perf_counter()
        for _ in range(calls):
            assert conn.execute(sql).fetchone() == (None,)
        no_retention = (time.perf_counter() - t0) / calls
        t0 = time.perf_counter()
        for _ in range(calls):
            conn.execute("SELECT 1").fetchall()
        select_one = (time.perf_counter() - t0) / calls
        # The statements archive_prune runs: the probe (nothing to delete
        # stops there), and the candidate scan when 'other' is pruned.
        explain = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) "
        plan = conn.execute(
            f"{explain}SELECT min(a.archived_at) FROM {SCHEMA}.archive a WHERE a.queue = 'q'"
        ).fetchall()
        plan += conn.execute(
            f"{explain}SELECT o.id FROM {SCHEMA}.archive o "
            "WHERE (o.queue, o.archived_at) >= ('other', now() - interval '31 days') "
            "AND (o.queue, o.archived_at) < ('other', now() - interval '7 days') "
            "ORDER BY o.queue, o.archived_at LIMIT 1000"
        ).fetchall()
        print(f"\narchive_prune with nothing to delete (100,000 archive rows, {calls} calls):")
        print(f"  retention set, nothing old enough  {per_call * 1e6:8.1f} us/call")
        print(f"  no retention                       {no_retention * 1e6:8.1f} us/call")
        print(f"  SELECT 1 (round trip reference)    {select_one * 1e6:8.1f} us/call")
        print("  plans of its probe, and of its candidate scan when there is something to delete:")
        for (line,) in plan:
            print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prune-calls", type=int, default=500)
    args = parser.parse_args()
    with server(args.dsn) as dsn:
        config = pgqrs.Config(dsn=dsn, schema=SCHEMA)
        with pgqrs.Admin(config) as admin:
            admin.uninstall()
            admin.install()
            admin.create_queue("q")
            admin.create_queue("other")
        archive_cost(dsn, args.messages, args.rounds)
        prune_cost(dsn, args.prune_calls)
        with pgqrs.Admin(config) as admin:
            admin.uninstall()


if __name__ == "__main__":
    main()
