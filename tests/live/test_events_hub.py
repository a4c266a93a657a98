"""The events hub's one subscription connection across Redis restarts: streams opening or
closing while it is replaced, none open at all, and the first two at once.

A PubSub takes its connection on its first command; two first commands at once take two,
and the one the hub does not read holds subscriptions nobody hears. Each test here failed
before the hub serialised its commands and connected a replacement before using it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from presence_svc.live.events import Listener, PresenceHub, StreamClosed
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.single import SingleConnection
from presence_svc.users.directory import Profile

KEYS = Keyspace(16)


async def no_profiles(user_ids: Any) -> dict[str, Profile]:
    return {}


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedRedis, Redis]]:
    """A private Redis this test may restart, and a client with the service's bounds."""
    server = EmbeddedRedis(tmp_path / "own-redis")
    url = server.start()
    client = Redis.from_url(
        url,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=0,
    )
    try:
        yield server, client
    finally:
        await client.aclose()
        server.stop()


async def hears(redis: Redis, listener: Listener, artifact: str, within_s: float = 3.0) -> bool:
    """A message published on the artifact's channel reaches the listener."""
    payload = msgspec.msgpack.encode((0, 0, [["leave", "someone", "timeout"]]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        await redis.publish(KEYS.artifact(artifact).channel, payload)
        frames = await listener.wait(0.3)
        if any(b"event: leave" in frame for frame in frames):
            return True
    return False


async def restart(server: EmbeddedRedis) -> None:
    await asyncio.to_thread(server.stop)
    await asyncio.sleep(0.3)
    await asyncio.to_thread(server.start)


def slow_connects(redis: Redis, delay_s: float) -> None:
    """Every new connection takes ``delay_s`` (a remote Redis: TCP, TLS, AUTH)."""
    pool = redis.connection_pool
    original = pool.get_connection

    async def get_connection(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(delay_s)
        return await original(*args, **kwargs)

    pool.get_connection = get_connection  # type: ignore[method-assign]


@pytest.mark.timeout(40)
@pytest.mark.parametrize("during", ["a stream closes", "a stream opens"])
async def test_streams_keep_hearing_when_another_opens_or_closes_during_a_resubscribe(
    own_redis: tuple[EmbeddedRedis, Redis], during: str
) -> None:
    server, redis = own_redis
    connection = SingleConnection(redis, None, pipelined=False)
    hub = PresenceHub(connection, KEYS, no_profiles)
    try:
        a = await hub.attach("doc-a", None, lambda: True)
        x = await hub.attach("doc-x", None, lambda: True)
        assert await hears(redis, a, "doc-a")

        # Right when the hub has picked the server for its new connection (and connects
        # to it, which now takes 100 ms), another stream opens or closes.
        answering = connection.answering_pubsub
        side: list[asyncio.Future[Any]] = []

        async def meanwhile() -> None:
            await asyncio.sleep(0.02)
            if during == "a stream closes":
                await hub.detach(x)
            else:
                await hub.attach("doc-b", None, lambda: True)

        async def answering_then_meanwhile(timeout_s: float) -> Any:
            pubsub = await answering(timeout_s)
            if not side:
                slow_connects(redis, 0.1)
                side.append(asyncio.ensure_future(meanwhile()))
            return pubsub

        connection.answering_pubsub = answering_then_meanwhile  # type: ignore[method-assign]
        await restart(server)
        await until(lambda: bool(side), within_s=15)
        await asyncio.wait_for(side[0], 15)
        await asyncio.sleep(2.0)  # past any read still in flight on a stray connection
        await a.wait(0)
        assert await hears(redis, a, "doc-a", within_s=8), "doc-a went silent"
    finally:
        await hub.aclose()


async def until(ok: Callable[[], bool], within_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not ok():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(40)
async def test_a_restart_with_no_stream_open_is_recovered_once(
    own_redis: tuple[EmbeddedRedis, Redis], caplog: pytest.LogCaptureFixture
) -> None:
    server, redis = own_redis
    connection = SingleConnection(redis, None, pipelined=False)
    hub = PresenceHub(connection, KEYS, no_profiles)
    try:
        async with hub.listen("doc-a") as a:
            assert await hears(redis, a, "doc-a")
        await restart(server)
        await asyncio.sleep(2.0)  # Redis is back, and the hub has reconnected
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="presence_svc.live.events"):
            await asyncio.sleep(6.0)
        lost = [r for r in caplog.records if "subscription lost" in r.getMessage()]
        assert not lost, f"{len(lost)} 'subscription lost' warnings while Redis was up"
        async with hub.listen("doc-b") as b:  # and the next stream works at once
            assert await hears(redis, b, "doc-b")
    finally:
        await hub.aclose()


@pytest.mark.timeout(30)
async def test_the_first_two_streams_of_a_process_open_at_once(
    own_redis: tuple[EmbeddedRedis, Redis],
) -> None:
    _, redis = own_redis
    connection = SingleConnection(redis, None, pipelined=False)
    hub = PresenceHub(connection, KEYS, no_profiles)
    try:
        a, b = await asyncio.gather(
            hub.attach("doc-a", None, lambda: True), hub.attach("doc-b", None, lambda: True)
        )
        assert await hears(redis, a, "doc-a")
        assert await hears(redis, b, "doc-b")
    finally:
        await hub.aclose()


async def test_a_stream_still_subscribing_when_the_server_shuts_down_is_refused(
    redis_url: str,
) -> None:
    """Server shutdown ends the open streams (``end_streams``, on_shutdown) and then waits
    for every handler; a stream whose subscription was still being made then must not
    attach after it, or its handler streams on and the shutdown waits out aiohttp's 60 s
    (the hangs seen in the test servers' teardown under load)."""
    redis = Redis.from_url(redis_url)
    hub = PresenceHub(SingleConnection(redis, None, pipelined=False), KEYS, no_profiles)
    try:
        opening = asyncio.ensure_future(hub.attach("doc-a", None, lambda: True))
        await asyncio.sleep(0)  # it is waiting for its subscription
        assert not opening.done()
        hub.end_streams()
        with pytest.raises(StreamClosed):
            await asyncio.wait_for(opening, 10)
        assert hub.listeners == 0
    finally:
        await hub.aclose()
        await redis.aclose()
