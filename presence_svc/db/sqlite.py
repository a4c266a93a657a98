"""One SQLite file (WAL) under the data dir, holding the ledger and the users directory.

sqlite3 blocks, so the file owns one thread that holds its connection and runs every
statement; the event loop only awaits. WAL lets the API read while a worker writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

__all__ = ["MIGRATIONS", "SqliteFile", "transaction"]

T = TypeVar("T")

# Each entry moves the schema from version i to i + 1 (PRAGMA user_version); append only.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE views (
        view_id     TEXT PRIMARY KEY,
        artifact_id TEXT NOT NULL,
        version_id  TEXT NOT NULL,
        user_id     TEXT NOT NULL,
        session_id  TEXT,
        viewed_at   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX views_by_time ON views (viewed_at, view_id);
    CREATE INDEX views_by_artifact ON views (artifact_id, viewed_at, view_id);
    CREATE INDEX views_by_user ON views (user_id, viewed_at, view_id);
    CREATE TABLE users (
        user_id    TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        avatar_url TEXT,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
)


class SqliteFile:
    """The connection and its thread; ``run`` executes a function on the connection."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return fn(self._conn)

    async def open(self) -> None:
        """Connect and bring the schema up to date."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open_sync)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        # Room for the index pages a drain batch touches (the default is 2 MiB).
        conn.execute("PRAGMA cache_size=-32768")
        _migrate(conn)
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self.run(lambda c: c.execute("SELECT 1").fetchone())


class transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (autocommit connection)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
