"""Helpers for testing the code that uses pgqrs (docs/testing.md).

``make_message`` builds the ``Message`` a handler receives, so a handler can
be unit-tested by calling it; ``task_message`` builds one in the tasks wire
format. Eager tasks (``TaskRegistry(eager=True)``, ``task.run(...)``) and
``worker.run(until_empty=True)`` cover the rest.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from typing import Any

from pgqrs._errors import InvalidArgument
from pgqrs._models import Message
from pgqrs._payload import encode_headers, encode_payload
from pgqrs._tasks.registry import Task
from pgqrs._tasks.wire import TASK_HEADER
from pgqrs._validate import validate_queue_name

__all__ = ["make_message", "task_message"]

#: No size limit worth hitting in a test (the payload rules still apply).
_MAX_BYTES = 1 << 30


def make_message(
    payload: Any = None,
    *,
    queue: str = "default",
    id: int = 1,
    attempts: int = 1,
    priority: int = 0,
    headers: Mapping[str, Any] | None = None,
    dedup_key: str | None = None,
    last_error: Any = None,
    visibility_timeout: float = 30.0,
) -> Message:
    """A ``Message`` as a worker hands it to a handler: dequeued now, leased
    for ``visibility_timeout`` seconds, on its ``attempts``-th delivery.

    ``payload`` must be storable (the same rules as ``Producer.enqueue``:
    ``PayloadError`` otherwise), and the handler sees what a worker would:
    the value after a JSON round trip (tuples become lists, ...).
    """
    import json

    validate_queue_name(queue)
    for name, value in (("id", id), ("attempts", attempts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"{name} must be an int >= 1, got {value!r}")
    text = encode_payload(json.dumps(payload) if isinstance(payload, str) else payload, _MAX_BYTES)
    header_text = encode_headers(dict(headers) if headers is not None else {}, _MAX_BYTES)
    now = datetime.datetime.now(datetime.timezone.utc)
    return Message(
        id=id,
        queue=queue,
        payload=json.loads(text),
        priority=priority,
        attempts=attempts,
        enqueued_at=now,
        dequeued_at=now,
        visible_until=now + datetime.timedelta(seconds=visibility_timeout),
        headers=json.loads(header_text) if header_text else {},
        lease=uuid.uuid4(),
        dedup_key=dedup_key,
        last_error=last_error,
    )


def task_message(task: Task[Any, Any], *args: Any, **kwargs: Any) -> Message:
    """The ``Message`` a worker gets for ``task(*args, **kwargs)`` enqueued: on
    the task's queue, its header naming the task, its arguments by name."""
    if not isinstance(task, Task):
        raise InvalidArgument(f"task_message takes a task (made by @registry.task), got {task!r}")
    return make_message(
        task.payload(*args, **kwargs), queue=task.queue, headers={TASK_HEADER: task.name}
    )
