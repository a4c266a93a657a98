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

    def __init__(self, message: str, *, named: str | None = None) -> None:
        super().__init__(message)
        self._named = named
        """The cause when it is known without a driver error (a readiness probe that
        finds the database read-only)."""

    @property
    def reason(self) -> str:
        """The named cause (``disk full``) when the database said why, else the driver's
        error type, e.g. ``ConnectionRefusedError``."""
        return self._named or _named_cause(self.__cause__) or type(self.__cause__ or self).__name__

    @property
    def cause(self) -> str:
        """Why, in a few words, from a small fixed set (a metric label): ``disk full``,
        ``read-only``, ``too many connections``, ..., else ``unreachable``."""
        named = self._named or _named_cause(self.__cause__)
        if named is not None:
            return named
        if isinstance(self.__cause__, TimeoutError):
            return "timeout"
        if isinstance(self.__cause__, SchemaBehind):
            return "schema behind"
        return "unreachable"


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
_POSTGRES = {  # SQLSTATE -> cause: the server says "not now", not "your query is wrong"
    "53100": "disk full",  # disk_full
    "53200": "out of memory",  # out_of_memory
    "53000": "out of resources",  # insufficient_resources
    "53300": "too many connections",  # too_many_connections
    "25006": "read-only",  # read_only_sql_transaction (a standby, or read-only by setting)
    "57P01": "shutting down",  # admin_shutdown
    "57P02": "shutting down",  # crash_shutdown
    "57P03": "starting up",  # cannot_connect_now (starting, recovering, shutting down)
    # two transactions each waited for the other: one was cancelled, and the same request
    # sent again goes through (the client's retry after Retry-After), so not a bug
    "40P01": "deadlock",  # deadlock_detected
}
_SQLITE = {
    "database or disk is full": "disk full",  # SQLITE_FULL
    "attempt to write a readonly database": "read-only",  # SQLITE_READONLY
    "disk I/O error": "disk error",  # SQLITE_IOERR
    "database is locked": "locked",
    "database table is locked": "locked",
    "unable to open database file": "unreachable",
}


def _named_cause(exc: BaseException | None) -> str | None:
    if isinstance(exc, asyncpg.PostgresError):
        return _POSTGRES.get(str(exc.sqlstate))
    if isinstance(exc, sqlite3.OperationalError):
        return _SQLITE.get(str(exc))
    return None


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _OUT_OF_REACH):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return str(exc) in _INTERFACE
    if isinstance(exc, asyncpg.InternalClientError):
        # a session the server ended under us (a failover, pg_terminate_backend) can leave
        # asyncpg's protocol out of step: "cannot switch to state ..."
        return str(exc).startswith("cannot switch to state")
    return _named_cause(exc) is not None


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
