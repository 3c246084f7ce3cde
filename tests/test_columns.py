"""The hot statements' rows are read by position (pgqrs._ops *_COLUMNS): pin them.

Their rows come back as tuples because a dict per row cost a fifth of the
client's work per message; this test is what keeps the positions honest
against the functions' declared columns and Message's fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
import pytest

import pgqrs
from pgqrs._ops import (
    DEQUEUE_COLUMNS,
    ENQUEUE_COLUMNS,
    FAIL_COLUMNS,
    FENCED_COLUMNS,
    INSERT_COLUMNS,
    FailOutcome,
)
from pgqrs._sql import queries

EMPTY = "{}"
CALLS: dict[str, tuple[tuple[str, ...], list[Any]]] = {
    "message_dequeue": (DEQUEUE_COLUMNS, ["no_such_queue", 1, None, None]),
    "message_insert": (INSERT_COLUMNS, ["no_such_queue", "[1]", 0, None, None, None, None]),
    "message_enqueue": (
        ENQUEUE_COLUMNS,
        ["no_such_queue", ["1"], [0], [None], [None], [None], [None], [None]],
    ),
    "message_archive": (FENCED_COLUMNS, [EMPTY, EMPTY, EMPTY, None, None]),
    "message_delete": (FENCED_COLUMNS, [EMPTY, EMPTY]),
    "message_extend": (FENCED_COLUMNS, [EMPTY, EMPTY, 1.0]),
    "message_release": (FENCED_COLUMNS, [EMPTY, EMPTY, EMPTY, None, None]),
    "message_fail": (FAIL_COLUMNS, [EMPTY, EMPTY, None, None, None, 1.0, 2.0, 0.0]),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_result_columns_match_the_positions_the_client_reads(
    name: str, config: pgqrs.Config, admin: pgqrs.Admin
) -> None:
    expected, params = CALLS[name]
    with psycopg.connect(config.dsn, autocommit=True) as conn:
        cur = psycopg.RawCursor(conn)
        cur.execute(queries(config.schema)[name], params)
        assert cur.description is not None
        assert tuple(c.name for c in cur.description) == expected


def test_message_fields_follow_the_dequeue_columns() -> None:
    """dequeue_result builds Message(*row[1:13]) (then its group from group_key)
    and enqueue_result Message(*row) (then the group sent)."""
    fields = tuple(f.name for f in dataclasses.fields(pgqrs.Message))
    assert fields[:12] == DEQUEUE_COLUMNS[1:13]
    assert DEQUEUE_COLUMNS[13:] == ("group_key", "retry_after")
    assert fields[: len(ENQUEUE_COLUMNS)] == ENQUEUE_COLUMNS
    # The fields after them (the group, progress, the worker's cancel flag,
    # the owner) are not in those rows: each has a default.
    rest = dataclasses.fields(pgqrs.Message)[len(ENQUEUE_COLUMNS) :]
    assert [f.name for f in rest] == ["group", "progress", "_cancel_requested", "_owner"]
    assert all(f.default is not dataclasses.MISSING for f in rest)


def test_fail_outcome_fields_follow_the_fail_columns() -> None:
    """fail_result builds FailOutcome(*row)."""
    assert tuple(f.name for f in dataclasses.fields(FailOutcome)) == FAIL_COLUMNS
