"""The configured database: the ledger (tier 3) and the users directory on one backend.

The ledger holds opaque user ids only; names and avatars live in the users directory
alone, so erasing a profile erases the person's data everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from presence_svc.db import SqliteFile, sqlite_path
from presence_svc.ledger.sqlite import SqliteLedger
from presence_svc.ledger.store import LedgerStore
from presence_svc.users.directory import UsersDirectory
from presence_svc.users.sqlite import SqliteUsers

__all__ = ["Database", "open_database"]


@dataclass(frozen=True, slots=True)
class Database:
    """One connection (or pool) and the two stores that share it."""

    connection: SqliteFile
    ledger: LedgerStore
    users: UsersDirectory

    async def open(self) -> None:
        """Connect and create or migrate the schema."""
        await self.connection.open()

    async def close(self) -> None:
        await self.connection.close()

    async def ping(self) -> None:
        await self.connection.ping()


def open_database(url: str) -> Database:
    """A database for ``url`` (not yet connected: ``open`` it); only SQLite exists so far."""
    path = sqlite_path(url)
    if path is None:
        raise ValueError(f"unsupported ledger URL {url!r}")
    connection = SqliteFile(path)
    return Database(connection, SqliteLedger(connection), SqliteUsers(connection))
