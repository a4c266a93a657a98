"""Tier 3: every counted view reaches the ledger exactly once, whatever happens to workers,
Redis and the database on the way; on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import asyncpg
import pytest
import redis

from presence_svc.database import Database
from presence_svc.db.errors import DatabaseUnavailable
from presence_svc.ledger.drain import GATHER_S, GROUP, LedgerDrain
from presence_svc.ledger.entry import LedgerRow, encode_entry
from presence_svc.ledger.store import LedgerQuery
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.stats.views import ViewStore
from tests.children import dies_with_us
from tests.conftest import AppClient, MakeClient, opened_database
from tests.postgres import PostgresServer

Auth = Callable[..., dict[str, str]]
CLI = str(Path(sys.executable).with_name("presence-svc"))
View = tuple[str, str, str]


_SELECT = "SELECT artifact_id, version_id, user_id FROM views"


async def ledger_rows(url: str) -> list[View]:
    """The ledger's rows, read straight from the database at ``url``."""
    if url.startswith("postgresql://"):
        try:
            conn = await asyncpg.connect(url)
        except (OSError, asyncpg.CannotConnectNowError):  # down, or still recovering
            return []
        try:
            return [tuple(r) for r in await conn.fetch(_SELECT)]  # type: ignore[misc]
        except asyncpg.UndefinedTableError:  # the worker has not created the schema yet
            return []
        finally:
            await conn.close()
    return _sqlite_rows(Path(url.removeprefix("sqlite:///")))


def _sqlite_rows(path: Path) -> list[View]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as sqlite:
        try:
            rows = sqlite.execute(_SELECT).fetchall()
        except sqlite3.OperationalError:  # the worker has not created the schema yet
            return []
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def wait_for_rows(url: str, expected: int, timeout_s: float = 30) -> list[View]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = await ledger_rows(url)
        if len(rows) >= expected:
            await asyncio.sleep(0.3)  # anything extra would show up now
            return await ledger_rows(url)
        await asyncio.sleep(0.05)
    return await ledger_rows(url)


@contextlib.asynccontextmanager
async def write_lock(url: str, table: str = "views") -> AsyncIterator[None]:
    """Hold the ledger's write lock: a worker's insert waits until it is let go."""
    if url.startswith("postgresql://"):
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
                yield
        finally:
            await conn.close()
        return
    sqlite = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    sqlite.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        sqlite.execute("ROLLBACK")
        sqlite.close()


def pending_views(sync_redis: redis.Redis) -> int:
    keys = Keyspace(16)
    return sum(int(sync_redis.xpending(keys.views_stream(t), GROUP)["pending"]) for t in keys.tags)


async def wait_for_pending(sync_redis: redis.Redis) -> None:
    """Until a worker holds a batch it has read and not written."""
    deadline = time.monotonic() + 10
    while not pending_views(sync_redis):
        assert time.monotonic() < deadline, "the worker never picked up the batch"
        await asyncio.sleep(0.05)


class Producer:
    """Records views of distinct users (each is counted) until stopped; keeps what was
    answered counted: true."""

    def __init__(self, client: AppClient, auth: Auth) -> None:
        self.client, self.auth = client, auth
        self.counted: list[View] = []
        self.failed = 0
        self._n = 0

    async def one(self) -> None:
        self._n += 1
        artifact, version, user = f"doc-{self._n % 7}", f"v{self._n % 3}", f"user-{self._n}"
        response = await self.client.post(
            "/v1/views",
            json={"artifactId": artifact, "versionId": version},
            headers=self.auth(user),
        )
        if response.status == 200 and (await response.json())["counted"]:
            self.counted.append((artifact, version, user))
        else:
            self.failed += 1

    async def run(self, count: int, concurrency: int = 8) -> None:
        for _ in range(count // concurrency):
            await asyncio.gather(*(self.one() for _ in range(concurrency)))

    async def run_until(self, stop: asyncio.Event, concurrency: int = 4) -> None:
        while not stop.is_set():
            await asyncio.gather(*(self.one() for _ in range(concurrency)))


async def until(ok: Callable[[], bool], what: str, within_s: float = 30) -> None:
    """Poll for ``ok`` (what a user would see: views counted, refused, counted again); a
    loaded machine can take seconds where a quiet one takes milliseconds."""
    deadline = time.monotonic() + within_s
    while not ok():
        assert time.monotonic() < deadline, f"{what} within {within_s} s"
        await asyncio.sleep(0.05)


async def assert_each_counted_view_once(url: str, producer: Producer) -> None:
    """The ledger at ``url`` comes to hold every view ``producer`` had counted, each once,
    and nothing else."""
    rows = await wait_for_rows(url, len(producer.counted))
    assert Counter(rows) == Counter(producer.counted)


def worker_env(settings: Settings, ledger_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env.update(
        {
            "PRESENCE_REDIS_URL": settings.redis_url or "",
            "PRESENCE_LEDGER_URL": ledger_url,
            "PRESENCE_PARTITIONS": str(settings.partitions),
            "PRESENCE_DATA_DIR": str(data_dir),
            "PRESENCE_LEDGER_RECLAIM_IDLE_S": "1",
            "PRESENCE_SWEEP_INTERVAL_S": "0.2",
            "PRESENCE_ONLINE_TIMEOUT_S": "1",
            "PRESENCE_HEARTBEAT_INTERVAL_S": "0.5",
            "PRESENCE_RETENTION_S": "3",
        }
    )
    return env


Workers = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    """``start(url)`` runs a ``presence-svc worker`` draining into the ledger at ``url``
    (``**env``: more environment variables)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(url: str, **env: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [CLI, "worker"],
            env=worker_env(settings, url, tmp_path) | env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=dies_with_us(),
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
        process.wait(15)
        if process.stderr:
            process.stderr.close()


@pytest.mark.timeout(90)
async def test_worker_killed_mid_batch_then_restarted_loses_and_duplicates_nothing(
    client: AppClient,
    auth: Auth,
    sync_redis: redis.Redis,
    ledger_url: str,
    workers: Workers,
) -> None:
    first = workers(ledger_url)
    producer = Producer(client, auth)
    await producer.run(40)
    await wait_for_rows(ledger_url, 40)
    # Hold the ledger's write lock: the worker reads the next batch, cannot commit it.
    async with write_lock(ledger_url):
        await producer.run(80)
        await wait_for_pending(sync_redis)
        first.send_signal(signal.SIGKILL)
        first.wait(10)

    workers(ledger_url)  # a fresh worker reclaims what the dead one held
    await producer.run(40)
    assert len(producer.counted) == 160
    await assert_each_counted_view_once(ledger_url, producer)


@pytest.mark.timeout(90)
async def test_two_workers_draining_at_once_write_each_view_once(
    client: AppClient, auth: Auth, ledger_url: str, workers: Workers
) -> None:
    workers(ledger_url)
    workers(ledger_url)
    producer = Producer(client, auth)
    await producer.run(200)
    assert len(producer.counted) == 200
    await assert_each_counted_view_once(ledger_url, producer)


@pytest.mark.timeout(90)
async def test_postgres_crashed_mid_batch_and_restarted_every_view_lands_once(
    client: AppClient,
    auth: Auth,
    sync_redis: redis.Redis,
    own_postgres: PostgresServer,
    workers: Workers,
) -> None:
    """``pg_ctl stop -m immediate`` while the worker's insert is in flight (held up by a
    lock), views still being counted while PostgreSQL is down, then a restart (with crash
    recovery): the worker writes what it held and drains on, nothing lost or doubled."""
    url = own_postgres.url()
    worker = workers(url)
    producer = Producer(client, auth)
    await producer.run(40)
    await wait_for_rows(url, 40)
    stop = asyncio.Event()
    flowing = asyncio.create_task(producer.run_until(stop))
    try:
        lock = write_lock(url)
        await lock.__aenter__()
        await wait_for_pending(sync_redis)
        own_postgres.stop("immediate")
        own_postgres.wait_gone()
        with contextlib.suppress(Exception):  # its connection died with the server
            await lock.__aexit__(None, None, None)
        during = len(producer.counted)
        await asyncio.sleep(1.5)  # an outage of a while (the worker finds it down)
        # views are counted while it is down
        await until(lambda: len(producer.counted) > during, "no view counted while it is down")
        own_postgres.start()
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await flowing
    assert producer.failed == 0
    await assert_each_counted_view_once(url, producer)
    deadline = time.monotonic() + 10
    while pending_views(sync_redis):
        assert time.monotonic() < deadline, "views left pending"
        await asyncio.sleep(0.1)
    worker.terminate()
    assert worker.wait(15) == 0
    log = worker.stderr.read().decode()  # type: ignore[union-attr]
    assert "database unavailable; holding" in log
    assert "database back" in log


@pytest.mark.timeout(90)
async def test_redis_restart_while_views_flow_keeps_every_counted_view(
    make_client: MakeClient, auth: Auth, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "own-redis")
    url = server.start()
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    try:
        client = await make_client(
            redis_url=url,
            run_worker=True,
            ledger_url=ledger,
            ledger_reclaim_idle_s=1.0,
        )
        producer = Producer(client, auth)
        stop = asyncio.Event()
        flowing = asyncio.create_task(producer.run_until(stop))
        await until(lambda: len(producer.counted) > 0, "no view counted")
        before = len(producer.counted)
        server.stop()  # SIGTERM: Redis writes its AOF and exits
        await until(lambda: producer.failed > 0, "no view refused while Redis was down")
        server.start()
        restarted = len(producer.counted)
        await until(lambda: len(producer.counted) > restarted, "no view counted after")
        stop.set()
        await flowing
        assert before > 0
        assert producer.failed > 0  # views were refused (503) while Redis was down
        assert len(producer.counted) > before  # and flowed again after
        await assert_each_counted_view_once(ledger, producer)
    finally:
        server.stop()


# The drain's parts, against the real Redis, without processes.


@pytest.fixture
async def parts(
    redis_conn: RedisConnection, ledger_url: str
) -> AsyncIterator[tuple[RedisConnection, Database]]:
    async with opened_database(ledger_url) as database:
        yield redis_conn, database


@contextlib.asynccontextmanager
async def draining(drain: LedgerDrain) -> AsyncIterator[None]:
    """``drain`` running in a task for the block, stopped cleanly after it."""
    stopping = asyncio.Event()
    running = asyncio.create_task(drain.run(stopping))
    try:
        yield
    finally:
        stopping.set()
        await running


async def record_views_by_users(redis_conn: RedisConnection, store: ViewStore, views: int) -> None:
    """``views`` views of doc-1 (one stream), one by each of the users ``u0``, ``u1``, ...
    Sent in pipelines of 200: thousands in one took longer to write than the connection's
    0.9 s socket timeout on a loaded machine."""
    for start in range(0, views, 200):
        await redis_conn.run_many(
            [
                store.record_call("doc-1", "v1", f"u{i}", None)
                for i in range(start, min(views, start + 200))
            ]
        )


async def assert_one_row_per_user(database: Database, views: int) -> None:
    """The ledger holds one row for each of the users ``u0`` .. ``u{views - 1}``, no other."""
    rows = await database.ledger.query_views(LedgerQuery(), views + 1)
    assert sorted(r.user_id for r in rows) == sorted(f"u{i}" for i in range(views))


async def wait_until_written(
    database: Database,
    sync_redis: redis.Redis,
    stream: str,
    views: int,
    timeout_s: float,
    failure: str,
) -> None:
    """Until the ledger holds ``views`` rows and no entry of ``stream`` is pending; fails
    with ``failure`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while len(await database.ledger.query_views(LedgerQuery(), views + 1)) < views or int(
        sync_redis.xpending(stream, GROUP)["pending"]
    ):
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.05)


async def test_a_drained_view_keeps_every_field_and_a_missing_session_is_null(
    parts: tuple[RedisConnection, Database], settings: Settings
) -> None:
    redis_conn, database = parts
    store = ViewStore(redis_conn, settings)
    drain = LedgerDrain(redis_conn, database.ledger, settings, consumer="one")
    await drain.join()
    await store.record("doc:1", "v-2", "user@x", "tab-aaaa1")
    await store.record("doc:1", "v-2", "bob", None)
    await drain.drain_once()
    rows = sorted(await database.ledger.query_views(LedgerQuery(), 10), key=lambda r: r.user_id)
    assert [(r.artifact_id, r.version_id, r.user_id, r.session_id) for r in rows] == [
        ("doc:1", "v-2", "bob", None),
        ("doc:1", "v-2", "user@x", "tab-aaaa1"),
    ]
    assert all(abs(r.viewed_at_ms / 1000 - time.time()) < 60 for r in rows)
    assert len({r.view_id for r in rows}) == 2


async def test_a_read_ahead_that_failed_does_not_stop_the_drain(
    parts: tuple[RedisConnection, Database], settings: Settings
) -> None:
    """The drain reads the next batch while one commits; when that read fails (Redis went
    away), the drain must read afresh once Redis is back, not re-raise the old failure."""
    redis_conn, database = parts
    store = ViewStore(redis_conn, settings)
    drain = LedgerDrain(redis_conn, database.ledger, settings, consumer="one")
    real_read, calls = drain.read, 0

    async def read_failing_once() -> dict[str, list[tuple[bytes, dict[bytes, bytes]]]]:
        nonlocal calls
        calls += 1
        if calls == 2:  # the read-ahead started while the first batch commits
            raise redis.exceptions.ConnectionError("Redis went away")
        return await real_read()

    drain.read = read_failing_once  # type: ignore[method-assign]
    for i in range(3):
        await store.record("doc-1", "v1", f"early-{i}", None)
    async with draining(drain):
        for expected in (3, 6):
            deadline = time.monotonic() + 10
            while len(await database.ledger.query_views(LedgerQuery(), 10)) < expected:
                assert time.monotonic() < deadline, "the drain stopped after a failed read"
                await asyncio.sleep(0.05)
            for i in range(3):  # recorded after the failed read-ahead
                await store.record("doc-1", "v1", f"late-{i}", None)


async def test_a_backlog_of_several_batches_is_written_once_and_fully_acknowledged(
    parts: tuple[RedisConnection, Database], settings: Settings, sync_redis: redis.Redis
) -> None:
    """Batches overlap (one commits while the next is read and the last acknowledged): at
    a clean stop every view is in the ledger once and nothing is left pending."""
    redis_conn, database = parts
    store = ViewStore(redis_conn, settings)
    drain = LedgerDrain(redis_conn, database.ledger, settings, consumer="one")
    await drain.join()
    views = drain.read_count * 3 + 7  # one stream: four batches, the last a short one
    await record_views_by_users(redis_conn, store, views)
    async with draining(drain):
        deadline = time.monotonic() + 20
        while len(await database.ledger.query_views(LedgerQuery(), views + 1)) < views:
            assert time.monotonic() < deadline, "the backlog was not drained"
            await asyncio.sleep(0.02)
    await assert_one_row_per_user(database, views)
    stream = Keyspace(16).views_stream(Keyspace(16).tag_of("doc-1"))
    assert sync_redis.xpending(stream, GROUP)["pending"] == 0


async def test_views_trickling_in_are_gathered_into_a_few_batches(
    parts: tuple[RedisConnection, Database], settings: Settings
) -> None:
    """Caught up, the drain waits ``GATHER_S`` before it reads again: views coming one
    every few ms reach the ledger a few batches a tenth of a second, not one batch each
    (a read and an insert cost about as much for one view as for hundreds, on the event
    loop `serve` shares with requests), and every one of them gets there."""
    redis_conn, database = parts
    store = ViewStore(redis_conn, settings)
    drain = LedgerDrain(redis_conn, database.ledger, settings, consumer="one")
    await drain.join()
    real_insert, batches = database.ledger.insert_views, []

    async def counted(rows: Sequence[LedgerRow]) -> int:
        batches.append(len(rows))
        return await real_insert(rows)

    database.ledger.insert_views = counted  # type: ignore[method-assign]
    views = 60
    async with draining(drain):
        started = time.monotonic()
        for i in range(views):
            await store.record("doc-1", "v1", f"u{i}", None)
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 10
        while sum(batches) < views:
            assert time.monotonic() < deadline, "the trickle was not drained"
            await asyncio.sleep(0.02)
    await assert_one_row_per_user(database, views)
    # one batch per pause while views came, and the last ones after (reading again at
    # once made about one batch per view)
    assert len(batches) <= elapsed / GATHER_S + 3, batches


async def test_a_batch_whose_commit_failed_is_reclaimed_while_later_ones_are_written(
    parts: tuple[RedisConnection, Database], settings: Settings, sync_redis: redis.Redis
) -> None:
    """Writes are queued one behind the other; when one fails, its entries stay pending
    (no XACK) and the drain carries on; the reclaim writes them later, once."""
    redis_conn, database = parts
    settings = settings.replace(ledger_reclaim_idle_s=0.3)
    store = ViewStore(redis_conn, settings)
    drain = LedgerDrain(redis_conn, database.ledger, settings, consumer="one")
    await drain.join()
    real_insert, calls = database.ledger.insert_views, 0

    async def insert_failing_once(rows: Sequence[LedgerRow]) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            if database.kind == "postgres":
                raise asyncpg.DiskFullError("could not extend file")
            raise sqlite3.OperationalError("disk I/O error")
        return await real_insert(rows)

    database.ledger.insert_views = insert_failing_once  # type: ignore[method-assign]
    views = drain.read_count * 2 + 3  # one stream: three batches, the first one fails
    await record_views_by_users(redis_conn, store, views)
    stream = Keyspace(16).views_stream(Keyspace(16).tag_of("doc-1"))
    async with draining(drain):
        await wait_until_written(
            database, sync_redis, stream, views, 20, "the failed batch was never written"
        )
    await assert_one_row_per_user(database, views)
    assert calls >= 4  # three batches and at least one reclaim


async def test_batches_that_found_the_database_down_are_held_and_written_when_it_is_back(
    parts: tuple[RedisConnection, Database], settings: Settings, sync_redis: redis.Redis
) -> None:
    """The drain stops reading while the database is down and writes the batches it had in
    hand as soon as a ping answers: no waiting for the reclaim (an hour here), nothing
    delivered twice."""
    redis_conn, database = parts
    settings = settings.replace(ledger_reclaim_idle_s=3600)
    store = ViewStore(redis_conn, settings)
    drain = LedgerDrain(redis_conn, database.ledger, settings, consumer="one")
    await drain.join()
    down = True
    real_insert, real_ping = database.ledger.insert_views, database.ledger.ping

    async def insert(rows: Sequence[LedgerRow]) -> int:
        if down:
            raise DatabaseUnavailable("ConnectionRefusedError: refused")
        return await real_insert(rows)

    async def ping() -> None:
        if down:
            raise DatabaseUnavailable("ConnectionRefusedError: refused")
        await real_ping()

    database.ledger.insert_views = insert  # type: ignore[method-assign]
    database.ledger.ping = ping  # type: ignore[method-assign]
    views = drain.read_count * 6  # one stream: six batches; at most three are in hand
    await record_views_by_users(redis_conn, store, views)
    stream = Keyspace(16).views_stream(Keyspace(16).tag_of("doc-1"))
    async with draining(drain):
        await asyncio.sleep(1.5)
        read = int(sync_redis.xpending(stream, GROUP)["pending"])
        assert 0 < read < views  # it read a batch or two, then stopped reading
        down = False
        await wait_until_written(
            database, sync_redis, stream, views, 10, "the held batches were not written"
        )
    await assert_one_row_per_user(database, views)
    details = sync_redis.xpending_range(stream, GROUP, "-", "+", views)
    assert details == []  # every entry acknowledged; none went to another delivery


async def test_trim_never_drops_entries_still_pending(
    parts: tuple[RedisConnection, Database], settings: Settings, sync_redis: redis.Redis
) -> None:
    redis_conn, database = parts
    store = ViewStore(redis_conn, settings)
    drain = LedgerDrain(redis_conn, database.ledger, settings, consumer="one")
    await drain.join()
    for i in range(5):
        await store.record("doc-1", "v1", f"u{i}", None)
    stream = Keyspace(16).views_stream(Keyspace(16).tag_of("doc-1"))
    sync_redis.xreadgroup(GROUP, "other", {stream: ">"}, count=2)  # delivered, never acked
    await drain.drain_once()  # writes and acks the other three
    await drain.trim_and_measure()
    assert sync_redis.xlen(stream) == 5  # the two pending ones hold everything after them
    assert len(await database.ledger.query_views(LedgerQuery(), 100)) == 3


async def test_entries_trimmed_while_pending_are_acknowledged_and_poison_is_parked(
    parts: tuple[RedisConnection, Database], settings: Settings, sync_redis: redis.Redis
) -> None:
    redis_conn, database = parts
    settings = settings.replace(ledger_reclaim_idle_s=0.05)
    drain = LedgerDrain(redis_conn, database.ledger, settings, consumer="rescuer")
    await drain.join()
    keys = Keyspace(16)
    stream = keys.views_stream(keys.tags[0])
    good = LedgerRow("v-good", "doc", "v1", "alice", None, 1_700_000_000_000)
    gone_id = sync_redis.xadd(stream, encode_entry(good._replace(view_id="v-gone")))
    sync_redis.xadd(stream, encode_entry(good))
    sync_redis.xadd(stream, {"junk": "1"})
    sync_redis.xreadgroup(GROUP, "dead-worker", {stream: ">"}, count=10)
    sync_redis.xdel(stream, gone_id)
    await asyncio.sleep(0.1)
    await drain.reclaim(stream)
    assert sync_redis.xpending(stream, GROUP)["pending"] == 0
    rows = await database.ledger.query_views(LedgerQuery(), 10)
    assert [r.view_id for r in rows] == ["v-good"]
    dead = sync_redis.xrange(keys.dead_letters(keys.tags[0]))
    assert len(dead) == 1
    assert dead[0][1][b"reason"].startswith(b"not a view entry")


async def test_an_entry_delivered_more_than_five_times_goes_to_dead_letters(
    parts: tuple[RedisConnection, Database], settings: Settings, sync_redis: redis.Redis
) -> None:
    redis_conn, database = parts
    drain = LedgerDrain(
        redis_conn,
        database.ledger,
        settings.replace(ledger_reclaim_idle_s=0.01),
        consumer="rescuer",
    )
    await drain.join()
    keys = Keyspace(16)
    stream = keys.views_stream(keys.tags[1])
    row = LedgerRow("v-x", "doc", "v1", "alice", None, 1_700_000_000_000)
    entry = sync_redis.xadd(stream, encode_entry(row))
    sync_redis.xreadgroup(GROUP, "flaky", {stream: ">"})
    for _ in range(5):  # five more deliveries to workers that died before writing
        sync_redis.xclaim(stream, GROUP, "flaky", 0, [entry])
    await asyncio.sleep(0.02)
    await drain.reclaim(stream)
    assert await database.ledger.query_views(LedgerQuery(), 10) == []
    assert len(sync_redis.xrange(keys.dead_letters(keys.tags[1]))) == 1
    assert sync_redis.xpending(stream, GROUP)["pending"] == 0


def test_workers_alive_at_once_on_one_data_dir_have_their_own_names_a_successor_the_same(
    tmp_path: Path,
) -> None:
    from presence_svc.worker import WorkerIdentity

    first, second = WorkerIdentity(tmp_path), WorkerIdentity(tmp_path)
    assert first.name != second.name
    name = first.name
    first.release()  # as a process that died: its lock is let go
    again = WorkerIdentity(tmp_path)
    assert again.name == name
    elsewhere = WorkerIdentity(tmp_path / "elsewhere")
    assert elsewhere.name != name
    for identity in (second, again, elsewhere):
        identity.release()
