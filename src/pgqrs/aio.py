"""The asyncio API: the same names and signatures as ``pgqrs``, awaited."""

from pgqrs._async._db import make_pool
from pgqrs._async.admin import Admin
from pgqrs._async.consumer import Consumer
from pgqrs._async.producer import Producer

__all__ = ["Admin", "Consumer", "Producer", "make_pool"]
