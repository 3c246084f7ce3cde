"""Hostile input: every bad value gets a typed pgqrs error, and the catalog is untouched.

Queue names are data (never identifiers), payloads are checked before any
round trip, and DSNs are parsed before a connection is tried. Here hypothesis
throws quotes, ``%``, ``;--``, NUL, very long and multibyte names, huge, deep
and broken payloads and malformed DSNs at the public API: each call either
works (and a payload then round-trips exactly) or raises a ``pgqrs.Error``
subclass; any other exception (a raw psycopg error, RecursionError, ...) fails
the test. Afterwards pg_class and pg_namespace are compared with a snapshot.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pgqrs

T = TypeVar("T")

VALID_QUEUE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
HOSTILE_NAMES = [
    "",
    "'",
    '"',
    "tasks'; DROP TABLE messages;--",
    'x"; DROP SCHEMA public CASCADE;--',
    "%s",
    "%(name)s",
    "100%",
    ";--",
    "a\x00b",
    "\x00",
    "tasks\n",
    " tasks",
    "t" * 129,
    "q" * 10_000,
    "é",
    "队列",
    "emoji🙂",
    "\ud800",
    "$1",
    "a b",
    "a/b",
    "a\\b",
]
FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

Snapshot = list[tuple[Any, ...]]


def catalog(conn: psycopg.Connection[Any]) -> tuple[Snapshot, Snapshot]:
    """Every relation and namespace in the database, by name."""
    classes = conn.execute(
        "SELECT n.nspname, c.relname, c.relkind, c.relowner::regrole::text "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY 1, 2"
    ).fetchall()
    spaces = conn.execute(
        "SELECT nspname, nspowner::regrole::text FROM pg_namespace ORDER BY 1"
    ).fetchall()
    return classes, spaces


@pytest.fixture
def unchanged_catalog(sql: psycopg.Connection[Any], queue: str) -> Iterator[None]:
    """Fails the test when the catalog differs after it from before it."""
    before = catalog(sql)
    yield
    after = catalog(sql)
    assert after == before, "hostile input changed the catalog"


def typed(call: Callable[[], T]) -> T | pgqrs.Error:
    """Run ``call``; a pgqrs.Error is an accepted answer, anything else propagates."""
    try:
        return call()
    except pgqrs.Error as exc:
        assert str(exc), "a pgqrs error must say what is wrong"
        return exc


# --- queue names --------------------------------------------------------------

hostile_names = st.one_of(
    st.sampled_from(HOSTILE_NAMES),
    st.text(max_size=200),
    st.text(alphabet=st.sampled_from("'\"%;-\\\x00$ é队🙂"), min_size=1, max_size=20),
    st.text(alphabet=st.sampled_from("abc_"), min_size=129, max_size=400),
).filter(lambda s: not VALID_QUEUE.fullmatch(s))


@FAST
@given(name=hostile_names)
def test_hostile_queue_names_are_refused_everywhere(
    name: str, admin: pgqrs.Admin, config: pgqrs.Config, unchanged_catalog: None
) -> None:
    with pytest.raises(pgqrs.InvalidQueueName):
        admin.create_queue(name)
    for op in (
        admin.get_queue,
        admin.delete_queue,
        admin.purge_queue,
        admin.queue_stats,
        admin.peek,
    ):
        with pytest.raises(pgqrs.InvalidQueueName):
            op(name)
    with pytest.raises(pgqrs.InvalidQueueName):
        admin.list_archive(name)
    with pytest.raises(pgqrs.InvalidQueueName):
        pgqrs.Producer(config, name)
    with pytest.raises(pgqrs.InvalidQueueName):
        pgqrs.Consumer(config, name)


def test_unknown_valid_names_get_queue_not_found(
    admin: pgqrs.Admin, config: pgqrs.Config, unchanged_catalog: None
) -> None:
    for name in ("nope", "x" * 128, "a:b.c-d_e"):
        with pytest.raises(pgqrs.QueueNotFound):
            admin.get_queue(name)
        with pgqrs.Producer(config, name) as p, pytest.raises(pgqrs.QueueNotFound):
            p.enqueue({"a": 1})
        with pgqrs.Consumer(config, name) as c, pytest.raises(pgqrs.QueueNotFound):
            c.dequeue()


def test_names_are_data_not_sql(admin: pgqrs.Admin, sql: psycopg.Connection[Any]) -> None:
    """The longest legal name, with every legal punctuation, works end to end."""
    name = ("a:b.c-d_E9" * 13)[:128]
    admin.create_queue(name)
    with pgqrs.Producer(admin.config, name) as p, pgqrs.Consumer(admin.config, name) as c:
        p.enqueue({"x": 1})
        msg = c.dequeue()
        assert msg is not None
        c.archive(msg)
    assert admin.queue_stats(name).archived == {"completed": 1}


# --- payloads -----------------------------------------------------------------

json_text = st.text(
    alphabet=st.characters(codec=None), max_size=30
)  # includes NUL and lone surrogates
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | json_text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(json_text, inner, max_size=5),
    max_leaves=30,
)


def as_json(value: Any) -> Any:
    """``value`` with every number as a float: jsonb keeps numbers as decimal
    text (numeric), so 2.2e16 comes back as the int 22000000000000000."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return {k: as_json(v) for k, v in value.items()}


def has_bad_text(value: Any) -> bool:
    """Whether ``value`` holds text jsonb cannot store, or a number JSON cannot express."""
    if isinstance(value, str):
        return "\x00" in value or any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(has_bad_text(v) for v in value)
    if isinstance(value, dict):
        return any(has_bad_text(k) or has_bad_text(v) for k, v in value.items())
    return False


@FAST
@given(payload=json_values)
def test_any_payload_round_trips_or_gets_payload_error(
    payload: Any, admin: pgqrs.Admin, queue: str, unchanged_catalog: None
) -> None:
    with pgqrs.Producer(admin.config, queue) as p, pgqrs.Consumer(admin.config, queue) as c:
        if isinstance(payload, str):
            payload = {"s": payload}  # a bare str is taken as JSON text; see the text test
        answer = typed(lambda: p.enqueue(payload, headers={"h": payload}))
        if has_bad_text(payload):
            assert isinstance(answer, pgqrs.PayloadError), answer
            return
        assert isinstance(answer, pgqrs.Message), answer
        msg = c.dequeue()
        assert msg is not None and msg.id == answer.id
        assert as_json(msg.payload) == as_json(payload)
        assert as_json(msg.headers) == as_json({"h": payload})
        c.archive(msg, result=payload)
        assert as_json(admin.list_archive(queue, limit=1)[0].result) == as_json(payload)


@FAST
@given(
    text=st.one_of(
        st.text(max_size=50), st.sampled_from(["\\u0000", '"\\ud800"', "1e999999", "[1,]", "'x'"])
    )
)
def test_str_payloads_must_be_json_text(
    text: str, admin: pgqrs.Admin, queue: str, unchanged_catalog: None
) -> None:
    with pgqrs.Producer(admin.config, queue) as p:
        answer = typed(lambda: p.enqueue(text))
        try:
            json.loads(text)
            parses = True
        except (ValueError, RecursionError):
            parses = False
        if not parses:
            assert isinstance(answer, pgqrs.PayloadError), answer


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"a": "x" * (1024 * 1024)}, id="over-1MiB"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="deep-json-text"),
        pytest.param('"' + "\\u0000" + '"', id="nul-escape-text"),
        pytest.param('{"k":"\\ud83d"}', id="lone-surrogate-escape-text"),
        pytest.param({"k\x00": 1}, id="nul-in-key"),
        pytest.param({"k": "\udfff"}, id="lone-surrogate"),
        pytest.param(float("nan"), id="nan"),
        pytest.param({1, 2}, id="set"),
        pytest.param(b"\x00bytes", id="bytes"),
        pytest.param(object(), id="object"),
        pytest.param("1e1000000", id="numeric-overflow-text"),
    ],
)
def test_bad_payloads_get_payload_error(
    payload: Any, admin: pgqrs.Admin, queue: str, unchanged_catalog: None
) -> None:
    with pgqrs.Producer(admin.config, queue) as p:
        with pytest.raises(pgqrs.PayloadError):
            p.enqueue(payload)
        with pytest.raises(pgqrs.PayloadError):
            p.enqueue_batch([{"ok": 1}, payload])
    assert admin.queue_stats(queue).ready == 0, "a refused batch must insert nothing"


def test_deeply_nested_objects(admin: pgqrs.Admin, queue: str, unchanged_catalog: None) -> None:
    deep: Any = 1
    for _ in range(200_000):
        deep = [deep]
    with pgqrs.Producer(admin.config, queue) as p:
        with pytest.raises(pgqrs.PayloadError):
            p.enqueue(deep)
        # The payload rules (docs/payloads.md): 64 levels at most.
        fine: Any = 1
        for _ in range(64):
            fine = {"n": fine}
        assert p.enqueue(fine).payload == fine
        with pytest.raises(pgqrs.PayloadError, match="64 levels"):
            p.enqueue({"n": fine})


def test_huge_payload_within_the_limit_round_trips(admin: pgqrs.Admin, queue: str) -> None:
    payload = {"blob": "é" * 400_000, "list": list(range(20_000))}
    with pgqrs.Producer(admin.config, queue) as p, pgqrs.Consumer(admin.config, queue) as c:
        p.enqueue(payload)
        msg = c.dequeue()
        assert msg is not None and msg.payload == payload


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda p, c: p.enqueue({}, dedup_key="a\x00b"), id="dedup-nul"),
        pytest.param(lambda p, c: p.enqueue({}, dedup_key="k" * 513), id="dedup-long"),
        pytest.param(lambda p, c: p.enqueue({}, priority=2**31), id="priority-overflow"),
        pytest.param(lambda p, c: p.enqueue({}, delay=float("nan")), id="delay-nan"),
        pytest.param(lambda p, c: p.enqueue({}, delay=-1), id="delay-negative"),
        pytest.param(lambda p, c: p.enqueue({}, delay=float("inf")), id="delay-inf"),
        pytest.param(lambda p, c: p.enqueue({}, headers={"h": "\x00"}), id="headers-nul"),
        pytest.param(lambda p, c: p.enqueue({}, headers={1: "x"}), id="headers-key"),
        pytest.param(lambda p, c: p.enqueue_batch([]), id="empty-batch"),
        pytest.param(lambda p, c: c.dequeue(batch=0), id="batch-zero"),
        pytest.param(lambda p, c: c.dequeue(batch=10**9), id="batch-huge"),
        pytest.param(lambda p, c: c.dequeue(visibility_timeout=float("inf")), id="vt-inf"),
        pytest.param(lambda p, c: c.dequeue(visibility_timeout=10**300), id="vt-huge"),
        pytest.param(lambda p, c: c.archive(12345), id="archive-unleased"),
        pytest.param(lambda p, c: c.archive(-1), id="archive-negative"),
        pytest.param(lambda p, c: c.archive(forged(id="1}{2")), id="archive-forged-id"),
        pytest.param(lambda p, c: c.delete(forged(lease="x,y")), id="delete-forged-lease"),
    ],
)
def test_bad_arguments_get_typed_errors(
    call: Callable[[pgqrs.Producer, pgqrs.Consumer], Any],
    admin: pgqrs.Admin,
    queue: str,
    unchanged_catalog: None,
) -> None:
    with (
        pgqrs.Producer(admin.config, queue) as p,
        pgqrs.Consumer(admin.config, queue) as c,
        pytest.raises(pgqrs.Error),
    ):
        call(p, c)


@FAST
@given(status=st.text(max_size=40).filter(lambda s: not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", s)))
def test_hostile_archive_statuses(
    status: str, admin: pgqrs.Admin, queue: str, unchanged_catalog: None
) -> None:
    with pgqrs.Producer(admin.config, queue) as p, pgqrs.Consumer(admin.config, queue) as c:
        p.enqueue({})
        msg = c.dequeue()
        assert msg is not None
        with pytest.raises(pgqrs.InvalidArgument):
            c.archive(msg, status)
        with pytest.raises(pgqrs.InvalidArgument):
            admin.list_archive(queue, status=status)
        c.release(msg)


# --- DSNs and schema names ----------------------------------------------------

MALFORMED_DSNS = [
    "",
    "   ",
    "postgresql://",
    "postgres://user:pa:ss@host:notaport/db",
    "postgresql://localhost:99999/db",
    "postgresql://[::1/db",
    "host=",
    "host='unterminated",
    "nonsense_key=1",
    "dbname=x connect_timeout=abc",
    "mysql://root@localhost/db",
    "postgresql://u@/db?host=/nonexistent/socket/dir",
    "postgresql://u@/db?sslmode=bogus",
    "host=/tmp\x00 dbname=x",
    "=",
    "%",
    "postgresql://%zz@host/db",
]


@pytest.mark.parametrize("dsn", MALFORMED_DSNS)
def test_malformed_dsns_get_typed_errors(dsn: str) -> None:
    try:
        config = pgqrs.Config.from_dsn(dsn, schema="hostile_dsn", connect_timeout=1)
    except pgqrs.ConfigError as exc:
        assert "DSN" in str(exc) or "dsn" in str(exc), "the error must say the DSN is the problem"
        return
    # Parsed, but unusable: the failure comes when connecting, still typed.
    with (
        pytest.raises((pgqrs.ConnectionFailed, pgqrs.ConfigError)),
        pgqrs.Admin(config) as admin,
    ):
        admin.install()


@FAST
@given(
    dsn=st.one_of(
        st.text(max_size=80), st.builds(lambda s: "postgresql://" + s, st.text(max_size=60))
    )
)
def test_random_dsns_parse_or_get_config_error(dsn: str) -> None:
    typed(lambda: pgqrs.Config.from_dsn(dsn))


def test_dsn_password_is_masked_in_errors() -> None:
    config = pgqrs.Config.from_dsn(
        "postgresql://u:s3cr3t@127.0.0.1:1/db", schema="hostile_dsn", connect_timeout=1
    )
    with pytest.raises(pgqrs.ConnectionFailed) as caught, pgqrs.Admin(config) as admin:
        admin.install()
    assert "s3cr3t" not in str(caught.value)


@FAST
@given(schema=st.text(max_size=60).filter(lambda s: not re.fullmatch(r"[a-z_][a-z0-9_]{0,47}", s)))
def test_hostile_schema_names_get_config_error(schema: str, dsn: str) -> None:
    with pytest.raises(pgqrs.ConfigError):
        pgqrs.Config.from_dsn(dsn, schema=schema)


def forged(**fields: Any) -> pgqrs.Message:
    """A Message built by hand with a field of the wrong type."""
    now = datetime.datetime.now(datetime.timezone.utc)
    values: dict[str, Any] = {
        "id": 1, "queue": "q", "payload": {}, "priority": 0, "attempts": 1,
        "enqueued_at": now, "dequeued_at": now, "visible_until": now, "headers": {},
        "lease": uuid.uuid4(),
    }  # fmt: skip
    values.update(fields)
    return pgqrs.Message(**values)


@pytest.mark.parametrize(
    "fields", [{"id": "1}{2"}, {"id": True}, {"lease": "x,y"}], ids=["id-str", "id-bool", "lease"]
)
def test_hand_built_messages_are_refused_before_any_round_trip(
    fields: dict[str, Any], admin: pgqrs.Admin, queue: str
) -> None:
    """Ids and leases travel as array literals: a wrong type must not reach the server."""
    with pgqrs.Consumer(admin.config, queue) as c:
        for settle in (c.archive, c.delete, c.release):
            with pytest.raises(pgqrs.InvalidArgument, match=r"message (id|lease) must be"):
                settle(forged(**fields))


def test_a_list_given_to_a_single_message_call_names_the_batch_call(
    admin: pgqrs.Admin, queue: str
) -> None:
    """``archive([m1, m2])``: the error says which call takes a list, and stays short
    (it used to print every message of the list)."""
    with pgqrs.Producer(admin.config, queue) as p, pgqrs.Consumer(admin.config, queue) as c:
        p.enqueue_batch([{"n": i, "pad": "x" * 200} for i in range(50)])
        msgs = c.dequeue(batch=50)
        assert len(msgs) == 50
        calls: list[tuple[str, Callable[[Any], Any]]] = [
            ("archive", c.archive),
            ("delete", c.delete),
            ("release", c.release),
            ("extend", lambda m: c.extend(m, 30)),
        ]
        for action, call in calls:
            with pytest.raises(pgqrs.InvalidArgument) as err:
                call(msgs)
            text = str(err.value)
            assert f"got a list of 50: to {action} several messages, call {action}_batch(" in text
            assert len(text) < 200, text
        with pytest.raises(pgqrs.InvalidArgument, match=r"got dict \{'pad': 'xxx") as err:
            c.archive({"pad": "x" * 500})  # type: ignore[arg-type]
        assert len(str(err.value)) < 200
        # Nothing was settled: every message is still leased and can be archived.
        assert c.archive_batch(msgs) == [m.id for m in msgs]


def _circular() -> list[Any]:
    loop: list[Any] = [1]
    loop.append({"again": loop})
    return loop


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(
            {"rows": [{"i": i} for i in range(500)] + [{"when": datetime.datetime(2026, 1, 1)}]},
            "payload['rows'][500]['when'] is of type datetime.datetime: ",
            id="deep-datetime",
        ),
        pytest.param({"a": [1, 2.5, float("nan")]}, "payload['a'][2] is nan: ", id="nan"),
        pytest.param(
            {"x": {(1, 2): 3}}, "payload['x'] has a key of type tuple ((1, 2)): ", id="key"
        ),
        pytest.param({"s": {1, 2}}, "payload['s'] is of type set: ", id="set"),
        pytest.param(
            _circular(), "payload[1]['again'] is an enclosing list again (a circular ", id="loop"
        ),
    ],
)
def test_payload_errors_say_where_the_bad_value_is(
    payload: Any, expected: str, admin: pgqrs.Admin, queue: str
) -> None:
    """json's own message names a type, not where it sits among thousands of values."""
    with pgqrs.Producer(admin.config, queue) as p:
        with pytest.raises(pgqrs.PayloadError) as err:
            p.enqueue(payload)
        assert str(err.value).startswith(expected), str(err.value)
        assert "use dict, list, str, int, float, bool or None" in str(err.value)
        with pytest.raises(pgqrs.PayloadError) as err:
            p.enqueue({"ok": 1}, headers={"h": payload})
        assert "headers" in str(err.value)
    assert admin.queue_stats(queue).ready == 0
