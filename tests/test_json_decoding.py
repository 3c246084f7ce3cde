"""Decoding json/jsonb results: pgqrs's loader must give what json.loads gives.

``decode_json`` takes shortcuts (the empty object; the decoder's scanner
without its whitespace handling), so these pin that its answer, or its error,
is json.loads's for the texts PostgreSQL sends and for those it could.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import pgqrs
from pgqrs._payload import Undecodable, decode_json

TEXTS = [
    "{}",
    "[]",
    '{"task":"noop","n":5}',
    '{"n": 5, "task": "noop"}',  # jsonb's own output spacing
    " {} ",
    '\n{"a": [1, 2.5, -3e10, true, false, null]}\t',
    '"a string"',
    "12345678901234567890123",
    "1.5",
    "null",
    '{"ünï": "cødé ✓ 🎉", "esc": "\\u00e9\\ud83d\\ude00\\n"}',
    '{"a": {"b": {"c": [[[]]]}}}',
]
BAD = ["", " ", "{", '{"a": 1} x', "[1,]", "{'a': 1}", '{"a": 1}{}']


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("kind", [str, bytes, memoryview])
def test_decode_json_is_json_loads(text: str, kind: type) -> None:
    data: Any = text if kind is str else kind(text.encode("utf-8"))
    assert decode_json(data) == json.loads(text)


@pytest.mark.parametrize("text", BAD)
def test_decode_json_refuses_what_json_loads_refuses(text: str) -> None:
    """Refused without raising: one bad row must not fail a whole result."""
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    got = decode_json(memoryview(text.encode("utf-8")))
    assert isinstance(got, Undecodable)
    assert str(expected.value) in got.reason


def test_pool_connections_decode_json_and_jsonb_columns(config: pgqrs.Config) -> None:
    with pgqrs.make_pool(config) as pool, pool.connection() as conn:
        row = conn.execute(
            """SELECT ' { "a" : [1, 2] } '::json, '{"b": {}, "a": 1}'::jsonb, '{}'::jsonb,
                      NULL::jsonb, '"x"'::json"""
        ).fetchone()
    assert row == ({"a": [1, 2]}, {"a": 1, "b": {}}, {}, None, "x")
