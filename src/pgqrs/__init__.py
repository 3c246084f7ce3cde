"""pgqrs: a library-only job queue on PostgreSQL.

The blocking API lives here; ``pgqrs.aio`` has the same classes for asyncio.
"""

from pgqrs._config import Config
from pgqrs._errors import (
    ConfigError,
    ConnectionFailed,
    DatabaseError,
    Error,
    InvalidArgument,
    InvalidQueueName,
    LeaseError,
    LeaseExpired,
    LeaseNotHeld,
    PayloadError,
    QueueExists,
    QueueNotFound,
    SchemaNotInstalled,
)
from pgqrs._models import ArchivedMessage, Message, QueueInfo, QueueStats, VerifyReport, WorkerInfo
from pgqrs._sync._db import make_pool
from pgqrs._sync.admin import Admin
from pgqrs._sync.consumer import Consumer
from pgqrs._sync.producer import Producer

__version__ = "0.1.0"

__all__ = [
    "Admin",
    "ArchivedMessage",
    "Config",
    "ConfigError",
    "ConnectionFailed",
    "Consumer",
    "DatabaseError",
    "Error",
    "InvalidArgument",
    "InvalidQueueName",
    "LeaseError",
    "LeaseExpired",
    "LeaseNotHeld",
    "Message",
    "PayloadError",
    "Producer",
    "QueueExists",
    "QueueInfo",
    "QueueNotFound",
    "QueueStats",
    "SchemaNotInstalled",
    "VerifyReport",
    "WorkerInfo",
    "__version__",
    "make_pool",
]
