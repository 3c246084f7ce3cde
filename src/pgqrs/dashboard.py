"""The web dashboard as an ASGI app, to mount in your own application.

    from pgqrs.dashboard import create_app
    app = create_app(pgqrs.Config.from_dsn(DSN), read_only=True, token=TOKEN)

Needs the ``dashboard`` extra: ``pip install 'pgqrs[dashboard]'``. See
docs/dashboard.md; ``pgqrs dashboard`` serves the same app.
"""

from __future__ import annotations

try:
    from pgqrs._dashboard.app import create_app
except ImportError as exc:  # starlette, jinja2 or python-multipart missing
    raise ImportError(
        f"pgqrs.dashboard needs the dashboard extra ({exc.name} is missing): "
        "pip install 'pgqrs[dashboard]'"
    ) from exc

__all__ = ["create_app"]
