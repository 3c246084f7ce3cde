"""Consumer: lease jobs from one queue and settle them, fenced by lease."""

from __future__ import annotations

import asyncio  # sleep
import contextlib
import datetime
import logging
from collections.abc import Callable, Sequence
from time import monotonic
from typing import Any, overload

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from pgqrs._async import _calls as calls
from pgqrs._async._base import Client
from pgqrs._async._db import Database
from pgqrs._cancel import shielded
from pgqrs._config import Config
from pgqrs._errors import Error, InvalidArgument, LeaseExpired
from pgqrs._models import Message
from pgqrs._ops import (
    Dequeued,
    FencedRow,
    Leases,
    MessageRef,
    Seconds,
    batch_size,
    check_fenced,
    encode_each,
    outcomes,
    undecodable_errors,
)
from pgqrs._ops import seconds as to_seconds
from pgqrs._validate import ArchiveStatus, validate_queue_name, validate_status

logger = logging.getLogger("pgqrs.consumer")

#: A waiting ``dequeue`` polls after this many seconds, doubling up to
#: ``WAIT_POLL_INTERVAL``. An enqueue's NOTIFY wakes it sooner, but only as a
#: hint: the server sends one only while a listening worker serves the queue
#: (see queue_lock.sql), and none is heard while the LISTEN connection is down
#: or through pgBouncer's transaction mode.
WAIT_FIRST_POLL = 0.05
WAIT_POLL_INTERVAL = 1.0

logger = logging.getLogger("pgqrs")


async def bury_undecodable(
    db: Database, queue: str, messages: list[Message], worker_id: int | None
) -> None:
    """Archive as dead, each with a ``PayloadError`` record saying why, the
    leased rows this client cannot decode (written by other means than pgqrs's
    functions, against the payload rules), so that they do not come back at
    every lease expiry and the rest of their batch is delivered. A failed
    write is logged: the rows come back after their lease and are tried again.
    """
    ids = [m.id for m in messages]
    records = undecodable_errors(messages, worker_id)
    for m, record in zip(messages, records, strict=True):
        logger.warning("message %s of %r cannot be read; archived as dead: %s", m.id, queue, record)
    try:
        await calls.message_archive(
            db,
            ids=ids,
            leases=[m.lease for m in messages if m.lease is not None],
            statuses=["dead"] * len(ids),
            errors=records,
        )
    except Error as exc:
        logger.warning("could not archive unreadable message(s) %s of %r: %s", ids, queue, exc)


class Consumer(Client):
    """Dequeues from ``queue``. A dequeued message is invisible to every other
    consumer until its lease expires; archive, delete, extend and release only
    work while this consumer still holds that lease."""

    def __init__(
        self,
        config: Config,
        queue: str,
        *,
        pool: AsyncConnectionPool | None = None,
        worker_id: int | None = None,
    ) -> None:
        super().__init__(config, pool=pool)
        self.queue = validate_queue_name(queue)
        self._worker_id = worker_id
        self._leases = Leases()
        #: The LISTEN connection of waiting dequeues (opened by the first one).
        self._listen: psycopg.AsyncConnection[Any] | None = None
        self._listen_failed = False
        #: After each dequeue: seconds until the queue's rate limit gives its
        #: next token when that limit kept the batch short (wait that long
        #: before dequeuing again: nothing more can come out before), else None.
        self.retry_after: float | None = None

    @overload
    async def dequeue(
        self,
        *,
        batch: None = None,
        visibility_timeout: Seconds | None = None,
        wait: Seconds | None = None,
    ) -> Message | None: ...

    @overload
    async def dequeue(
        self, *, batch: int, visibility_timeout: Seconds | None = None, wait: Seconds | None = None
    ) -> list[Message]: ...

    async def dequeue(
        self,
        *,
        batch: int | None = None,
        visibility_timeout: Seconds | None = None,
        wait: Seconds | None = None,
    ) -> Message | list[Message] | None:
        """Lease the next message (or up to ``batch`` messages, as a list).

        ``visibility_timeout`` (seconds) overrides the queue's default lease.
        Returns None (or []) when nothing is ready or the queue is paused.
        ``wait`` (seconds): when nothing is ready, wait up to that long for a
        message before giving up: a long poll, polling after 50 ms, then less
        and less often, at least every second, and woken at once by an
        enqueue's NOTIFY (on a connection of its own) while a listening
        worker serves the queue too.
        Messages delivered max_attempts times already go to the archive as
        dead instead; message_dequeue skips them and still fills the batch.
        A queue's flow-control limits may hand out fewer; when its rate limit
        did, ``self.retry_after`` says in how many seconds the next token comes.
        """
        limit = 1 if batch is None else batch_size(batch)
        vt = to_seconds(visibility_timeout, "visibility_timeout", allow_zero=False)
        patience = to_seconds(wait, "wait")
        deadline = None if patience is None else monotonic() + patience
        pause = WAIT_FIRST_POLL
        while True:
            # Cancel-safe (pgqrs._cancel): a caller cancelled meanwhile gets
            # CancelledError, and what the round trip leased goes back at once
            # with its attempt refunded, not stranded until the lease expires.
            got = await shielded(
                calls.message_dequeue(
                    self._db,
                    queue=self.queue,
                    limit=limit,
                    visibility_timeout=vt,
                    worker_id=self._worker_id,
                ),
                self._give_back,
            )
            messages = got.messages
            self.retry_after = got.retry_after
            if got.undecodable:
                await bury_undecodable(self._db, self.queue, got.undecodable, self._worker_id)
            remaining = 0.0 if deadline is None else deadline - monotonic()
            if messages or remaining <= 0:
                break
            if self.retry_after is not None:
                # Rate-limited: no token before then, whatever is enqueued.
                await asyncio.sleep(min(remaining, self.retry_after))
                continue
            await self._wait_for_enqueue(min(remaining, pause, WAIT_POLL_INTERVAL))
            pause *= 2
        self._leases.remember(messages)
        for m in messages:
            m._owner = self  # msg.set_progress() goes through this consumer
        if batch is None:
            return messages[0] if messages else None
        return messages

    async def _wait_for_enqueue(self, timeout: float) -> None:
        """Until a notification of an enqueue on this queue, at most ``timeout`` s."""
        conn = await self._listening()
        if conn is None:
            await asyncio.sleep(timeout)
            return
        deadline = monotonic() + timeout
        try:
            while (left := deadline - monotonic()) > 0:
                async for notify in conn.notifies(timeout=left, stop_after=1):
                    if notify.payload == self.queue:
                        return
        except psycopg.Error as exc:  # the connection broke: poll until reconnected
            logger.debug("LISTEN connection of consumer %r lost: %s", self.queue, exc)
            await self._close_listen()

    async def _listening(self) -> psycopg.AsyncConnection[Any] | None:
        """The LISTEN connection, (re)connected; None when it cannot be had
        (waiting then polls only)."""
        if self._listen is not None and not self._listen.closed:
            return self._listen
        if self._listen_failed:
            return None
        config = self.config
        try:
            conn = await psycopg.AsyncConnection.connect(config.dsn, **config.connect_kwargs())
            channel = f"{config.schema}.enqueue"
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error as exc:
            if not self._listen_failed:
                logger.warning("consumer %r cannot LISTEN (%s): polling only", self.queue, exc)
            self._listen_failed = True
            return None
        self._listen = conn
        return conn

    async def _close_listen(self) -> None:
        conn, self._listen = self._listen, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def close(self) -> None:
        """Close the pool this object owns, and the LISTEN connection of ``wait``."""
        await self._close_listen()
        await super().close()

    async def archive(
        self, msg: MessageRef, status: ArchiveStatus = "completed", *, result: Any = None
    ) -> None:
        """Move the message to the archive with ``status`` and an optional JSON ``result``.

        Raises LeaseExpired (and changes nothing) when another consumer has
        taken the message since this one's lease expired.
        """
        await self.archive_batch([msg], status, results=None if result is None else [result])

    async def archive_batch(
        self,
        msgs: Sequence[MessageRef],
        status: ArchiveStatus = "completed",
        *,
        results: Sequence[Any] | None = None,
        errors: Sequence[Any] | None = None,
    ) -> list[int]:
        """Archive many messages in one statement; return the archived ids.

        Those whose lease was lost stay as they are and are named by the
        LeaseExpired raised after the others were archived (``.succeeded``).
        """
        ids, leases = self._leases.resolve(msgs, "archive")
        validate_status(status)
        n, max_bytes = len(ids), self.config.max_payload_bytes
        rows = await shielded(
            calls.message_archive(
                self._db,
                ids=ids,
                leases=leases,
                statuses=[status] * n,
                results=None if results is None else encode_each(results, n, "result", max_bytes),
                errors=None if errors is None else encode_each(errors, n, "error", max_bytes),
            ),
            self._settled_late("archive"),
        )
        return check_fenced(rows, "archive", self._leases)

    async def set_progress(self, msg: Message, progress: Any) -> bool:
        """Record ``progress`` (a JSON value, e.g. ``{"done": 40, "of": 100}``) on
        the leased message's row, fenced by its lease (``LeaseExpired`` when
        lost). ``Admin.peek``, the dashboard and, once archived, the archive
        show the latest. Returns True when a cancellation of the message was
        requested (``Admin.cancel``): stop, then archive it (it is archived as
        ``cancelled`` whatever status is given)."""
        ids, leases = self._leases.resolve([msg], "set progress of")
        text = encode_each([progress], 1, "progress", self.config.max_payload_bytes)[0]
        if text is None:
            raise InvalidArgument("progress must be a JSON value, not None")
        outcome = await calls.message_set_progress(
            self._db, id=ids[0], lease=leases[0], progress=text
        )
        if outcome not in ("ok", "cancelled"):
            check_fenced([(ids[0], outcome, None)], "set progress of", self._leases)
        msg.progress = progress
        if outcome == "cancelled":
            msg._cancel_requested = True
        return outcome == "cancelled"

    async def _message_set_progress(self, msg: Message, progress: Any) -> bool:
        return await self.set_progress(msg, progress)

    async def delete(self, msg: MessageRef) -> None:
        """Delete the message outright (no archive row), fenced by its lease."""
        await self.delete_batch([msg])

    async def delete_batch(self, msgs: Sequence[MessageRef]) -> list[int]:
        ids, leases = self._leases.resolve(msgs, "delete")
        rows = await shielded(
            calls.message_delete(self._db, ids=ids, leases=leases), self._settled_late("delete")
        )
        return check_fenced(rows, "delete", self._leases)

    async def _give_back(self, dequeued: Dequeued) -> None:
        """A dequeue whose caller was cancelled: release what it leased, the
        attempt refunded, visible again at once."""
        held = [m for m in [*dequeued.messages, *dequeued.undecodable] if m.lease is not None]
        if not held:
            return
        try:
            await calls.message_release(
                self._db,
                ids=[m.id for m in held],
                leases=[m.lease for m in held if m.lease is not None],
                delays=[0.0] * len(held),
                refunds=[True] * len(held),
            )
        except Error as exc:
            logger.warning(
                "a cancelled dequeue leased message(s) %s; giving them back failed (they come back "
                "when their lease expires): %s",
                [m.id for m in held],
                exc,
            )

    def _settled_late(self, action: str) -> Callable[[list[FencedRow]], None]:
        """What an archive or delete whose caller was cancelled did, recorded:
        a retry then says "already archived by this consumer", not a lost lease."""

        def record(rows: list[FencedRow]) -> None:
            with contextlib.suppress(LeaseExpired):
                check_fenced(rows, action, self._leases)

        return record

    async def extend(self, msg: MessageRef, seconds: Seconds) -> datetime.datetime:
        """Keep the lease for ``seconds`` more from now; return the new visible_until.

        A Message passed in gets its ``visible_until`` updated too.
        """
        return (await self.extend_batch([msg], seconds))[0]

    async def extend_batch(
        self, msgs: Sequence[MessageRef], seconds: Seconds
    ) -> list[datetime.datetime]:
        ids, leases = self._leases.resolve(msgs, "extend")
        secs = to_seconds(seconds, "seconds", allow_zero=False)
        rows = await calls.message_extend(self._db, ids=ids, leases=leases, seconds=secs)
        check_fenced(rows, "extend", self._leases)
        # Every row is 'ok' here (check_fenced raised otherwise): each has its new time.
        until = {i: t for i, (_outcome, t) in outcomes(rows).items() if t is not None}
        for m in msgs:
            if isinstance(m, Message):
                m.visible_until = until[m.id]
        return [until[i] for i in ids]

    async def release(self, msg: MessageRef, *, delay: Seconds = 0, error: Any = None) -> None:
        """Give the message back to the queue, visible again after ``delay`` seconds.

        ``error`` (JSON) is recorded as the message's last_error.
        """
        await self.release_batch([msg], delay=delay, errors=None if error is None else [error])

    async def release_batch(
        self, msgs: Sequence[MessageRef], *, delay: Seconds = 0, errors: Sequence[Any] | None = None
    ) -> list[int]:
        ids, leases = self._leases.resolve(msgs, "release")
        d = to_seconds(delay, "delay")
        errs = encode_each(errors, len(ids), "error", self.config.max_payload_bytes)
        rows = await calls.message_release(
            self._db, ids=ids, leases=leases, delays=[d] * len(ids), errors=errs
        )
        return check_fenced(rows, "release", self._leases)
