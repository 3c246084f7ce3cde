"""Tasks: a job declared once (name, queue, settings, typed arguments) and
enqueued by calling it; served by a worker through a ``TaskRegistry``.

Empty on purpose: ``pgqrs._worker.handlers`` imports ``wire`` from here, and
``registry`` imports the worker's ``Retry``/``Abort``; importing nothing here
keeps that free of cycles.
"""
