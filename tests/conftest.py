"""Shared fixtures: one real redis-server per test session (the same binary the embedded
default uses), flushed before every test; apps served over real HTTP by aiohttp's test
server."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient

from presence_svc.auth import Scope, TokenCodec
from presence_svc.database import Database, open_database
from presence_svc.http.app import create_app
from presence_svc.redis.connection import RedisConnection, connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings
from tests.postgres import PostgresServer

SECRET = "test-secret-that-is-long-enough-for-hs256-and-hs512-0123456789abcdef"

AppClient = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[AppClient]]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    with server.running():
        yield server


def _running(server: PostgresServer) -> Iterator[PostgresServer]:
    """``server`` started, then crashed (no checkpoint to wait for) and removed."""
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.stop("immediate")
        server.remove()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, started on first use."""
    yield from _running(PostgresServer())


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, for tests that stop or crash it (the shared
    one stays up for everyone else); its commits survive a crash."""
    yield from _running(PostgresServer(durable=True))


_databases = itertools.count()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server."""
    name = f"test_{os.getpid()}_{next(_databases)}"
    postgres_server.psql(f"CREATE DATABASE {name}")
    yield postgres_server.url(name)
    postgres_server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ledger database URL of each backend in turn."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"


@contextlib.asynccontextmanager
async def opened_database(url: str) -> AsyncIterator[Database]:
    """The database at ``url``, opened (and migrated), closed after."""
    database = open_database(url)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    with redis.Redis.from_url(redis_server.url) as r:
        r.flushall()
        r.script_flush()
    return redis_server.url


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as r:
        yield r


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        jwt_secret=SECRET,
        heartbeat_interval_s=0.5,
        online_timeout_s=1.0,
        retention_s=3.0,
        view_debounce_s=1.0,
        partitions=16,
        run_worker=False,
        sweep_interval_s=0.2,
        leave_grace_s=0.5,
    )


@pytest.fixture
async def redis_conn(settings: Settings) -> AsyncIterator[RedisConnection]:
    """A connection to the test Redis with every script loaded, as a worker has."""
    connection = connect(settings)
    await connection.load_scripts()
    yield connection
    await connection.aclose()


@pytest.fixture
def tokens() -> TokenCodec:
    return TokenCodec(SECRET)


@pytest.fixture
def auth(tokens: TokenCodec) -> Callable[..., dict[str, str]]:
    """Headers with a bearer token: ``auth("alice")``, ``auth("d", scope="dashboard")``."""

    def headers(
        user: str, scope: str = "client", artifacts: list[str] | None = None, ttl_s: int = 600
    ) -> dict[str, str]:
        token = tokens.issue(user, scope=Scope(scope), artifacts=artifacts, ttl_s=ttl_s)
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
async def make_client(
    aiohttp_client: Callable[..., Awaitable[AppClient]], settings: Settings
) -> MakeClient:
    """A client of an app built from the test settings, with ``**changes`` applied."""

    async def make(**changes: Any) -> AppClient:
        return await aiohttp_client(create_app(settings.replace(**changes)))

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> AsyncIterator[AppClient]:
    return await make_client()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
