"""A PostgreSQL database (13+) through an asyncpg connection pool.

asyncpg speaks PostgreSQL's binary protocol natively and asynchronously (no thread per
query, no psycopg C library to install), prepares and caches statements per connection,
and sends a batch as arrays in one round trip; its DSN parsing takes the usual
``postgresql://user:pass@host:5432/db?sslmode=...``.

Migrations run under a session advisory lock, so ten processes starting at once apply
each migration once; the others wait, then find nothing to do.

When PostgreSQL was out of reach at start (``Database.start``), the pool is made on first
use, so the service serves what lives in Redis meanwhile; every failure that means "out of
reach" comes out as ``DatabaseUnavailable``. Once made, asyncpg's pool replaces the
connections a restart broke by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from presence_svc.db.deadline import REQUEST_BUDGET_S
from presence_svc.db.errors import DatabaseUnavailable, unavailable_as_one
from presence_svc.db.migrations import Migration, SchemaBehind, migrations, statements

__all__ = ["MIGRATION_LOCK", "PostgresPool"]

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x70726573656E6365  # "presence": the advisory lock key for migrations
CONNECT_TIMEOUT_S = 5.0
"""A host that drops packets fails a request within this, rather than asyncpg's minute."""
_CREATE_HISTORY = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


class PostgresPool:
    """The pool of one process, and the schema it works on."""

    kind = "postgres"

    def __init__(self, dsn: str, *, pool_size: int = 10, auto_migrate: bool = True) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.auto_migrate = auto_migrate
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._attempts = 0
        self._failure: DatabaseUnavailable | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not open")
        return self._pool

    async def open(self) -> None:
        """Connect and bring the schema up to date (or, without ``auto_migrate``, check
        that it is); raises the driver's own error (or ``SchemaBehind``) if it cannot, as
        a command reports it."""
        try:
            await self.connected()
        except DatabaseUnavailable as exc:
            raise (exc.__cause__ or exc) from None

    async def connected(self) -> asyncpg.Pool:
        """The pool, made (and the schema migrated) now if it is not yet.

        One attempt at a time: requests that waited for an attempt that failed get its
        failure, rather than each trying again in turn.
        """
        if (ready := self._pool) is not None:
            return ready
        attempt = self._attempts
        async with self._opening:
            if (ready := self._pool) is not None:
                return ready  # made while this one waited
            if self._attempts != attempt and self._failure is not None:
                raise DatabaseUnavailable(str(self._failure)) from self._failure.__cause__
            self._attempts += 1
            self._failure = None  # an attempt cancelled midway leaves the next to try
            try:
                async with unavailable_as_one():
                    pool = await self._connect()
            except DatabaseUnavailable as exc:
                self._failure = exc
                raise
            self._pool = pool
            return pool

    async def _connect(self) -> asyncpg.Pool:
        pool = await self._create_pool()
        try:
            if self.auto_migrate:
                await _migrate(pool)
            else:
                version = await _version(pool)
                if version < len(migrations("postgres")):
                    raise SchemaBehind(version, len(migrations("postgres")))
        except BaseException:
            pool.terminate()
            raise
        return pool

    async def connect(self) -> None:
        """Connect without migrating or checking the schema: for the tools that read or
        migrate it themselves (``presence-svc db status``, ``db migrate``)."""
        self._pool = await self._create_pool()

    async def _create_pool(self) -> asyncpg.Pool:
        return await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            command_timeout=30,
            timeout=CONNECT_TIMEOUT_S,
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @asynccontextmanager
    async def _unavailable_as_one(self) -> AsyncIterator[None]:
        """``unavailable_as_one``; on a read-only answer (or a session out of step with
        its server) the pool's connections are also renewed as they come back: they may
        be sessions on a server demoted to standby (a failover) or opened under a
        read-only default, and the DSN may now lead to a primary."""
        try:
            async with unavailable_as_one():
                yield
        except DatabaseUnavailable as exc:
            stale = isinstance(exc.__cause__, asyncpg.InternalClientError)
            if (exc.cause == "read-only" or stale) and self._pool is not None:
                await self._pool.expire_connections()
            raise

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the pool, for statements that need one (a transaction)."""
        async with self._unavailable_as_one(), asyncio.timeout(REQUEST_BUDGET_S.get()):
            pool = await self.connected()
            async with pool.acquire() as conn:
                yield conn

    async def execute(self, sql: str, *args: Any) -> str:
        async with self._unavailable_as_one():
            return str(await _bounded(self._execute(sql, *args)))

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._unavailable_as_one():
            return list(await _bounded(self._fetch(sql, *args)))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._unavailable_as_one():
            return await _bounded(self._fetchval(sql, *args))

    async def _execute(self, sql: str, *args: Any) -> str:
        return str(await (await self._connected_shielded()).execute(sql, *args))

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return list(await (await self._connected_shielded()).fetch(sql, *args))

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        return await (await self._connected_shielded()).fetchval(sql, *args)

    async def _connected_shielded(self) -> asyncpg.Pool:
        """``connected``, going on when a request gives up waiting for it: a slow connect
        (a database starting up) then completes for the next request instead of being
        cancelled by each in turn."""
        if (ready := self._pool) is not None:
            return ready
        return await asyncio.shield(self.connected())

    async def ping(self) -> None:
        """Answers, and takes writes: a standby (after a failover) or a database whose
        sessions now start read-only answers reads only, which is not ready."""
        if await self.fetchval(_READ_ONLY):
            raise DatabaseUnavailable("the database takes no writes", named="read-only")

    async def migrate(self) -> list[Migration]:
        """Apply what is pending (also with ``auto_migrate`` off); returns what was."""
        return await _migrate(self.pool)

    async def scrub(self) -> None:
        """Nothing to do here: dead row versions go at VACUUM (autovacuum); the README
        says what an operator does about WAL and backups."""

    async def schema_version(self) -> int:
        return await _version(self.pool)


T = TypeVar("T")

_READ_ONLY = "SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only')::bool"
"""Whether a new session here could write: not on a standby, nor under a read-only default
(the session asking may predate the default, so its own ``transaction_read_only`` is no
answer)."""


async def _bounded(call: Coroutine[Any, Any, T]) -> T:
    """``call``, given up after the request's budget (if any) without waiting for it to
    wind down: cancelling a statement on a connection that hears nothing (asyncpg sends a
    cancel request, then resets the connection) can itself hang for the driver's timeout.
    What is given up is cancelled and ends in the background."""
    budget = REQUEST_BUDGET_S.get()
    if budget is None:
        return await call
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=budget)
    if not done:
        task.cancel()
        task.add_done_callback(_ignore_outcome)
        raise TimeoutError(f"the database did not answer within {budget:g} s")
    return task.result()


def _ignore_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failure of what was given up is no news


async def _version(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not exists:
            return 0
        return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))


async def _migrate(pool: asyncpg.Pool) -> list[Migration]:
    """Each pending migration in its own transaction, all under the advisory lock."""
    applied: list[Migration] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(_CREATE_HISTORY)
            history = await conn.fetch("SELECT version FROM schema_migrations")
            done = {record["version"] for record in history}
            for migration in migrations("postgres"):
                if migration.version in done:
                    continue
                async with conn.transaction():
                    for statement in statements(migration.sql):
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                log.info(  # not "name": a LogRecord attribute, which logging refuses in extra
                    "schema migrated",
                    extra={"version": migration.version, "migration": migration.name},
                )
                applied.append(migration)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


def rows_affected(status: str) -> int:
    """The row count of a command status such as ``INSERT 0 12`` or ``DELETE 3``."""
    return int(status.rsplit(" ", 1)[-1])
