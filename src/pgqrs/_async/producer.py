"""Producer: put jobs on one queue."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgqrs._async import _calls as calls
from pgqrs._async._base import Client
from pgqrs._async._wait import message_id, wait_archived, wait_timeout
from pgqrs._config import Config
from pgqrs._errors import queue_not_found
from pgqrs._models import ArchivedMessage, Message
from pgqrs._ops import Enqueue, Seconds, enqueue_params, insert_result
from pgqrs._telemetry import hooks as telemetry
from pgqrs._validate import validate_queue_name


class Producer(Client):
    """Enqueues messages on ``queue``; every call is one statement."""

    def __init__(
        self, config: Config, queue: str, *, pool: AsyncConnectionPool | None = None
    ) -> None:
        super().__init__(config, pool=pool)
        self.queue = validate_queue_name(queue)

    async def enqueue(
        self,
        payload: Any,
        *,
        delay: Seconds | None = None,
        available_at: datetime.datetime | None = None,
        priority: int = 0,
        dedup_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        group: str | None = None,
        connection: psycopg.AsyncConnection[Any] | None = None,
    ) -> Message:
        """Enqueue one message and return it.

        ``payload``: a JSON value, or a ``str`` holding JSON text. ``delay``
        (seconds) and/or ``available_at`` keep it invisible until due. Higher
        ``priority`` is delivered first. With a ``dedup_key`` that a waiting or
        in-flight message already has, that message comes back
        (``inserted=False``). ``group`` puts it in a message group, which a
        queue's ``group_concurrency`` and per-group rate limit apply to
        (docs/flow-control.md). With ``connection``, the insert joins the
        caller's transaction and commits or rolls back with it.
        """
        return (
            await self.enqueue_batch(
                [payload],
                delay=delay,
                available_at=available_at,
                priority=priority,
                dedup_keys=None if dedup_key is None else [dedup_key],
                headers=headers,
                group=group,
                connection=connection,
            )
        )[0]

    async def enqueue_batch(
        self,
        payloads: Sequence[Any],
        *,
        delay: Seconds | None = None,
        available_at: datetime.datetime | None = None,
        priority: int = 0,
        dedup_keys: Sequence[str | None] | None = None,
        headers: Mapping[str, Any] | None = None,
        group: str | None = None,
        groups: Sequence[str | None] | None = None,
        connection: psycopg.AsyncConnection[Any] | None = None,
    ) -> list[Message]:
        """Enqueue many messages in one statement; results follow input order.

        ``group``: one group for every message; ``groups``: one per payload.
        """
        sent = enqueue_params(
            self.queue,
            payloads,
            delay=delay,
            available_at=available_at,
            priority=priority,
            dedup_keys=dedup_keys,
            headers=headers,
            max_bytes=self.config.max_payload_bytes,
            group=group,
            groups=groups,
        )
        publish = telemetry.publish  # None unless pgqrs.otel.instrument() ran
        if publish is None:
            return await self._send(sent, None, connection)
        span = publish(self.queue, len(sent.values), sent.headers, self.config.max_payload_bytes)
        try:
            messages = await self._send(sent, span.headers, connection)
        except BaseException as exc:
            span.fail(exc)
            raise
        span.done(messages)
        return messages

    async def _message_wait(self, id: int, timeout: float | None) -> ArchivedMessage:
        """Message.wait: as Admin.wait (archive_wait/archive_get are a producer's)."""
        return await wait_archived(self._db, message_id(id), wait_timeout(timeout))

    async def _send(
        self,
        sent: Enqueue,
        headers: list[str | None] | None,
        connection: psycopg.AsyncConnection[Any] | None,
    ) -> list[Message]:
        """One statement: message_insert when the messages share every option
        (no dedup keys, one headers text), else message_enqueue. ``headers``:
        one text per message (tracing gives each its own context), or None.
        The messages are this producer's (``msg.wait()`` goes through it)."""
        shared = headers is None or all(h is headers[0] for h in headers)
        if sent.plain and shared:
            if headers is not None and headers[0] is not sent.headers:
                sent = dataclasses.replace(sent, headers=headers[0])  # as sent, traced
            row = await calls.message_insert(
                self._db,
                queue=sent.queue,
                payloads=sent.array_text(),
                priority=sent.priority,
                delay=sent.delay,
                available_at=sent.available_at,
                headers=sent.headers,
                group=sent.group,
                connection=connection,
            )
            if row[0] is None:  # the statement found no queue to lock
                raise queue_not_found(self.queue)
            return insert_result(row, sent, self)
        n = len(sent.values)
        messages = await calls.message_enqueue(
            self._db,
            queue=sent.queue,
            payloads=sent.texts(),
            priorities=[sent.priority] * n,
            delays=[sent.delay] * n,
            available_at=[sent.available_at] * n,
            dedup_keys=sent.dedup_keys,
            headers=[sent.headers] * n if headers is None else headers,
            groups=sent.groups,
            connection=connection,
        )
        if not messages:  # the statement found no queue to lock
            raise queue_not_found(self.queue)
        for m in messages:
            m._owner = self
        return messages
