"""The pipelined connection under the hot path, against real redis-servers: answers in
order, a restart mid-flow loses no call, a stopped server fails calls within the deadline,
and the client's password and database are honoured."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from presence_svc.embedded import EmbeddedRedis, redis_server_binary
from presence_svc.presence import Counts, PresenceStore
from presence_svc.redis_pipe import RedisPipe
from presence_svc.resp import pack_command
from presence_svc.scripts import Scripts
from presence_svc.settings import Settings


async def _send(pipe: RedisPipe, *commands: tuple[str | bytes | int, ...]) -> list[Any]:
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in commands]
    pipe.send([(pack_command(c), f) for c, f in zip(commands, futures, strict=True)])
    return list(await asyncio.gather(*futures, return_exceptions=True))


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "own-redis")
    server.start()
    yield server
    server.stop()


def _pipe(url: str, deadline_s: float = 1.0) -> tuple[Redis, RedisPipe]:
    client = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    pipe = RedisPipe.for_client(client, deadline_s)
    assert pipe is not None
    return client, pipe


async def test_answers_come_back_to_their_callers_in_order(redis_url: str) -> None:
    client, pipe = _pipe(redis_url)
    try:
        commands = [("INCR", "n")] * 500 + [("GET", "n"), ("HGET", "n", "x"), ("NOPE",)]
        replies = await _send(pipe, *commands)
        assert replies[:500] == list(range(1, 501))
        assert replies[500] == b"500"
        assert isinstance(replies[501], ResponseError)  # WRONGTYPE, to its own caller
        assert isinstance(replies[502], ResponseError)
        assert (await _send(pipe, ("EVALSHA", "0" * 40, 0)))[0].__class__ is NoScriptError
        # batches sent before the first is answered share the connection
        many = await asyncio.gather(*(_send(pipe, ("INCR", "m")) for _ in range(200)))
        assert sorted(r[0] for r in many) == list(range(1, 201))
    finally:
        await pipe.aclose()
        await client.aclose()


async def test_a_restart_mid_flow_loses_no_call(own_redis: EmbeddedRedis) -> None:
    """Calls written when the server went away are sent once more on a new connection."""
    client, pipe = _pipe(own_redis.url, deadline_s=10.0)
    try:
        assert await _send(pipe, ("SET", "k", 0)) == [b"OK"]
        loop = asyncio.get_running_loop()
        restart = loop.run_in_executor(None, lambda: (own_redis.stop(), own_redis.start()))
        sent = 0
        results: list[Any] = []
        while not restart.done():
            results += await _send(pipe, ("INCR", "k"))
            sent += 1
        await restart
        results += await _send(pipe, ("INCR", "k"))
        sent += 1
        assert sent > 1
        answered = [r for r in results if not isinstance(r, Exception)]
        # every INCR that was answered is in the data (AOF), and any call that failed did
        # so because the server was down when it was made, not because it was dropped
        stored = int(redis.Redis.from_url(own_redis.url).get("k") or 0)
        assert stored >= len(answered) > 0
        assert all(isinstance(r, RedisConnectionError) for r in results if r not in answered)
    finally:
        await pipe.aclose()
        await client.aclose()


async def test_a_stopped_server_fails_calls_within_the_deadline(
    own_redis: EmbeddedRedis,
) -> None:
    client, pipe = _pipe(own_redis.url, deadline_s=0.8)
    pid = int(own_redis.pidfile.read_text())
    try:
        assert await _send(pipe, ("PING",)) == [b"PONG"]
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            first, second = await asyncio.gather(
                _send(pipe, ("PING",)), _send(pipe, ("PING",), ("PING",))
            )
            elapsed = time.monotonic() - started
            assert 0.7 < elapsed < 1.5, elapsed
            assert all(isinstance(r, RedisTimeoutError) for r in first + second)
        finally:
            os.kill(pid, signal.SIGCONT)
        # the silent connection was dropped; the next call gets a fresh one
        assert await _send(pipe, ("PING",)) == [b"PONG"]
    finally:
        await pipe.aclose()
        await client.aclose()


async def test_no_server_fails_fast_with_a_connection_error(tmp_path: Path) -> None:
    client, pipe = _pipe(f"unix://{tmp_path}/nothing.sock")
    try:
        started = time.monotonic()
        [reply] = await _send(pipe, ("PING",))
        assert isinstance(reply, RedisConnectionError)
        assert time.monotonic() - started < 1.0
    finally:
        await pipe.aclose()
        await client.aclose()


async def test_password_and_database_of_the_url_are_used(tmp_path: Path) -> None:
    sock = tmp_path / "auth.sock"
    server = await asyncio.create_subprocess_exec(
        redis_server_binary(),
        "--port", "0", "--unixsocket", str(sock), "--requirepass", "s3cret", "--save", "",
        "--dir", str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, "redis-server did not start"
            await asyncio.sleep(0.02)
        client, pipe = _pipe(f"unix://:s3cret@{sock}?db=3")
        assert await _send(pipe, ("SET", "where", "db3")) == [b"OK"]
        with redis.Redis(unix_socket_path=str(sock), password="s3cret", db=3) as direct:
            assert direct.get("where") == b"db3"
        await pipe.aclose()
        await client.aclose()

        client, pipe = _pipe(f"unix://:wrong@{sock}")
        [reply] = await _send(pipe, ("PING",))
        assert isinstance(reply, RedisConnectionError)
        assert "WRONGPASS" in str(reply) or "invalid" in str(reply)
        await pipe.aclose()
        await client.aclose()
    finally:
        server.terminate()
        await server.wait()


async def test_a_closed_pipe_refuses_calls(redis_url: str) -> None:
    client, pipe = _pipe(redis_url)
    assert await _send(pipe, ("PING",)) == [b"PONG"]
    await pipe.aclose()
    [reply] = await _send(pipe, ("PING",))
    assert isinstance(reply, RedisConnectionError)
    await client.aclose()


async def test_a_call_whose_connection_is_killed_is_sent_once_more(redis_url: str) -> None:
    client, pipe = _pipe(redis_url, deadline_s=5.0)
    direct = redis.Redis.from_url(redis_url)

    def waiting_on_blpop() -> list[int]:
        return [int(c["id"]) for c in direct.client_list() if c["cmd"] == "blpop"]

    async def until_waiting() -> int:
        deadline = time.monotonic() + 3
        while not (ids := waiting_on_blpop()):
            assert time.monotonic() < deadline, "no connection is waiting on BLPOP"
            await asyncio.sleep(0.01)
        return ids[0]

    try:
        call = asyncio.ensure_future(_send(pipe, ("BLPOP", "queue", 4)))
        first = await until_waiting()
        direct.client_kill_filter(_id=first)
        second = await until_waiting()  # the same call, on a new connection
        assert second != first
        direct.lpush("queue", "job")
        assert await call == [[b"queue", b"job"]]
    finally:
        direct.close()
        await pipe.aclose()
        await client.aclose()


async def test_a_burst_of_script_calls_in_several_eager_batches_is_answered_in_order(
    redis_url: str,
) -> None:
    """More calls in one loop turn than one eager batch holds: every caller still gets
    the answer to its own call (here, how many sessions were online after it)."""
    client, pipe = _pipe(redis_url)
    settings = Settings(redis_url=redis_url, online_timeout_s=60.0)
    store = PresenceStore(Scripts(client, 2.0, pipe=pipe), settings)
    try:
        await store.scripts.load()
        counts = await asyncio.gather(
            *(
                store.heartbeat("doc-burst", f"tab-{n:04d}", f"user-{n}", None, None)
                for n in range(50)
            )
        )
        assert sorted(c.sessions for c in counts) == list(range(1, 51))
        assert [c.online for c in counts] == [c.sessions for c in counts]  # in call order
        assert counts[-1] == Counts(50, 50)
    finally:
        await pipe.aclose()
        await client.aclose()
