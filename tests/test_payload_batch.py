"""The batch encoder (issue 21): one encoder call and one check for a whole
enqueue_batch, with exactly the per-payload encoder's results and errors.

``encode_payloads`` takes a fast path for the usual batch and falls back to
``encode_payload`` per payload whenever it is not sure; these tests hold it
to the per-payload answer on generated JSON values and on the edges of each
rule (depth, long numbers, escapes, size), and check through a real server
that a rule broken in one payload of a batch stores nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pgqrs
from pgqrs._payload import MAX_DEPTH, encode_payload, encode_payloads

LIMIT = 1 << 20

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab[]{}"\\\x00\x01é€😀\ud800'), max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet='k[{"\\', max_size=3), children, max_size=4)
    ),
    max_leaves=30,
)


def per_payload(payloads: list[Any], limit: int = LIMIT) -> str:
    """The reference: encode_payload on each, joined; or the error's text."""
    try:
        return "[" + ",".join(encode_payload(p, limit) for p in payloads) + "]"
    except pgqrs.PayloadError as exc:
        return f"error: {exc}"


def batched(payloads: list[Any], limit: int = LIMIT) -> str:
    try:
        return encode_payloads(payloads, limit)
    except pgqrs.PayloadError as exc:
        return f"error: {exc}"


def nested(levels: int) -> Any:
    value: Any = 1
    for i in range(levels):
        value = [value] if i % 2 else {"a": value}
    return value


@settings(max_examples=400, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=6))
def test_the_batch_encoder_agrees_with_the_per_payload_one(payloads: list[Any]) -> None:
    assert batched(payloads) == per_payload(payloads)


@pytest.mark.parametrize(
    ("payloads", "fails"),
    [
        pytest.param([{"n": i} for i in range(200)], False, id="many-flat-dicts"),
        pytest.param([nested(MAX_DEPTH)] * 3, False, id="depth-64-each"),
        pytest.param([{"a": 1}, nested(MAX_DEPTH + 1)], True, id="depth-65-in-one"),
        pytest.param([{"s": "[" * 200}, {"s": "{" * 200}], False, id="brackets-in-strings"),
        pytest.param([{'k"[': '\\"[{'}] * 100, False, id="escaped-quotes-and-brackets"),
        pytest.param([{"n": 10**308}] * 2, False, id="309-digits-in-range"),
        pytest.param([{"n": 1}, {"n": 2 * 10**308}], True, id="number-beyond-a-double"),
        pytest.param([{"s": "9" * 400}], False, id="long-digits-in-a-string"),
        pytest.param([{"s": "a\x00b"}], True, id="nul"),
        pytest.param([{"s": "\ud800"}], True, id="lone-surrogate"),
        pytest.param([{"s": "\n\t\x01"}] * 3, False, id="control-escapes"),
        pytest.param([{"x": float("nan")}], True, id="nan"),
        pytest.param([{"x": object()}], True, id="unencodable"),
        pytest.param(["{}", {"a": 1}], False, id="json-text-and-dict"),
        pytest.param(['{"a": [1,', "2]}"], True, id="json-text-split-across-payloads"),
        pytest.param([b"{}"], True, id="bytes"),
        pytest.param([(1, 2), 3.5, None, True], False, id="tuple-and-scalars"),
    ],
)
def test_the_batch_encoder_at_each_rules_edge(payloads: list[Any], fails: bool) -> None:
    got, want = batched(payloads), per_payload(payloads)
    assert got == want
    assert got.startswith("error: ") == fails, got
    if not fails:
        assert len(json.loads(got)) == len(payloads)


def test_the_size_limit_is_per_payload_not_per_batch() -> None:
    payloads = [{"s": "x" * 90} for _ in range(50)]  # each ~100 bytes, ~5,000 in all
    assert batched(payloads, 200) == per_payload(payloads, 200)
    assert not batched(payloads, 200).startswith("error")
    assert batched([*payloads, {"s": "x" * 300}], 200).startswith("error: payload is 308 bytes")


def test_a_batch_with_one_bad_payload_stores_nothing(config: pgqrs.Config, queue: str) -> None:
    with pgqrs.Producer(config, queue) as producer, pgqrs.Consumer(config, queue) as consumer:
        _one_bad_payload(producer, consumer)


def _one_bad_payload(producer: pgqrs.Producer, consumer: pgqrs.Consumer) -> None:
    with pytest.raises(pgqrs.PayloadError, match="nested deeper than 64 levels"):
        producer.enqueue_batch([{"ok": i} for i in range(99)] + [nested(MAX_DEPTH + 1)])
    assert consumer.dequeue(batch=100) == []
    # At the limit: a payload 64 deep in a batch (its array is 65 deep).
    payloads = [{"ok": i} for i in range(99)] + [nested(MAX_DEPTH)]
    sent = producer.enqueue_batch(payloads)
    assert [m.payload for m in sent] == payloads
    got = consumer.dequeue(batch=100)
    assert [m.payload for m in got] == payloads
