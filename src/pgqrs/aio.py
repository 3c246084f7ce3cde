"""The asyncio API: the same names and signatures as ``pgqrs``, awaited."""

from pgqrs._async._db import make_pool
from pgqrs._async.admin import Admin
from pgqrs._async.consumer import Consumer
from pgqrs._async.producer import Producer
from pgqrs._worker.backoff import Backoff
from pgqrs._worker.events import Counters, JobEvent
from pgqrs._worker.handlers import Abort, Retry
from pgqrs._worker.worker import AsyncWorker as Worker

__all__ = [
    "Abort",
    "Admin",
    "Backoff",
    "Consumer",
    "Counters",
    "JobEvent",
    "Producer",
    "Retry",
    "Worker",
    "make_pool",
]
