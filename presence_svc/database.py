"""The configured database: the ledger (tier 3) and the users directory on one backend.

The ledger holds opaque user ids only; names and avatars live in the users directory
alone, so erasing a profile erases the person's data everywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from presence_svc.db import SqliteFile, sqlite_path
from presence_svc.db.errors import DatabaseUnavailable, is_unavailable
from presence_svc.db.migrations import Migration, SchemaBehind, migrations
from presence_svc.db.postgres import PostgresPool
from presence_svc.ledger.engagement import EngagementLedger
from presence_svc.ledger.engagement_postgres import PostgresEngagement
from presence_svc.ledger.engagement_sqlite import SqliteEngagement
from presence_svc.ledger.postgres import PostgresLedger
from presence_svc.ledger.sqlite import SqliteLedger
from presence_svc.ledger.store import LedgerStore
from presence_svc.settings import Settings
from presence_svc.users.directory import UsersDirectory
from presence_svc.users.postgres import PostgresUsers
from presence_svc.users.sqlite import SqliteUsers
from presence_svc.webhooks.store import PostgresWebhooks, SqliteWebhooks, WebhookStore

__all__ = ["Database", "DatabaseUnavailable", "database_for", "open_database"]

log = logging.getLogger(__name__)

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True, slots=True)
class Database:
    """One connection (a SQLite file or a PostgreSQL pool) and the stores on it."""

    connection: SqliteFile | PostgresPool
    ledger: LedgerStore
    users: UsersDirectory
    engagement: EngagementLedger
    """Engaged-time daily totals (ledger/engagement.py)."""
    webhooks: WebhookStore

    @property
    def kind(self) -> str:
        return self.connection.kind

    async def open(self) -> None:
        """Connect and migrate the schema (or check it is current, with auto-migrate off)."""
        await self.connection.open()

    async def connect(self) -> None:
        """Connect and leave the schema as it is: ``presence-svc db status`` reads it and
        ``db migrate`` migrates it, whatever ``auto_migrate`` says."""
        await self.connection.connect()

    async def start(self) -> None:
        """``open``, for a long-running process: a database out of reach now is logged and
        connected on first use (the service serves what lives in Redis meanwhile); a
        schema behind with auto-migrate off, or any other failure, still stops the start."""
        try:
            await self.open()
        except SchemaBehind:
            raise
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning(
                "database unreachable at start; serving without it, connecting on first use",
                extra={"database": self.kind, "error": repr(exc)},
            )

    async def close(self) -> None:
        await self.connection.close()

    async def ping(self) -> None:
        await self.connection.ping()

    async def scrub(self) -> None:
        """After an erasure: leave no copy of erased bytes in the database's own files."""
        await self.connection.scrub()

    async def migrate(self) -> list[Migration]:
        return await self.connection.migrate()

    async def schema(self) -> tuple[int, int]:
        """The schema version the database is at, and the latest this release knows."""
        return await self.connection.schema_version(), len(migrations(self.kind))


def open_database(url: str, *, pool_size: int = 10, auto_migrate: bool = True) -> Database:
    """A database for ``url`` (not yet connected: ``open`` it).

    ``sqlite:///path`` (relative; ``sqlite:////abs/path`` absolute) or
    ``postgresql://user:pass@host:5432/db`` (also ``postgres://``, with ``?sslmode=``).
    """
    if url.startswith(POSTGRES_SCHEMES):
        pool = PostgresPool(url, pool_size=pool_size, auto_migrate=auto_migrate)
        return Database(
            pool,
            PostgresLedger(pool),
            PostgresUsers(pool),
            PostgresEngagement(pool),
            PostgresWebhooks(pool),
        )
    path = sqlite_path(url)
    if path is None:
        raise ValueError(f"unsupported ledger URL {url!r}")
    file = SqliteFile(path, auto_migrate=auto_migrate)
    return Database(
        file, SqliteLedger(file), SqliteUsers(file), SqliteEngagement(file), SqliteWebhooks(file)
    )


def database_for(settings: Settings) -> Database:
    """The database ``settings`` configure (not yet connected)."""
    return open_database(
        settings.resolved_ledger_url,
        pool_size=settings.db_pool_size,
        auto_migrate=settings.db_auto_migrate,
    )
