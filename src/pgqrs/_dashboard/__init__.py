"""The web dashboard (``pgqrs dashboard``; ``pgqrs.dashboard.create_app``).

Needs the ``dashboard`` extra: ``pip install 'pgqrs[dashboard]'``.
"""

from pgqrs._dashboard.app import create_app

__all__ = ["create_app"]
