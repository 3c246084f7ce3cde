"""The I/O-free half of every operation: parameters in, results out.

The asyncio classes (and the sync twin generated from them) only run the
named query; building its parameters and reading its rows happens here, once.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, overload

from pgqrs._errors import InvalidArgument, LeaseExpired, LeaseNotHeld, queue_not_found
from pgqrs._models import Message, RateLimit
from pgqrs._payload import (
    Undecodable,
    decode_json,
    decode_sent,
    encode_headers,
    encode_json,
    encode_payload,
    encode_payloads,
)
from pgqrs._validate import check_available_at, validate_dedup_key, validate_group

#: A Message, or the id of one this Consumer dequeued.
MessageRef = Message | int
Seconds = float | int | datetime.timedelta

#: Most messages one dequeue or batch call may touch: keeps a statement's
#: parameters and locks bounded.
MAX_BATCH = 10_000
#: Longest delay, lease or age accepted, in seconds (100 years): beyond any
#: real use and well inside PostgreSQL's interval range, so a typo such as
#: ``float("inf")`` fails here, before any round trip, not in the server (which
#: only evaluates it for a row it touches).
MAX_SECONDS = 100 * 365.25 * 86_400
#: Shortest positive duration: PostgreSQL's intervals count microseconds.
MIN_POSITIVE_SECONDS = 1e-6


#: Result columns of the hot statements, in order. Their rows come back as
#: tuples (``Database.fetch_tuples``): a dict per row cost ~2 us, a fifth of
#: the client's work per dequeued message. tests/test_columns.py checks these
#: against the functions' declared columns and Message's fields.
DEQUEUE_COLUMNS = (
    "outcome",
    "id",
    "queue",
    "payload",
    "priority",
    "attempts",
    "enqueued_at",
    "dequeued_at",
    "visible_until",
    "headers",
    "lease",
    "dedup_key",
    "last_error",
    "group_key",
    "retry_after",
)
#: message_enqueue: a Message's fields, in Message's order (``group``: as sent).
ENQUEUE_COLUMNS = (*DEQUEUE_COLUMNS[1:13], "inserted")
INSERT_COLUMNS = ("ids", "enqueued_at", "visible_until")
#: message_archive, message_delete, message_extend and message_release.
FENCED_COLUMNS = ("id", "outcome", "visible_until")

#: One row of a lease-fenced statement (FENCED_COLUMNS): the message id, 'ok',
#: 'lease_lost' or 'not_found', and the new visible_until (message_extend).
FencedRow = tuple[int, str, datetime.datetime | None]
#: The one row of message_insert (INSERT_COLUMNS): the ids in input order
#: (None: no such queue), and the enqueue and visible times they share.
InsertRow = tuple[list[int] | None, datetime.datetime | None, datetime.datetime | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Dequeued:
    """What ``message_dequeue`` did: the messages leased, and how many picked
    rows it archived as dead instead (their attempts were used up)."""

    messages: list[Message]
    dead: int
    #: Seconds until the queue's rate limit gives its next token, when the
    #: rate limit kept the batch short (a 'throttled' row); else None.
    retry_after: float | None = None
    #: Leased rows this client cannot decode or that break the payload rules
    #: (written by other means): the caller archives them as dead
    #: (``undecodable_errors``), the batch's others are delivered.
    undecodable: list[Message] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class Enqueue:
    """One enqueue call, checked: the queue, the payloads' JSON, and the
    options every message of the call shares (``enqueue_params``)."""

    queue: str
    #: The payloads as given (already checked: ``texts`` encodes them again
    #: only when a statement needs one text per payload).
    values: Sequence[Any]
    #: The payloads as one JSON array text (message_insert's); None when
    #: ``enqueue_params`` encoded them one by one (``texts``).
    array: str | None
    #: One JSON text per payload (message_enqueue's), or None: see ``array``.
    payload_texts: list[str] | None
    max_bytes: int
    priority: int
    delay: float | None
    available_at: datetime.datetime | None
    #: One per payload (all None: no dedup, message_insert does it).
    dedup_keys: list[str | None]
    #: The headers' JSON text, or None.
    headers: str | None
    #: One group per payload (None: no group).
    groups: list[str | None] = dataclasses.field(default_factory=list)
    #: True when no message has a dedup key and all share one group:
    #: message_insert does it.
    plain: bool = False

    @property
    def group(self) -> str | None:
        """The group every message shares (message_insert's)."""
        return self.groups[0] if self.groups else None

    def array_text(self) -> str:
        """The payloads as one JSON array text (message_insert's parameter)."""
        if self.array is not None:
            return self.array
        assert self.payload_texts is not None
        return "[" + ",".join(self.payload_texts) + "]"

    def texts(self) -> list[str]:
        """One JSON text per payload (message_enqueue's parameter)."""
        if self.payload_texts is not None:
            return self.payload_texts
        return [encode_payload(p, self.max_bytes) for p in self.values]


class _Unset:
    """The default of a limit not being changed (None means: remove it)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclasses.dataclass(frozen=True, slots=True)
class QueueLimits:
    """A change to a queue's flow-control limits (Admin.update_queue), checked:
    a field left UNSET is not changed; None removes the limit."""

    concurrency_limit: int | _Unset | None = UNSET
    group_concurrency: int | _Unset | None = UNSET
    rate_limit: RateLimit | _Unset | None = UNSET

    def params(self) -> list[Any]:
        """queue_update's parameters after the name: (set?, value) per limit."""
        rate = self.rate_limit
        r = rate if isinstance(rate, RateLimit) else None
        return [
            not isinstance(self.concurrency_limit, _Unset),
            None if isinstance(self.concurrency_limit, _Unset) else self.concurrency_limit,
            not isinstance(self.group_concurrency, _Unset),
            None if isinstance(self.group_concurrency, _Unset) else self.group_concurrency,
            not isinstance(rate, _Unset),
            None if r is None else r.count,
            None if r is None else float(r.period),
            None if r is None else r.per_group,
        ]


def rate_limit(value: object) -> RateLimit | None:
    """A rate limit given as ``"100/s"`` or a RateLimit (None: none)."""
    if value is None or isinstance(value, RateLimit):
        return value
    if isinstance(value, str):
        return RateLimit.parse(value)
    raise InvalidArgument(
        f"rate_limit must be a str such as '100/s' or a pgqrs.RateLimit, got {value!r}"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A row of the migration ledger (``migration_list``)."""

    version: int
    name: str
    checksum: str


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedFunction:
    """A server function as ``function_list`` sees it: its checksum in the
    ledger (None: not recorded) and whether the schema holds it."""

    name: str
    checksum: str | None
    present: bool


@overload
def seconds(value: Seconds, what: str, *, allow_zero: bool = True) -> float: ...


@overload
def seconds(value: Seconds | None, what: str, *, allow_zero: bool = True) -> float | None: ...


def seconds(value: Seconds | None, what: str, *, allow_zero: bool = True) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{what} must be seconds (int, float) or a timedelta, got {value!r}")
    if not allow_zero and 0 < value < MIN_POSITIVE_SECONDS:
        raise InvalidArgument(
            f"{what} must be at least {MIN_POSITIVE_SECONDS:g} seconds (PostgreSQL keeps "
            f"microseconds: a shorter one would be 0), got {value!r}"
        )
    if value < 0 or (value == 0 and not allow_zero) or not value <= MAX_SECONDS:
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidArgument(
            f"{what} must be {bound} seconds and at most {MAX_SECONDS:.0f} (100 years), "
            f"got {value!r}"
        )
    return float(value)


def batch_size(batch: int, what: str = "batch") -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise InvalidArgument(f"{what} must be an int from 1 to {MAX_BATCH}, got {batch!r}")
    return batch


def _aware(value: datetime.datetime | None) -> datetime.datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime.datetime) or value.tzinfo is None:
        raise InvalidArgument(
            f"available_at must be a timezone-aware datetime, got {value!r} "
            "(e.g. datetime.now(timezone.utc) + timedelta(minutes=5))"
        )
    return value


def enqueue_params(
    queue: str,
    payloads: Sequence[Any],
    *,
    delay: Seconds | None,
    available_at: datetime.datetime | None,
    priority: int,
    dedup_keys: Sequence[str | None] | None,
    headers: Mapping[str, Any] | None,
    max_bytes: int,
    group: str | None = None,
    groups: Sequence[str | None] | None = None,
) -> Enqueue:
    """One enqueue of ``payloads`` sharing the same options, checked and encoded."""
    n = len(payloads)
    if n == 0:
        raise InvalidArgument("nothing to enqueue: the payload list is empty")
    if n > MAX_BATCH:
        raise InvalidArgument(f"enqueue_batch takes at most {MAX_BATCH} payloads, got {n}")
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not -(2**31) <= priority < 2**31
    ):
        raise InvalidArgument(f"priority must be a 32-bit int, got {priority!r}")
    keys: list[str | None] = [None] * n if dedup_keys is None else list(dedup_keys)
    if len(keys) != n:
        raise InvalidArgument(f"dedup_keys has {len(keys)} entries for {n} payloads")
    seen: set[str] = set()
    for key in keys:
        if key is None:
            continue
        validate_dedup_key(key)
        if key in seen:
            raise InvalidArgument(f"dedup_key {key!r} appears twice in one batch")
        seen.add(key)
    if groups is not None and group is not None:
        raise InvalidArgument("pass group (one for all) or groups (one per payload), not both")
    if groups is None:
        group_list = [validate_group(group)] * n
    else:
        group_list = [validate_group(g) for g in groups]
        if len(group_list) != n:
            raise InvalidArgument(f"groups has {len(group_list)} entries for {n} payloads")
    # The options first: a bad one is named before any payload is encoded.
    delay_s = seconds(delay, "delay")
    when = check_available_at(_aware(available_at), delay_s)
    header_text = encode_headers(dict(headers) if headers is not None else None, max_bytes)
    # The common case (message_insert's: no dedup key, one group) encodes the
    # batch as one array text; message_enqueue takes one text per payload.
    plain = all(k is None for k in keys) and (
        groups is None or all(g == group_list[0] for g in group_list)
    )
    return Enqueue(
        queue=queue,
        values=payloads,
        array=encode_payloads(payloads, max_bytes) if plain else None,
        payload_texts=None if plain else [encode_payload(p, max_bytes) for p in payloads],
        max_bytes=max_bytes,
        priority=priority,
        delay=delay_s,
        available_at=when,
        dedup_keys=keys,
        headers=header_text,
        groups=group_list,
        plain=plain,
    )


def enqueue_result(rows: list[tuple[Any, ...]], groups: Sequence[str | None]) -> list[Message]:
    """Messages from message_enqueue's rows (ENQUEUE_COLUMNS: Message's fields)
    and the groups sent, in input order (a deduplicated one keeps its own:
    the row's group is the first enqueue's)."""
    messages = [Message(*r) for r in rows]
    if messages:  # [] when the queue is missing
        for m, g in zip(messages, groups, strict=True):
            m.group = g
    return messages


def insert_result(row: InsertRow, sent: Enqueue, owner: Any = None) -> list[Message]:
    """Messages from message_insert's row (ids, shared times) and what was
    sent; ``owner``: the Producer (``Message.wait`` goes through it).

    The payloads and headers are decoded from the JSON texts sent, as the
    server would return them, so a Message never shares state with the caller's.
    """
    ids, enqueued_at, visible_until = row
    if ids is None or len(ids) != len(sent.values):
        raise RuntimeError(
            f"message_insert returned {0 if ids is None else len(ids)} ids for "
            f"{len(sent.values)} payloads"
        )
    # One parse of the whole array costs less than one call per payload.
    values = decode_sent(sent.array_text())
    queue, priority, group, header_text = sent.queue, sent.priority, sent.group, sent.headers
    # Positional: a third of the keyword call's cost, per message. Message's
    # fields in order: id, queue, payload, priority, attempts, enqueued_at,
    # dequeued_at, visible_until, headers, lease, dedup_key, last_error,
    # inserted, group, progress, _cancel_requested, _owner.
    return [
        Message(
            msg_id,
            queue,
            value,
            priority,
            0,
            enqueued_at,  # type: ignore[arg-type]  # not None with ids
            None,
            visible_until,  # type: ignore[arg-type]
            {} if header_text is None else decode_json(header_text),
            None,
            None,
            None,
            True,
            group,
            None,
            False,
            owner,
        )
        for msg_id, value in zip(ids, values, strict=True)
    ]


def dequeue_result(rows: list[tuple[Any, ...]], queue: str) -> Dequeued:
    """The leased messages, and how many picked rows went to the archive as dead.

    Rows are DEQUEUE_COLUMNS: the outcome, then a Message's fields in order.
    """
    messages: list[Message] = []
    undecodable: list[Message] = []
    dead = 0
    retry_after = None
    for row in rows:
        outcome = row[0]
        if outcome == "leased":
            # The loader gives an Undecodable, never raises (pgqrs._payload):
            # such a row is set aside alone.
            m = Message(*row[1:13])
            m.group = row[13]
            if (
                type(row[3]) is Undecodable
                or type(row[9]) is Undecodable
                or (type(row[12]) is Undecodable)
            ):
                undecodable.append(m)
            else:
                messages.append(m)
        elif outcome == "dead":
            dead += 1
        elif outcome == "throttled":
            retry_after = float(row[14])
        elif outcome == "cancelled":
            pass  # its cancel was requested while leased: archived, not delivered
        else:
            raise queue_not_found(queue)
    return Dequeued(messages, dead, retry_after, undecodable)


def undecodable_errors(messages: Sequence[Message], worker_id: int | None) -> list[str | None]:
    """The error records (JSON texts) archiving unreadable messages as dead:
    a ``PayloadError`` saying which column and why."""
    records: list[str | None] = []
    for m in messages:
        reasons = [
            f"{name} {value.reason}"
            for name, value in (
                ("payload", m.payload),
                ("headers", m.headers),
                ("last_error", m.last_error),
            )
            if isinstance(value, Undecodable)
        ]
        record = {
            "type": "pgqrs.PayloadError",
            "message": "the message cannot be read: " + "; ".join(reasons),
            "attempt": m.attempts,
            "worker_id": worker_id,
        }
        records.append(encode_json(record, "error", 1 << 30))
    return records


class Leases:
    """The leases a Consumer holds, so that ``archive(msg.id)`` works with an id alone."""

    #: Leases remembered at most; the oldest are forgotten first (passing the
    #: Message itself always works).
    MAX_REMEMBERED = 100_000

    def __init__(self) -> None:
        self._by_id: dict[int, uuid.UUID] = {}
        #: Ids this Consumer archived or deleted, by action (bounded as above):
        #: settling one again is "already archived", not a lost lease.
        self.settled: dict[int, str] = {}

    def remember(self, messages: Iterable[Message]) -> None:
        by_id = self._by_id
        for m in messages:
            if m.lease is not None:
                if m.id in by_id:  # leased again: it moves to the newest end
                    del by_id[m.id]
                by_id[m.id] = m.lease
        while len(self._by_id) > self.MAX_REMEMBERED:
            del self._by_id[next(iter(self._by_id))]

    def forget(self, ids: Iterable[int]) -> None:
        for i in ids:
            self._by_id.pop(i, None)

    def resolve(self, refs: Iterable[MessageRef], action: str) -> tuple[list[int], list[uuid.UUID]]:
        ids: list[int] = []
        leases: list[uuid.UUID] = []
        unknown: list[int] = []
        for ref in refs:
            # The common case first, in three type checks: a Message dequeued here.
            if type(ref) is Message and type(ref.id) is int and type(ref.lease) is uuid.UUID:
                ids.append(ref.id)
                leases.append(ref.lease)
            elif isinstance(ref, Message):
                if ref.lease is None:
                    unknown.append(ref.id)
                    continue
                # A Message built by hand: its fields go into array literals.
                if not isinstance(ref.id, int) or isinstance(ref.id, bool):
                    raise InvalidArgument(f"message id must be an int, got {ref.id!r}")
                if not isinstance(ref.lease, uuid.UUID):
                    raise InvalidArgument(f"message lease must be a uuid.UUID, got {ref.lease!r}")
                ids.append(ref.id)
                leases.append(ref.lease)
            elif isinstance(ref, int) and not isinstance(ref, bool):
                lease = self._by_id.get(ref)
                if lease is None:
                    unknown.append(ref)
                    continue
                ids.append(ref)
                leases.append(lease)
            elif isinstance(ref, (list, tuple, set, frozenset)):
                # archive([m1, m2]): name the mistake instead of printing every message.
                raise InvalidArgument(
                    f"expected a Message or a message id (int), got a {type(ref).__name__} of "
                    f"{len(ref)}: to {action} several messages, call {action}_batch(messages) "
                    "with a flat list"
                )
            else:
                raise InvalidArgument(
                    f"expected a Message or a message id (int), got {type(ref).__name__} "
                    f"{short_repr(ref)}"
                )
        if unknown and all(i in self.settled for i in unknown):
            # Settled here already: say so (an id alone; a Message gets the
            # same answer from the server's not_found, see check_fenced).
            done = {self.settled[i] for i in unknown}
            raise LeaseExpired(
                f"cannot {action} message(s) {unknown}: already "
                f"{' or '.join(sorted(a + 'd' for a in done))} by this consumer; "
                "nothing was changed",
                unknown,
            )
        if unknown:
            raise LeaseNotHeld(
                f"cannot {action} message(s) {unknown}: this Consumer holds no lease on them; "
                "pass the Message returned by dequeue() (it carries its lease)",
                unknown,
            )
        if len(set(ids)) != len(ids):
            raise InvalidArgument(f"the same message appears twice in one {action} call")
        if not ids:
            raise InvalidArgument(f"nothing to {action}: the message list is empty")
        if len(ids) > MAX_BATCH:
            raise InvalidArgument(f"{action} takes at most {MAX_BATCH} messages, got {len(ids)}")
        return ids, leases


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error names the value, not all of it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def array_literal(values: Iterable[int | str]) -> str:
    """A PostgreSQL array literal of ints or validated words: ``{1,2,3}``.

    Why not a list: psycopg inspects a list's elements to choose the array
    type and dumps them one by one in Python, ~30 us for one element and
    ~100 us for a hundred (measured); the SQL casts the text (``$1::bigint[]``).
    Only for values whose text needs no quoting (digits, ``[a-z0-9_]``
    words); anything else stays a list.
    """
    return "{" + ",".join(map(str, values)) + "}"


def fenced_refs(ids: Sequence[int], leases: Sequence[uuid.UUID]) -> list[str]:
    """The ``$1 ids, $2 leases`` parameters of every lease-fenced statement.

    Each lease goes as its 32 hex digits, which PostgreSQL's uuid input takes
    without the dashes: ``UUID.hex`` costs a third of ``str(UUID)`` (18
    against 60 us for 100 leases, measured).
    """
    return [array_literal(ids), "{" + ",".join([lease.hex for lease in leases]) + "}"]


def held(messages: Sequence[Message]) -> tuple[list[int], list[uuid.UUID]]:
    """The ids and leases of messages this process dequeued (the worker's)."""
    leases: list[uuid.UUID] = []
    for m in messages:
        if m.lease is None:
            raise InvalidArgument(f"message {m.id} carries no lease: it cannot be settled")
        leases.append(m.lease)
    return [m.id for m in messages], leases


def leased_refs(messages: Sequence[Message]) -> list[str]:
    """``fenced_refs`` of messages this process dequeued (the worker's)."""
    return fenced_refs(*held(messages))


def encode_each(
    values: Sequence[Any] | None, n: int, what: str, max_bytes: int
) -> list[str | None]:
    """JSON texts for one optional value per message (all NULL when ``values`` is None)."""
    if values is None:
        return [None] * n
    if len(values) != n:
        raise InvalidArgument(f"{what}s must have one entry per message ({n}), got {len(values)}")
    return [encode_json(v, what, max_bytes) for v in values]


def optional_texts(values: list[str | None]) -> list[str | None] | None:
    """One optional JSON text per message, or None (sent as NULL) when all are
    None: unnest pads a NULL array with NULLs, and psycopg then dumps no list
    (a list of 100 costs ~0.4 ms of client CPU, measured in the worker)."""
    return values if any(v is not None for v in values) else None


def outcomes(rows: list[tuple[Any, ...]]) -> dict[int, tuple[str, datetime.datetime | None]]:
    """Per message id: 'ok', 'lease_lost' or 'not_found', and the new visible_until
    (rows are FENCED_COLUMNS)."""
    return {msg_id: (outcome, until) for msg_id, outcome, until in rows}


def check_fenced(rows: list[tuple[Any, ...]], action: str, leases: Leases) -> list[int]:
    """Ids that went through; raise LeaseExpired naming the others (rows untouched).

    Rows are FENCED_COLUMNS.
    """
    # 'cancelled': went through, and the message's cancellation was requested
    # (an archive wrote status cancelled; an extend kept the lease).
    done = [r[0] for r in rows if r[1] in ("ok", "cancelled")]
    lost = [r[0] for r in rows if r[1] not in ("ok", "cancelled")] if len(done) < len(rows) else []
    # An extended lease is still held; every other action ends the lease.
    leases.forget(lost if action == "extend" else [r[0] for r in rows])
    if action in ("archive", "delete"):
        leases.settled.update(dict.fromkeys(done, action))
        while len(leases.settled) > Leases.MAX_REMEMBERED:
            del leases.settled[next(iter(leases.settled))]
    gone = [r[0] for r in rows if r[1] == "not_found"]
    if gone and len(gone) == len(lost):
        mine = {leases.settled[i] for i in gone if i in leases.settled}
        raise LeaseExpired(
            f"cannot {action} message(s) {gone}: "
            + (
                f"already {' or '.join(sorted(a + 'd' for a in mine))} by this consumer"
                if len(mine) == 1 and all(i in leases.settled for i in gone)
                else "no longer in the queue (already archived or deleted, here or by another "
                "consumer after the lease expired)"
            )
            + "; nothing was changed",
            gone,
            succeeded=done,
        )
    if lost:
        raise LeaseExpired(
            f"cannot {action} message(s) {lost}: the lease expired and the message was "
            "redelivered to another consumer, or archived or deleted since; the row was left "
            "as it is (use a longer visibility_timeout, or extend() the lease while working)",
            lost,
            succeeded=done,
        )
    return done


#: message_fail's result columns, in order.
FAIL_COLUMNS = ("id", "outcome", "delay", "attempts")


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt to settle with ``message_fail``."""

    #: The message, as dequeued (it carries its id and lease).
    message: Message
    #: JSON text: the last_error of a retry, the archive row's error when dead
    #: (None keeps the message's last_error).
    error: str | None = None
    #: Seconds before the retry (e.g. the handler's Retry(delay)); None: the backoff.
    delay: float | None = None
    #: Archive as dead whatever the attempts (the handler gave up: Abort).
    dead: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class FailOutcome:
    """What ``message_fail`` did with one message."""

    id: int
    #: 'retried', 'dead', 'lease_lost' or 'not_found'.
    outcome: str
    #: Seconds until the retry is visible, for 'retried'.
    delay: float | None
    #: Deliveries so far, for 'retried' and 'dead'.
    attempts: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Heartbeat:
    """What ``worker_alive`` found."""

    #: The worker row's status now ('running' or 'stopping').
    status: str
    #: The row had been pruned and was registered again under the same id.
    registered: bool


def backoff_params(base: float, max_: float, jitter: float) -> list[float]:
    """message_fail's backoff parameters, checked before any round trip."""
    values = [
        _number(base, "backoff base"),
        _number(max_, "backoff max"),
        _number(jitter, "backoff jitter"),
    ]
    if values[2] > 1:
        raise InvalidArgument(f"backoff jitter is a fraction from 0 to 1, got {jitter!r}")
    if values[1] < values[0]:
        raise InvalidArgument(f"backoff max ({max_!r}) must be >= backoff base ({base!r})")
    return values


def _number(value: float, what: str) -> float:
    return seconds(value, what)


def fail_params(failures: Sequence[Failure], base: float, max_: float, jitter: float) -> list[Any]:
    """Parameters of message_fail (ids, leases, errors, delays, force_dead, backoff)."""
    if not failures:
        raise InvalidArgument("nothing to fail: the failure list is empty")
    if len(failures) > MAX_BATCH:
        raise InvalidArgument(
            f"message_fail takes at most {MAX_BATCH} messages, got {len(failures)}"
        )
    messages = [f.message for f in failures]
    if len({m.id for m in messages}) != len(messages):
        raise InvalidArgument("the same message appears twice in one message_fail call")
    delays = [seconds(f.delay, "delay") for f in failures]
    return [
        *leased_refs(messages),
        optional_texts([f.error for f in failures]),
        delays if any(d is not None for d in delays) else None,
        [f.dead for f in failures] if any(f.dead for f in failures) else None,
        *backoff_params(base, max_, jitter),
    ]


def fail_result(rows: list[tuple[Any, ...]]) -> list[FailOutcome]:
    """FailOutcomes from message_fail's rows (FAIL_COLUMNS), in input order."""
    return [FailOutcome(*row) for row in rows]


WORKER_STATUSES = ("running", "stopping")


def alive_params(
    worker_id: int, status: str, hostname: str, pid: int, queues: Sequence[str], listening: bool
) -> list[Any]:
    """Parameters of worker_alive."""
    if status not in WORKER_STATUSES:
        raise InvalidArgument(f"worker status must be 'running' or 'stopping', got {status!r}")
    return [worker_id, status, hostname, pid, list(queues), listening]
