"""The worker runtime: runs handlers for queued jobs (``pgqrs.Worker``, ``pgqrs.aio.Worker``).

asyncio is the one implementation: the blocking ``pgqrs.Worker`` runs the same
runtime on its own event loop. Modules, by job (the Rust worker has the same
file map, ``rust/src/worker/``):

* ``worker``     the public classes: building and validating options
* ``options``    option types: ``Backoff`` (public), ``Options``
* ``defaults``   every default, named and documented
* ``runtime``    wiring only: start -> serve -> shutdown
* ``shutdown``   stop requests and the two-stage shutdown
* ``jobs``       the job table: each held message's ``JobState``, and its slot accounting
* ``outcome``    the pure decision: handler outcome -> completed / retry / dead / release
* ``slots``      slot and held-bound counting (a leaf)
* ``fetcher``    one dequeue per round for the free slots of a queue
* ``prefetch``   how many messages a dequeue takes ahead of a free slot
* ``completer``  batched, fenced, retried archive/release writes
* ``leases``     extends the leases of long-running handlers
* ``heartbeat``  the worker's row: heartbeat, re-registration, reaping
* ``listener``   LISTEN for enqueue notifications (a wake-up hint only)
* ``events``     per-job events, counters, and signals (test hooks)
* ``handlers``   handler registration, Retry/Abort, the thread pool, running a job
* ``reconnect``  waits between attempts to reach the database again
"""
