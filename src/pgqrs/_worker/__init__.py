"""The worker runtime: runs handlers for queued jobs (``pgqrs.Worker``, ``pgqrs.aio.Worker``).

asyncio is the one implementation: the blocking ``pgqrs.Worker`` runs the same
runtime on its own event loop. Modules, by job:

* ``defaults``  every default, named and documented
* ``handlers``  handler registration, Retry/Abort, the thread pool for sync handlers
* ``backoff``   retry delays (exponential with jitter)
* ``events``    per-job events and counters
* ``fetcher``   one dequeue per round for the free slots of a queue
* ``completer`` batched, fenced, retried archive/release writes
* ``leases``    extends the leases of long-running handlers
* ``listener``  LISTEN for enqueue notifications (a wake-up hint only)
* ``runtime``   ties them together: start, run, graceful shutdown
* ``worker``    the public classes
"""
