# WARNING: generated from src/pgqrs/_async/_base.py by tools/async_to_sync.py.
# Do not edit: change the asyncio source and regenerate.
"""What Admin, Producer and Consumer share: a Database and a lifecycle."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Self
    else:
        from typing_extensions import Self

from psycopg_pool import ConnectionPool

from pgqrs._sync._db import Database
from pgqrs._config import Config
from pgqrs._errors import ConfigError


class Client:
    """Owns a pool (or borrows ``pool``); close it, or use ``with``."""

    def __init__(self, config: Config, *, pool: ConnectionPool | None = None) -> None:
        if not isinstance(config, Config):
            raise ConfigError(
                f"expected a pgqrs.Config, got {type(config).__name__} "
                "(build one with pgqrs.Config.from_dsn(...))"
            )
        self.config = config
        self._db = Database(config, pool)

    def open(self) -> None:
        """Connect now instead of on first use (fails fast on a bad DSN)."""
        self._db.open()

    def close(self) -> None:
        """Close the pool this object owns (a shared pool is left open)."""
        self._db.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
