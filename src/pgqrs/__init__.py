"""pgqrs: a library-only job queue on PostgreSQL.

The blocking API lives here; ``pgqrs.aio`` has the same classes for asyncio.
"""

from pgqrs._config import Config
from pgqrs._errors import (
    AlreadyArchived,
    ConfigError,
    ConnectionFailed,
    DatabaseError,
    Error,
    InvalidArgument,
    InvalidQueueName,
    LeaseError,
    LeaseExpired,
    LeaseNotHeld,
    MessageNotFound,
    PayloadError,
    QueueExists,
    QueueNotFound,
    ScheduleExists,
    ScheduleNotFound,
    SchemaNotInstalled,
    WaitTimeout,
)
from pgqrs._models import (
    ArchivedMessage,
    Message,
    QueueInfo,
    QueueStats,
    RateLimit,
    ScheduleInfo,
    VerifyReport,
    WorkerInfo,
)
from pgqrs._sync._db import make_pool
from pgqrs._sync.admin import Admin
from pgqrs._sync.consumer import Consumer
from pgqrs._sync.producer import Producer
from pgqrs._tasks.registry import Task, TaskCall, TaskFailed, TaskHandle, TaskRegistry
from pgqrs._validate import ArchiveStatus
from pgqrs._worker.events import Counters, EventKind, JobEvent
from pgqrs._worker.handlers import Abort, Handler, Retry
from pgqrs._worker.options import Backoff
from pgqrs._worker.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Abort",
    "Admin",
    "AlreadyArchived",
    "ArchiveStatus",
    "ArchivedMessage",
    "Backoff",
    "Config",
    "ConfigError",
    "ConnectionFailed",
    "Consumer",
    "Counters",
    "DatabaseError",
    "Error",
    "EventKind",
    "Handler",
    "InvalidArgument",
    "InvalidQueueName",
    "JobEvent",
    "LeaseError",
    "LeaseExpired",
    "LeaseNotHeld",
    "Message",
    "MessageNotFound",
    "PayloadError",
    "Producer",
    "QueueExists",
    "QueueInfo",
    "QueueNotFound",
    "QueueStats",
    "RateLimit",
    "Retry",
    "ScheduleExists",
    "ScheduleInfo",
    "ScheduleNotFound",
    "SchemaNotInstalled",
    "Task",
    "TaskCall",
    "TaskFailed",
    "TaskHandle",
    "TaskRegistry",
    "VerifyReport",
    "WaitTimeout",
    "Worker",
    "WorkerInfo",
    "__version__",
    "make_pool",
]
