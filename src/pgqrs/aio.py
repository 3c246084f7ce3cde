"""The asyncio API: the same names and signatures as ``pgqrs``, awaited.

``pgqrs.aio.Worker`` is the asyncio worker (``await worker.run()``); the
values and exceptions it shares with the blocking form (``pgqrs.Retry``,
``pgqrs.Abort``, ``pgqrs.Backoff``, ``pgqrs.JobEvent``, ``pgqrs.TaskRegistry``,
whose tasks have ``aenqueue``) live in ``pgqrs``.
"""

from pgqrs._async._db import make_pool
from pgqrs._async.admin import Admin
from pgqrs._async.consumer import Consumer
from pgqrs._async.producer import Producer
from pgqrs._tasks.registry import AsyncTaskHandle as TaskHandle
from pgqrs._worker.worker import AsyncWorker as Worker

__all__ = ["Admin", "Consumer", "Producer", "TaskHandle", "Worker", "make_pool"]
