"""The physical limit: pgbench (a C client) running the hand-written statements.

Each step of ``bench.hand`` becomes a pgbench custom script (``-f``) with
literal values, run with ``-n`` (no vacuum), ``-M prepared`` (as psycopg
prepares repeated statements) and ``-c`` clients for ``-T`` seconds
(enqueues) or ``-t`` transactions each (drains, so a backlog never runs dry).
A lease's ids and lease tokens come back with ``\\gset`` and feed the
completing statement, so a drain is the same two round trips as the client's.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass

from bench.server import pgbench_path

LEASE_SELECT = """WITH l AS (UPDATE hand.jobs j SET lease = gen_random_uuid(), \
attempts = j.attempts + 1, visible_at = now() + interval '30 seconds' \
FROM (SELECT id FROM hand.jobs WHERE queue = 'bench' AND visible_at <= now() \
ORDER BY priority DESC, id LIMIT {n} FOR UPDATE SKIP LOCKED) c \
WHERE j.id = c.id RETURNING j.id, j.lease, j.payload) """


def enqueue_script(payloads: list[str]) -> str:
    """One INSERT of ``payloads`` (JSON texts): one row, or an unnest of many."""
    if len(payloads) == 1:
        return (
            "INSERT INTO hand.jobs (queue, payload) "
            f"VALUES ('bench', '{payloads[0]}') RETURNING id;\n"
        )
    array = ",".join(f"'{p}'" for p in payloads)
    return (
        "INSERT INTO hand.jobs (queue, payload) SELECT 'bench', p "
        f"FROM unnest(ARRAY[{array}]::jsonb[]) AS p RETURNING id;\n"
    )


def drain_script(batch: int, complete: str) -> str:
    """Lease ``batch`` jobs, then delete or archive them (fenced by lease)."""
    if batch == 1 and complete == "delete":
        return (
            LEASE_SELECT.format(n=1) + "SELECT id, lease FROM l \\gset\n"
            "DELETE FROM hand.jobs WHERE id = :id AND lease = :lease;\n"
        )
    lease = (
        LEASE_SELECT.format(n=batch) + "SELECT coalesce(string_agg(id::text, ','), '') AS ids, "
        "coalesce(string_agg(lease::text, ','), '') AS leases FROM l \\gset\n"
    )
    pairs = (
        "unnest(string_to_array(:ids, ',')::bigint[], "
        "string_to_array(:leases, ',')::uuid[]) AS t(id, lease)"
    )
    if complete == "delete":
        return (
            lease
            + f"DELETE FROM hand.jobs j USING {pairs} WHERE j.id = t.id AND j.lease = t.lease;\n"
        )
    return lease + (
        f"WITH moved AS (DELETE FROM hand.jobs j USING {pairs} "
        "WHERE j.id = t.id AND j.lease = t.lease RETURNING j.*) "
        "INSERT INTO hand.archive (id, queue, payload, attempts, enqueued_at, status) "
        "SELECT id, queue, payload, attempts, enqueued_at, 'completed' FROM moved;\n"
    )


@dataclass
class PgbenchResult:
    tps: float
    transactions: int

    @property
    def seconds(self) -> float:
        return self.transactions / self.tps if self.tps else 0.0


def run(
    dsn: str,
    script: str,
    clients: int,
    *,
    duration: float | None = None,
    transactions: int | None = None,
) -> PgbenchResult:
    """Run ``script`` on ``clients`` connections; tps excludes connection time."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="pgqrs-bench-") as f:
        f.write(script)
        f.flush()
        cmd = [
            pgbench_path(),
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-f",
            f.name,
        ]
        if duration is not None:
            cmd += ["-T", str(max(1, round(duration)))]
        else:
            cmd += ["-t", str(transactions)]
        cmd.append(dsn)
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = out.stdout + out.stderr
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    done = re.search(r"number of transactions actually processed: (\d+)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    if out.returncode != 0 or not tps or not done or (failed and int(failed[1])):
        raise RuntimeError(f"pgbench failed ({' '.join(cmd[:-1])}):\n{text[-2000:]}")
    return PgbenchResult(float(tps[1]), int(done[1]))
