"""The durable database: the views ledger (tier 3) and the users directory.

The ledger holds opaque user ids only; names and avatars live in the users directory
alone, so erasing a profile erases the person's data everywhere. Backends implement
``Database``; ``open_database`` picks one from ``PRESENCE_LEDGER_URL``.
"""

from __future__ import annotations

from presence_svc.db.base import Database, LedgerQuery, LedgerRow, Profile
from presence_svc.db.sqlite import SqliteDatabase

__all__ = ["Database", "LedgerQuery", "LedgerRow", "Profile", "SqliteDatabase", "open_database"]


def open_database(url: str) -> Database:
    """A database for ``url``; only SQLite exists so far (PostgreSQL is next).

    As in SQLAlchemy, ``sqlite:///rel/path`` is relative and ``sqlite:////abs/path`` absolute.
    """
    prefix = "sqlite:///"
    if url.startswith(prefix) and len(url) > len(prefix):
        return SqliteDatabase(url[len(prefix) :])
    raise ValueError(f"unsupported ledger URL {url!r}")
