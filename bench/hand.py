"""The reference: a minimal hand-written psycopg 3 client doing pgqrs's steps.

What a careful developer would write without a library: one table of jobs
with the same columns the steps need and the same delivery-order index, an
archive table, and one statement per step (psycopg's defaults, so repeated
statements are prepared after 5 uses). Its archive (``ARCHIVE_MANY``: the
lease-fenced ``DELETE ... RETURNING`` feeding ``INSERT INTO archive``, ids
and leases as two arrays) is the reference for ``archive``/``archive_batch``;
its batch enqueue has two forms, the ``unnest`` of a ``jsonb[]`` (``hand``,
kept so the history stays comparable) and the stronger one-parameter
``jsonb_array_elements`` (``hand-param``), with COPY (``hand-copy``) for bulk
loads. It has no fencing beyond the lease check, no dedup, no
dead-lettering, no NOTIFY and no foreign key: the price of those is exactly
what pgqrs's ratio to this client shows.

The same statements, with literal values, are what pgbench runs
(``bench.pgbench``).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

SCHEMA_SQL = """
DROP SCHEMA IF EXISTS hand CASCADE;
CREATE SCHEMA hand;
CREATE TABLE hand.jobs (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text        NOT NULL,
    payload     jsonb       NOT NULL,
    priority    integer     NOT NULL DEFAULT 0,
    visible_at  timestamptz NOT NULL DEFAULT now(),
    attempts    integer     NOT NULL DEFAULT 0,
    lease       uuid,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_dequeue_idx ON hand.jobs (queue, priority DESC, id);
CREATE TABLE hand.archive (
    id          bigint      PRIMARY KEY,
    queue       text        NOT NULL,
    payload     jsonb       NOT NULL,
    attempts    integer     NOT NULL,
    enqueued_at timestamptz NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    status      text        NOT NULL
);
"""

ENQUEUE = "INSERT INTO hand.jobs (queue, payload) VALUES (%s, %s) RETURNING id"
#: W1's extra reference: the same INSERT plus the one NOTIFY pgqrs sends per
#: statement when a worker listens, to show what NOTIFY itself costs
#: (PostgreSQL serializes the commits of notifying transactions).
ENQUEUE_NOTIFY = (
    "INSERT INTO hand.jobs (queue, payload) VALUES (%s, %s) "
    "RETURNING id, (SELECT pg_notify('hand.enqueue', 'bench')) IS NULL"
)
ENQUEUE_BATCH = (
    "INSERT INTO hand.jobs (queue, payload) SELECT %s, p FROM unnest(%s::jsonb[]) AS p RETURNING id"
)
#: W2's stronger reference (``hand-param``): the whole batch as one jsonb
#: parameter (one JSON text, no per-element array quoting), ids returned.
ENQUEUE_BATCH_PARAM = (
    "INSERT INTO hand.jobs (queue, payload) SELECT %s, jsonb_array_elements(%s) RETURNING id"
)
#: W2's bulk-load reference (``hand-copy``): COPY, no ids returned.
ENQUEUE_COPY = "COPY hand.jobs (queue, payload) FROM STDIN"
LEASE = """
UPDATE hand.jobs j
SET lease = gen_random_uuid(), attempts = j.attempts + 1,
    visible_at = now() + interval '30 seconds'
FROM (SELECT id FROM hand.jobs
      WHERE queue = %s AND visible_at <= now()
      ORDER BY priority DESC, id
      LIMIT %s
      FOR UPDATE SKIP LOCKED) c
WHERE j.id = c.id
RETURNING j.id, j.lease, j.payload
"""
DELETE_ONE = "DELETE FROM hand.jobs WHERE id = %s AND lease = %s"
DELETE_MANY = """
DELETE FROM hand.jobs j
USING unnest(%s::bigint[], %s::uuid[]) AS t(id, lease)
WHERE j.id = t.id AND j.lease = t.lease
"""
ARCHIVE_MANY = """
WITH moved AS (
    DELETE FROM hand.jobs j
    USING unnest(%s::bigint[], %s::uuid[]) AS t(id, lease)
    WHERE j.id = t.id AND j.lease = t.lease
    RETURNING j.*
)
INSERT INTO hand.archive (id, queue, payload, attempts, enqueued_at, status)
SELECT id, queue, payload, attempts, enqueued_at, 'completed' FROM moved
"""


def install(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)


class HandClient:
    """One connection (autocommit: each statement is its own transaction)."""

    def __init__(self, dsn: str, queue: str, *, notify: bool = False, prepare: bool = True) -> None:
        # prepare=False: W1's "hand-unprepared" reference, the same client under
        # pgqrs's constraint (no server-side prepared statements, for pgBouncer).
        self.conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=5 if prepare else None)
        self.queue = queue
        self._enqueue = ENQUEUE_NOTIFY if notify else ENQUEUE

    def close(self) -> None:
        self.conn.close()

    def enqueue(self, payload: Any) -> int:
        row = self.conn.execute(self._enqueue, (self.queue, Jsonb(payload))).fetchone()
        assert row is not None
        return int(row[0])

    def enqueue_batch(self, payloads: list[Any]) -> list[int]:
        cur = self.conn.execute(ENQUEUE_BATCH, (self.queue, [Jsonb(p) for p in payloads]))
        return [r[0] for r in cur.fetchall()]

    def enqueue_batch_param(self, payloads: list[Any]) -> list[int]:
        cur = self.conn.execute(ENQUEUE_BATCH_PARAM, (self.queue, Jsonb(payloads)))
        return [r[0] for r in cur.fetchall()]

    def enqueue_copy(self, payloads: list[Any]) -> None:
        # COPY's text format, written in one piece: JSON text holds no raw tab
        # or newline, so only backslashes need doubling. Measured against
        # write_row with a Jsonb per row: 6.0-7.0 us of client CPU per job
        # against 6.2-9.6, and as fast or faster.
        head = self.queue + "\t"
        data = "".join([head + json.dumps(p).replace("\\", "\\\\") + "\n" for p in payloads])
        with self.conn.cursor() as cur, cur.copy(ENQUEUE_COPY) as copy:
            copy.write(data)

    def lease(self, n: int) -> list[tuple[int, Any, Any]]:
        return self.conn.execute(LEASE, (self.queue, n)).fetchall()

    def delete(self, rows: list[tuple[int, Any, Any]]) -> None:
        if len(rows) == 1:
            self.conn.execute(DELETE_ONE, (rows[0][0], rows[0][1]))
        else:
            self.conn.execute(DELETE_MANY, ([r[0] for r in rows], [r[1] for r in rows]))

    def archive(self, rows: list[tuple[int, Any, Any]]) -> None:
        self.conn.execute(ARCHIVE_MANY, ([r[0] for r in rows], [r[1] for r in rows]))
