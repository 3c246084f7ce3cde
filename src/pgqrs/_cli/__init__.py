"""The ``pgqrs`` command line (click + rich), one module per command group.

``main`` is the console script; ``run`` returns the exit code instead of exiting.
"""

from pgqrs._cli.app import cli, main, run

__all__ = ["cli", "main", "run"]
