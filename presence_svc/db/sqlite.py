"""One SQLite file (WAL) under the data dir, holding the ledger and the users directory.

sqlite3 blocks, so the file owns one thread that holds its connection and runs every
statement; the event loop only awaits. WAL lets the API read while a worker writes.

A file that could not be opened at start (``Database.start``) is opened on first use;
a locked or unopenable file comes out as ``DatabaseUnavailable``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from presence_svc.db.deadline import REQUEST_BUDGET_S
from presence_svc.db.errors import unavailable_as_one
from presence_svc.db.migrations import Migration, SchemaBehind, migrations, statements

__all__ = ["SqliteFile", "execute_many", "transaction"]

T = TypeVar("T")


class SqliteFile:
    """The connection and its thread; ``run`` executes a function on the connection."""

    kind = "sqlite"

    def __init__(self, path: str | Path, *, auto_migrate: bool = True) -> None:
        self.path = Path(path)
        self.auto_migrate = auto_migrate
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the connection's thread; for an HTTP request, given up (503
        ``timeout``) after the request's budget: a file locked by another process would
        otherwise hold the request for the 30 s busy timeout. What is given up still runs
        to its end on the thread (a write may then land after its request answered 503:
        the writes a request makes here are idempotent, so a retry is harmless)."""
        loop = asyncio.get_running_loop()
        async with unavailable_as_one(), asyncio.timeout(REQUEST_BUDGET_S.get()):
            return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._open_sync()  # on the one thread: opened once, whoever asks first
        assert self._conn is not None
        return fn(self._conn)

    async def open(self) -> None:
        """Connect and bring the schema up to date (or, without ``auto_migrate``, check
        that it is)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open_sync)

    async def connect(self) -> None:
        """Connect without migrating or checking the schema: for the tools that read or
        migrate it themselves (``presence-svc db status``, ``db migrate``)."""
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._connect_sync)

    def _connect_sync(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        # Off by default in SQLite, per connection: the schema's foreign keys (a webhook
        # delivery's endpoint) hold only where it is on.
        conn.execute("PRAGMA foreign_keys=ON")
        # Deleted and rewritten rows are zeroed, not left in free space (erasure).
        conn.execute("PRAGMA secure_delete=ON")
        # Room for the index pages a drain batch touches (the default is 2 MiB).
        conn.execute("PRAGMA cache_size=-32768")
        return conn

    def _open_sync(self) -> None:
        conn = self._connect_sync()
        try:
            if self.auto_migrate:
                _migrate(conn)
            else:
                _require_current(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self.run(lambda c: c.execute("SELECT 1").fetchone())

    async def migrate(self) -> list[Migration]:
        """Apply what is pending (also with ``auto_migrate`` off); returns what was."""
        return await self.run(_migrate)

    async def schema_version(self) -> int:
        return await self.run(_version)

    async def scrub(self) -> None:
        """Copy the WAL into the file and empty it: after an erasure, the old pages (the
        erased bytes) must not outlive it in the WAL."""
        await self.run(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())


class transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (autocommit connection)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def execute_many(conn: sqlite3.Connection, sql: str, rows: Iterable[Sequence[Any]]) -> int:
    """``sql`` for each of ``rows``, in one transaction; returns how many rows it changed."""
    with transaction(conn):
        before = conn.total_changes
        conn.executemany(sql, rows)
        return conn.total_changes - before


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _migrate(conn: sqlite3.Connection) -> list[Migration]:
    """The pending migrations, each in the one transaction that also bumps the version."""
    applied = []
    with transaction(conn):
        version = _version(conn)
        for migration in migrations("sqlite")[version:]:
            for statement in statements(migration.sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {migration.version}")
            applied.append(migration)
    return applied


def _require_current(conn: sqlite3.Connection) -> None:
    version, latest = _version(conn), len(migrations("sqlite"))
    if version < latest:
        raise SchemaBehind(version, latest)
