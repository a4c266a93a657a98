"""Redis saying "not now" (out of memory, a replica, persistence failing, loading, a long
script): each is a 503 with Retry-After whose detail names the cause, /readyz names it, a
metric counts it, and the service serves again once Redis does. Before, these were 500s."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import ClientResponse

from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.redis.refusal import refusal
from presence_svc.settings import Settings
from tests.children import dies_with_us
from tests.conftest import AppClient, MakeClient, free_port

pytestmark = pytest.mark.every_redis  # see tests/conftest.py

Auth = Callable[..., dict[str, str]]
BEAT = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
VIEW = {"artifactId": "doc-1", "versionId": "v1"}


@pytest.fixture
def own(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "own-redis")
    with server.running():
        yield server


@pytest.fixture
def admin(own: EmbeddedRedis) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(own.url) as r:
        yield r


@pytest.fixture
async def service(make_client: MakeClient, own: EmbeddedRedis) -> AppClient:
    return await make_client(redis_url=own.url)


async def _refused(response: ClientResponse, code: str) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == 503, body
    assert response.content_type == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    assert f"({code})" in body["detail"], body
    return body


async def _ready_says(service: AppClient, check: str) -> None:
    response = await service.get("/readyz")
    body = await response.json()
    assert (response.status, body["checks"]["redis"]) == (503 if check != "ok" else 200, check)


async def _refusals_counted(service: AppClient, code: str) -> float:
    text = await (await service.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith("presence_refusals_total{") and f'cause="{code}"' in line:
            assert 'dependency="redis"' in line
            return float(line.rsplit(" ", 1)[1])
    return 0.0


Refusing = Callable[[redis.Redis, EmbeddedRedis], contextlib.AbstractAsyncContextManager[None]]


@contextlib.asynccontextmanager
async def _out_of_memory(admin: redis.Redis, own: EmbeddedRedis) -> AsyncIterator[None]:
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    try:
        yield
    finally:
        admin.config_set("maxmemory", 0)


@contextlib.asynccontextmanager
async def _a_replica(admin: redis.Redis, own: EmbeddedRedis) -> AsyncIterator[None]:
    """The primary gone and this server a replica of it (as after a failover, before the
    clients moved): writes are READONLY."""
    admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # nothing listens
    try:
        yield
    finally:
        admin.execute_command("REPLICAOF", "NO", "ONE")


@contextlib.asynccontextmanager
async def _a_replica_serving_no_stale_data(
    admin: redis.Redis, own: EmbeddedRedis
) -> AsyncIterator[None]:
    """A replica cut off from its primary with stale reads off: reads are MASTERDOWN."""
    async with _a_replica(admin, own):
        admin.config_set("replica-serve-stale-data", "no")
        try:
            yield
        finally:
            admin.config_set("replica-serve-stale-data", "yes")


@contextlib.asynccontextmanager
async def _failing_persistence(admin: redis.Redis, own: EmbeddedRedis) -> AsyncIterator[None]:
    """A snapshot that cannot be written (here: its target is a directory) with
    stop-writes-on-bgsave-error: Redis refuses writes until a snapshot succeeds."""
    blocker = own.data_dir / "dump.rdb" / "in-the-way"
    blocker.mkdir(parents=True)
    admin.config_set("save", "3600 1")
    admin.config_set("stop-writes-on-bgsave-error", "yes")
    try:
        _bgsave(admin, "err")
        yield
    finally:
        shutil.rmtree(own.data_dir / "dump.rdb")
        _bgsave(admin, "ok")
        admin.config_set("save", "")


@contextlib.asynccontextmanager
async def _too_few_replicas(admin: redis.Redis, own: EmbeddedRedis) -> AsyncIterator[None]:
    """A primary set to refuse writes without enough replicas (``min-replicas-to-write``,
    as operators set to bound the data lost at a failover)."""
    admin.config_set("min-replicas-to-write", 1)
    try:
        yield
    finally:
        admin.config_set("min-replicas-to-write", 0)


@contextlib.asynccontextmanager
async def _a_long_script(admin: redis.Redis, own: EmbeddedRedis) -> AsyncIterator[None]:
    """Another client's script runs past the busy threshold: Redis answers BUSY to every
    other command until it ends or is killed."""
    admin.config_set("lua-time-limit", 50)
    looping = threading.Thread(target=_run_busy_loop, args=(own.url,), daemon=True)
    looping.start()
    try:
        await _until(lambda: _is_busy(admin))
        yield
    finally:
        await _until(lambda: _kill_script(own.url))
        looping.join(10)


@pytest.mark.parametrize(
    ("refusing", "code", "request_kind", "ready_code", "what"),
    [
        (_out_of_memory, "OOM", "write", "OOM", "out of memory"),
        (_a_replica, "READONLY", "write", "READONLY", "read-only replica"),
        # /readyz probes with a write, which a replica refuses first as READONLY
        (_a_replica_serving_no_stale_data, "MASTERDOWN", "read", "READONLY", "lost its primary"),
        (_failing_persistence, "MISCONF", "write", "MISCONF", "cannot persist"),
        (_too_few_replicas, "NOREPLICAS", "write", "NOREPLICAS", "replicas"),
        (_a_long_script, "BUSY", "write", "BUSY", "long script"),
    ],
    ids=["OOM", "READONLY", "MASTERDOWN", "MISCONF", "NOREPLICAS", "BUSY"],
)
async def test_each_refusal_is_a_503_naming_it_in_readyz_and_the_metric(
    service: AppClient,
    admin: redis.Redis,
    own: EmbeddedRedis,
    auth: Auth,
    refusing: Refusing,
    code: str,
    request_kind: str,
    ready_code: str,
    what: str,
) -> None:
    """Redis refusing in each of its ways: the request is a 503 with Retry-After whose
    detail names the cause, /readyz names it (503), the metric counts it by cause, and
    the service serves again, ready, once Redis does."""

    def request() -> Any:
        if request_kind == "read":
            return service.get("/v1/online?artifactId=doc-1", headers=auth("a"))
        return service.post("/v1/heartbeat", json=BEAT, headers=auth("a"))

    assert (await request()).status == 200
    counted = await _refusals_counted(service, code)
    async with refusing(admin, own):
        body = await _refused(await request(), code)
        assert what in body["detail"], body
        await _ready_says(service, f"unavailable: {ready_code}")
        assert await _refusals_counted(service, code) == counted + 1
        if request_kind == "write":  # a view too: its two scripts in one round trip
            await _refused(await service.post("/v1/views", json=VIEW, headers=auth("a")), code)
            assert await _refusals_counted(service, code) == counted + 2
    assert (await request()).status == 200
    await _ready_says(service, "ok")


async def test_out_of_memory_refuses_writes_and_leaves_reads(
    service: AppClient, admin: redis.Redis, own: EmbeddedRedis, auth: Auth
) -> None:
    async with _out_of_memory(admin, own):
        await _refused(await service.post("/v1/heartbeat", json=BEAT, headers=auth("a")), "OOM")
        assert (await service.get("/v1/online?artifactId=doc-1", headers=auth("a"))).status == 200


def _bgsave(admin: redis.Redis, status: str) -> None:
    admin.bgsave()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = admin.info("persistence")
        if not info["rdb_bgsave_in_progress"] and info["rdb_last_bgsave_status"] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"bgsave did not end {status}")


_BUSY_LOOP = """
local stop = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[1])
while tonumber(redis.call('TIME')[1]) < stop do end
return 1
"""


def _run_busy_loop(url: str) -> None:
    killed = contextlib.suppress(redis.ResponseError)
    with redis.Redis.from_url(url, socket_timeout=30) as r, killed:
        r.eval(_BUSY_LOOP, 0, 20)


def _is_busy(admin: redis.Redis) -> bool:
    try:
        admin.ping()
    except redis.ResponseError as exc:
        found = refusal(exc)
        return found is not None and found.cause.code == "BUSY"
    return False


def _kill_script(url: str) -> bool:
    with redis.Redis.from_url(url) as r:
        try:
            r.script_kill()
        except redis.ResponseError as exc:
            return "NOTBUSY" in str(exc)
        return True


async def _until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@contextlib.contextmanager
def _loading_redis(binary: str, tmp_path: Path) -> Iterator[int]:
    """The port of a redis-server restarted on 20 MB of data and loading it slowly (a delay
    per key): it answers LOADING, at each loading step (every 2 MB read, so every few
    tenths of a second), for about 10 s: long enough for the limiter's check and a service
    starting against it (its startup meets the loading Redis too). Values stored
    uncompressed: compressed, the whole file is one step and Redis answers nothing until it
    has loaded all of it."""
    data = tmp_path / "loading-redis"
    data.mkdir()
    port = free_port()
    persisted = ("--appendonly", "yes", "--rdbcompression", "no")
    with _redis_process(binary, data, port, *persisted) as r:
        _fill_and_rewrite(r)
    with _redis_process(binary, data, port, *persisted, "--key-load-delay", "1000", wait=False):
        yield port


async def test_a_redis_loading_its_data_is_a_503_naming_loading(
    make_client: MakeClient, settings: Settings, tmp_path: Path, auth: Auth, redis_binary: str
) -> None:
    """A restarted Redis answers LOADING until its data is in: a 503 naming it, with the
    rate limits on (the default). The limiter makes no Redis call on the request's path
    (it settles in the background), so the heartbeat's own script meets the loading Redis
    once and names it: never a timeout from waiting on two loading steps. /readyz is not
    ready meanwhile, and the metric counts each such 503."""
    with _loading_redis(redis_binary, tmp_path) as port:
        url = f"redis://127.0.0.1:{port}"
        service = await make_client(redis_url=url)
        counted = await _refusals_counted(service, "LOADING")
        seen: set[int] = set()
        loading = 0
        ready: set[str] = set()
        deadline = time.monotonic() + 60
        while 200 not in seen:
            assert time.monotonic() < deadline, seen
            response = await service.post("/v1/heartbeat", json=BEAT, headers=auth("a"))
            seen.add(response.status)
            if response.status == 503 and "(LOADING)" in (await response.json())["detail"]:
                loading += 1
                ready.add((await (await service.get("/readyz")).json())["checks"]["redis"])
            await asyncio.sleep(0.05)
        assert loading, "never met Redis loading"
        assert 500 not in seen
        assert await _refusals_counted(service, "LOADING") == counted + loading
        # Not ready while loading. This Redis pauses ~1 s at each loading step (the delay
        # per key), longer than a command's timeout, and /readyz's fresh connection most
        # often meets a pause: a timeout; a real one pauses briefly between its steps. The
        # last answer may come as the loading ends.
        assert ready & {"unavailable: LOADING", "unavailable: TimeoutError"}, ready
        assert ready <= {"unavailable: LOADING", "unavailable: TimeoutError", "ok"}, ready


def _fill_and_rewrite(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(10_000):
        pipe.set(f"filler:{i}", b"x" * 2000)
    pipe.execute()
    r.bgrewriteaof()  # the AOF as a snapshot: loaded key by key, with the delay set
    deadline = time.monotonic() + 30
    while True:
        info = r.info("persistence")
        if not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]):
            return
        assert time.monotonic() < deadline
        time.sleep(0.05)


class _redis_process:
    """A redis-server on a TCP port in ``data``, stopped (SIGTERM) on exit."""

    def __init__(self, binary: str, data: Path, port: int, *args: str, wait: bool = True) -> None:
        self.argv = [binary, "--port", str(port), "--dir", str(data), "--save", ""]
        self.argv += args
        self.port, self.wait = port, wait
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> redis.Redis:
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, preexec_fn=dies_with_us()
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while self.wait:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.ResponseError):
                assert time.monotonic() < deadline
                time.sleep(0.02)
        return client

    def __exit__(self, *_: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(30)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory"), "OOM"),
        (redis.exceptions.ReadOnlyError("You can't write against a replica."), "READONLY"),
        (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), "LOADING"),
        (redis.exceptions.MasterDownError("Link with MASTER is down"), "MASTERDOWN"),
        (redis.exceptions.ClusterDownError("The cluster is down"), "CLUSTERDOWN"),
        (redis.exceptions.TryAgainError("Multiple keys request during rehashing"), "TRYAGAIN"),
        # redis-py's Cluster client, its retries spent (tests/redis/test_cluster_refusals.py)
        (
            redis.exceptions.RedisClusterException(
                "All slots are not covered after query all startup_nodes. 16383 of 16384"
            ),
            "CLUSTERDOWN",
        ),
        (redis.exceptions.SlotNotCoveredError('Slot "0" is not covered'), "CLUSTERDOWN"),
        (redis.exceptions.ClusterError("TTL exhausted."), "TRYAGAIN"),
        (redis.ResponseError("BUSY Redis is busy running a script."), "BUSY"),
        (redis.ResponseError("MISCONF Redis is configured to save RDB snapshots"), "MISCONF"),
        (
            redis.ResponseError(
                "Error running script (call to f_ae34): @user_script:1: @user_script: 1: "
                "-OOM command not allowed when used memory > 'maxmemory'."
            ),
            "OOM",
        ),
    ],
)
def test_each_shape_of_a_refusal_is_named_by_its_code(error: Exception, code: str) -> None:
    found = refusal(error)
    assert found is not None
    assert found.cause.code == code


@pytest.mark.parametrize(
    "error",
    [
        redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        redis.ResponseError("ERR Error running script: @user_script:3: bad argument -OOMPH x"),
        redis.ResponseError("NOGROUP No such key"),
        redis.exceptions.RedisClusterException("No targets were found to execute GET"),
        redis.exceptions.ClusterError("Redis Cluster cannot be connected"),
        ValueError("OOM"),
    ],
)
def test_a_bug_is_no_refusal(error: Exception) -> None:
    assert refusal(error) is None
