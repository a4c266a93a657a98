"""Live presence events for the event streams of one API process.

The presence scripts publish one message per change on the artifact's channel (see
``lua/lib/presence.lua``). A ``PresenceHub`` holds ONE Redis subscription per artifact
being streamed (a ``Topic``), shared by all of that artifact's listeners, and drops it
when the last listener goes. After a lost connection (a Redis restart) the subscriptions
come back and every listener is told to resync, since messages published meanwhile are
gone.

A subscription that goes quiet is probed with a ``PING``; when that gets no answer, or
the connection breaks, every channel is subscribed again on a fresh connection to a
server that answers (on a Cluster any node will do: ``PUBLISH`` reaches them all).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from presence_svc import metrics
from presence_svc.live.events.interval import LargeRooms
from presence_svc.live.events.sse import Listener, StreamClosed
from presence_svc.live.events.topic import COUNT_WINDOW_S, Topic
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.tasks import cancel_and_wait
from presence_svc.users.directory import ProfileLookup

__all__ = ["PresenceHub"]

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 2.0
PROBE_AFTER_S = 5.0
"""A subscription quiet this long is sent a ``PING``; no answer in ``probe_timeout_s``
(a node frozen or gone without closing the connection) and it is replaced."""
_PROBE = b"presence-hub-probe"
WATCH_INTERVAL_S = 1.0


class PresenceHub:
    """Every event stream of one API process, over one pub/sub connection."""

    def __init__(
        self,
        redis: RedisConnection,
        keys: Keyspace,
        profiles: ProfileLookup,
        *,
        count_window_s: float = COUNT_WINDOW_S,
        probe_after_s: float = PROBE_AFTER_S,
        probe_timeout_s: float = 2.0,
        large_rooms: LargeRooms | None = None,
        online: Callable[[str], Awaitable[int]] | None = None,
    ) -> None:
        """``online(artifact)``: its online users, read once when a topic opens so that a
        large room starts in interval mode (without it a topic starts exact and switches
        on the first message)."""
        self._redis = redis
        self._keys = keys
        self._profiles = profiles
        self._window_s = count_window_s
        self._probe_after_s = probe_after_s
        self._probe_timeout_s = probe_timeout_s
        self._large_rooms = large_rooms or LargeRooms()
        self._online = online
        self._pubsub: PubSub = redis.pubsub()
        self._topics: dict[bytes, Topic] = {}
        self._connected = asyncio.Event()
        self._commands = asyncio.Lock()
        """Held for every command on the subscription: a PubSub takes its connection on its
        first command, and two first commands at once would take two, one never read."""
        self._closed = False
        self._chores: set[asyncio.Future[None]] = set()
        self._reader = asyncio.create_task(self._read(), name="events:reader")
        self._watcher = asyncio.create_task(self._watch(), name="events:watcher")

    @property
    def listeners(self) -> int:
        return sum(len(t.listeners) for t in self._topics.values())

    async def attach(
        self, artifact_id: str, last_event_id: str | None, alive: Callable[[], bool]
    ) -> Listener:
        """A listener on the artifact, subscribed before it is handed out; ``detach`` it.

        Raises ``RedisError``, ``OSError`` or ``TimeoutError`` when the subscription cannot
        be made, ``StreamClosed`` when the server is shutting down.
        """
        if self._closed:
            raise StreamClosed
        channel = self._keys.artifact(artifact_id).channel.encode()
        topic = self._topics.get(channel)
        if topic is None:
            topic = Topic(artifact_id, channel, self._profiles, self._window_s, self._large_rooms)
            self._topics[channel] = topic
            topic.subscribed = asyncio.ensure_future(self._subscribe(topic))
        assert topic.subscribed is not None
        topic.opening += 1
        listener: Listener | None = None
        try:
            await asyncio.shield(topic.subscribed)
            if self._closed:  # shutdown began meanwhile: ``end_streams`` did not see this one
                raise StreamClosed
            listener = topic.attach(alive, last_event_id)
        finally:
            topic.opening -= 1
            if listener is None:
                await self._release(topic)
        metrics.SSE_LISTENERS.inc()
        return listener

    async def detach(self, listener: Listener) -> None:
        metrics.SSE_LISTENERS.dec()
        listener.close()
        listener.topic.listeners.discard(listener)
        await self._release(listener.topic)

    @contextlib.asynccontextmanager
    async def listen(
        self,
        artifact_id: str,
        last_event_id: str | None = None,
        alive: Callable[[], bool] = lambda: True,
    ) -> AsyncIterator[Listener]:
        listener = await self.attach(artifact_id, last_event_id, alive)
        try:
            yield listener
        finally:
            await self.detach(listener)

    async def _subscribe(self, topic: Topic) -> None:
        await self._redis.initialize()
        async with self._commands:
            await self._pubsub.subscribe(topic.channel)
        self._connected.set()
        await asyncio.wait_for(topic.ready.wait(), SUBSCRIBE_TIMEOUT_S)
        if self._online is not None:  # after subscribing: a change meanwhile is heard too
            topic.seed(await self._online(topic.artifact_id))

    async def _release(self, topic: Topic) -> None:
        """Drop the topic and its subscription once nobody listens or waits for it."""
        if topic.listeners or topic.opening or self._topics.get(topic.channel) is not topic:
            return
        del self._topics[topic.channel]
        topic.close()
        if self._closed:
            return
        try:
            async with self._commands:
                await self._pubsub.unsubscribe(topic.channel)
        except (RedisError, OSError) as exc:  # re-subscribed on reconnect, then dropped
            log.info("unsubscribe failed", extra={"error": repr(exc)})

    def end_streams(self) -> None:
        """Server shutdown: every open stream ends now (so shutdown does not wait on them)."""
        self._closed = True
        for topic in list(self._topics.values()):
            for listener in list(topic.listeners):
                listener.close()

    async def aclose(self) -> None:
        self.end_streams()
        await cancel_and_wait(self._reader, self._watcher)  # for sure: lost on 3.11 at times
        for topic in self._topics.values():
            topic.close()
        self._topics.clear()
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.05
        heard = loop.time()
        probed: float | None = None
        broken = False
        while True:
            await self._connected.wait()
            try:
                if broken:
                    await self._resubscribe()
                    broken, probed, heard = False, None, loop.time()
                now = loop.time()
                if probed is not None and now - probed > self._probe_timeout_s:
                    raise ConnectionError("the event subscription did not answer a PING")
                if probed is None and now - heard > self._probe_after_s:
                    probed = now
                    async with self._commands:
                        await self._pubsub.ping(_PROBE)
                message = await self._pubsub.get_message(timeout=min(1.0, self._probe_timeout_s))
            except Exception as exc:  # whatever it is, this loop must go on: streams depend on it
                log.warning("event subscription lost; reconnecting", extra={"error": repr(exc)})
                broken = True
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            backoff = 0.05
            if message is not None:
                heard, probed = loop.time(), None
                self._dispatch(message)

    async def _resubscribe(self) -> None:
        """Every channel again, on a fresh connection to a server that answers a PING.

        The new PubSub is connected before it replaces the old one, and the swap and the
        subscription of every channel happen under the command lock: a topic opening or
        closing meanwhile goes before (its channel is listed or gone) or after (it uses
        the new connection). The confirmations come back through ``_read`` and restart each
        topic: what was published while the subscription was down is lost, so its
        listeners resync.
        """
        pubsub = await self._redis.answering_pubsub(self._probe_timeout_s)
        try:
            await asyncio.wait_for(pubsub.connect(), self._probe_timeout_s)  # type: ignore[no-untyped-call]
        except BaseException:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        async with self._commands:
            old, self._pubsub = self._pubsub, pubsub
            channels = list(self._topics)
            if channels:
                await asyncio.wait_for(pubsub.subscribe(*channels), self._probe_timeout_s)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.aclose(), self._probe_timeout_s)  # type: ignore[no-untyped-call]
        log.info("event subscription restored", extra={"channels": len(channels)})

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        topic = self._topics.get(channel)
        if kind == "message":
            if topic is not None:
                topic.feed(message["data"])
        elif kind == "subscribe":
            if topic is None:  # re-subscribed by a reconnect after we dropped it
                task = asyncio.ensure_future(self._drop_stray(channel))
                self._chores.add(task)
                task.add_done_callback(self._chores.discard)
            elif topic.ready.is_set():  # a reconnect: what was published meanwhile is lost
                topic.restart()
            else:
                topic.ready.set()

    async def _drop_stray(self, channel: bytes) -> None:
        if channel not in self._topics:
            with contextlib.suppress(RedisError, OSError):
                async with self._commands:
                    await self._pubsub.unsubscribe(channel)

    async def _watch(self) -> None:
        """End the streams of clients that went away (aiohttp only notices on a write)."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            for topic in list(self._topics.values()):
                for listener in list(topic.listeners):
                    if not listener.alive():
                        listener.close()
