"""The asyncio implementation: the source of truth for ``pgqrs._sync``.

Edit these files, then run ``python tools/async_to_sync.py`` to regenerate the
sync twin (a test fails while it is stale).
"""
