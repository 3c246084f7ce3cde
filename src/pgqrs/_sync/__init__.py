# WARNING: generated from src/pgqrs/_async/__init__.py by tools/async_to_sync.py.
# Do not edit: change the asyncio source and regenerate.
"""The blocking twin of pgqrs._sync, generated from it."""
