"""The tasks wire format, shared with the Rust crate (docs/tasks.md).

A task message is an ordinary message on the task's queue: its header
``pgqrs-task`` names the task, its payload is a JSON object of the task's
arguments by name, and the handler's return value is the archived result.
"""

from __future__ import annotations

from typing import Any

#: The header naming the task a message is for.
TASK_HEADER = "pgqrs-task"


def task_name(headers: Any) -> str | None:
    """The task a message's headers name, or None for a plain message."""
    if not isinstance(headers, dict):
        return None
    name = headers.get(TASK_HEADER)
    return name if isinstance(name, str) else None
