"""Which database failures mean "unavailable, retry shortly" rather than a bug.

Each connection (``sqlite``, ``postgres``) raises every such failure as one
``DatabaseUnavailable``, chained to the driver's error, so the HTTP edge answers 503 for it
alone, the drain pauses on it, and presence lists leave names out on it; anything else
stays what it is (a bug is a 500).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from presence_svc.db.migrations import SchemaBehind

__all__ = ["DatabaseUnavailable", "is_unavailable", "unavailable_as_one"]


class DatabaseUnavailable(Exception):
    """The database cannot answer now (down, restarting, full, locked, schema behind)."""

    @property
    def reason(self) -> str:
        """The driver's error type, e.g. ``ConnectionRefusedError``."""
        return type(self.__cause__ or self).__name__


_OUT_OF_REACH = (
    DatabaseUnavailable,
    OSError,  # refused, reset, no route, name not resolved
    TimeoutError,  # connecting, or a statement, past its timeout
    SchemaBehind,  # until an operator migrates
    asyncpg.PostgresConnectionError,  # lost mid-query, refused, rejected
    asyncpg.CannotConnectNowError,  # starting up, shutting down, in recovery
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)
_INTERFACE = ("pool is closing", "pool is closed", "connection is closed")
_SQLITE = ("database is locked", "database table is locked", "unable to open database file")


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _OUT_OF_REACH):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return str(exc) in _INTERFACE
    if isinstance(exc, sqlite3.OperationalError):
        return str(exc) in _SQLITE
    return False


@asynccontextmanager
async def unavailable_as_one() -> AsyncIterator[None]:
    """Raise ``DatabaseUnavailable`` for any failure that means the database is out of
    reach; let everything else through unchanged."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
        raise
