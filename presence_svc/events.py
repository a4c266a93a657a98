"""Live presence events for the event streams of one API process.

The presence scripts publish one message per change on the artifact's channel (see
``lua/lib/presence.lua``). A ``PresenceHub`` holds ONE Redis subscription per artifact
being streamed, shared by all of that artifact's listeners, and drops it when the last
listener goes. Each streamed artifact (a ``Topic``) turns messages into server-sent-event
frames once, whatever the number of listeners, keeps a ring of recent frames so a client
reconnecting with ``Last-Event-ID`` resumes, and coalesces ``count`` events to a few per
second. After a lost connection (a Redis restart) the subscriptions come back and every
listener is told to resync, since messages published meanwhile are gone.

Works against one Redis and against a Cluster: ``PUBLISH`` in a cluster reaches every
node (replicas too), so the subscription can live on any one node. A subscription that
goes quiet is probed with a ``PING``; when that gets no answer, or the connection breaks,
every channel is subscribed again on a fresh connection: in a Cluster, on whichever node
answers, since the old one may have died for good (its replica took over its slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import msgspec
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from presence_svc import metrics
from presence_svc.db import Profile
from presence_svc.keys import Keyspace
from presence_svc.presence import PresenceRow, decode_state
from presence_svc.redis_client import RedisClient
from presence_svc.rows import presence_user
from presence_svc.schemas import LeaveEvent, OnlineCounts, SessionsEvent, StateEvent

__all__ = [
    "COUNT_WINDOW_S",
    "Listener",
    "PresenceHub",
    "StreamClosed",
    "sse_frame",
]

log = logging.getLogger(__name__)

COUNT_WINDOW_S = 0.25
"""At most one ``count`` event per artifact per window (the latest counts win)."""
RING_SIZE = 512
"""Recent frames kept per streamed artifact for clients that resume."""
LISTENER_BACKLOG = 4096
"""Frames a listener may fall behind before its stream is ended (it reconnects and resumes)."""
INBOX_LIMIT = 10_000
"""Messages waiting for an artifact's pump before it gives up and resyncs its listeners."""
SUBSCRIBE_TIMEOUT_S = 2.0
PROBE_AFTER_S = 5.0
"""A subscription quiet this long is sent a ``PING``; no answer in ``probe_timeout_s``
(a node frozen or gone without closing the connection) and it is replaced."""
_PROBE = b"presence-hub-probe"
SHARED_READ_GATHER_S = 0.01
"""How long a sync read waits for more listeners to share it."""
WATCH_INTERVAL_S = 1.0

ProfileLookup = Callable[[Iterable[str]], Awaitable[dict[str, Profile]]]

_JSON = msgspec.json.Encoder()
_MESSAGE = msgspec.msgpack.Decoder(tuple[int, int, list[list[Any]]])


class StreamClosed(Exception):
    """The listener's stream is over: server shutdown, client gone, or fell too far behind."""


def sse_frame(event: str, data: bytes, event_id: str | None = None) -> bytes:
    """One server-sent event. ``data`` is JSON, which never holds a raw newline."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + data + b"\n\n"


class Listener:
    """One open event stream: frames waiting to be written, and whether it needs a sync."""

    __slots__ = (
        "_frames",
        "_wake",
        "alive",
        "closed",
        "number",
        "sync_id",
        "sync_needed",
        "topic",
    )

    def __init__(self, topic: Topic, alive: Callable[[], bool]) -> None:
        self.topic = topic
        self.alive = alive
        topic.attached += 1
        self.number = topic.attached
        """Attach order: reads started after this listener attached are good for it."""
        self._frames: list[bytes] = []
        self._wake = asyncio.Event()
        self.sync_needed = True
        self.sync_id = topic.last_id
        self.closed = False

    def push(self, frame: bytes) -> None:
        if self.closed:
            return
        self._frames.append(frame)
        if len(self._frames) > LISTENER_BACKLOG:
            self.close()
        self._wake.set()

    def resync(self, sync_id: str) -> None:
        """Drop what is queued: the next thing the client gets is a fresh ``sync``."""
        self._frames.clear()
        self.sync_needed = True
        self.sync_id = sync_id
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._frames.clear()
        self._wake.set()

    async def wait(self, idle_s: float) -> list[bytes]:
        """The frames queued since the last call (empty after ``idle_s`` with none)."""
        if not self._frames and not self.sync_needed and not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle_s)
        if self.closed:
            raise StreamClosed
        self._wake.clear()
        frames, self._frames = self._frames, []
        return frames


class _SharedRead:
    """A read shared by listeners; ``mark``: the attach count when it started (None: not yet)."""

    __slots__ = ("future", "mark")

    def __init__(self) -> None:
        self.future: asyncio.Future[bytes] | None = None
        self.mark: int | None = None


class Topic:
    """One streamed artifact in this process: its listeners, ring and count coalescing."""

    def __init__(
        self, artifact_id: str, channel: bytes, profiles: ProfileLookup, window_s: float
    ) -> None:
        self.artifact_id = artifact_id
        self.channel = channel
        self.listeners: set[Listener] = set()
        self.opening = 0
        """Listeners waiting for the subscription; the topic lives while any exist."""
        self.ready = asyncio.Event()
        self.subscribed: asyncio.Future[None] | None = None
        self.attached = 0
        self._reads: dict[object, _SharedRead] = {}
        self._profiles = profiles
        self._window_s = window_s
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._pump = asyncio.create_task(self._run(), name=f"events:{artifact_id}")
        self._epoch = secrets.token_hex(4)
        self._seq = 0
        self._ring: deque[tuple[int, bytes]] = deque(maxlen=RING_SIZE)
        self._latest: tuple[int, int] | None = None
        self._sent: tuple[int, int] | None = None
        self._sent_at = 0.0
        self._count_timer: asyncio.TimerHandle | None = None

    @property
    def last_id(self) -> str:
        return f"{self._epoch}-{self._seq}"

    def attach(self, alive: Callable[[], bool], last_event_id: str | None) -> Listener:
        """A new listener; resumes after ``last_event_id`` when the ring still covers it."""
        listener = Listener(self, alive)
        after = self._resume_point(last_event_id)
        if after is not None:
            listener.sync_needed = False
            for seq, frame in self._ring:
                if seq > after:
                    listener.push(frame)
        self.listeners.add(listener)
        return listener

    def _resume_point(self, last_event_id: str | None) -> int | None:
        epoch, _, seq_text = (last_event_id or "").partition("-")
        if epoch != self._epoch or not seq_text.isdigit():
            return None
        seq = int(seq_text)
        oldest = self._ring[0][0] if self._ring else self._seq + 1
        return seq if oldest - 1 <= seq <= self._seq else None

    async def shared_read(
        self, key: object, listener: Listener, read: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """``read()``, shared by the listeners that attached before it started.

        The read waits a moment before it starts, and every listener attached by then
        shares it: a thousand dashboards connecting at once cost a few presence reads, not
        a thousand. A read that started before ``listener`` attached is no good for it (an
        event between that read and the attach would be in neither): it starts another.
        """
        shared = self._reads.get(key)
        if shared is None or (shared.mark is not None and shared.mark < listener.number):
            shared = _SharedRead()
            self._reads[key] = shared
            shared.future = asyncio.ensure_future(self._start(key, shared, read))
        assert shared.future is not None
        return await asyncio.shield(shared.future)

    async def _start(
        self, key: object, shared: _SharedRead, read: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        try:
            await asyncio.sleep(SHARED_READ_GATHER_S)
            shared.mark = self.attached
            return await read()
        finally:
            if self._reads.get(key) is shared:
                del self._reads[key]

    def feed(self, data: bytes) -> None:
        if self._inbox.qsize() >= INBOX_LIMIT:
            log.warning("event backlog overflow; resyncing", extra={"artifact": self.artifact_id})
            self._inbox = asyncio.Queue()
            self.restart()
            return
        self._inbox.put_nowait(data)

    def restart(self) -> None:
        """Messages may have been lost: new ids, empty ring, every listener resyncs."""
        self._epoch = secrets.token_hex(4)
        self._seq = 0
        self._ring.clear()
        self._sent = None
        for listener in self.listeners:
            listener.resync(self.last_id)

    def close(self) -> None:
        self._pump.cancel()
        if self._count_timer is not None:
            self._count_timer.cancel()
        for listener in list(self.listeners):
            listener.close()

    async def _run(self) -> None:
        while True:
            data = await self._inbox.get()
            try:
                await self._handle(data)
            except (msgspec.DecodeError, ValueError, TypeError, IndexError) as exc:
                log.warning("unreadable presence event", extra={"error": repr(exc)})

    async def _handle(self, data: bytes) -> None:
        online, sessions, events = _MESSAGE.decode(data)
        joined = [str(e[1]) for e in events if e and e[0] == "join"]
        profiles: dict[str, Profile] = {}
        if joined:
            try:
                profiles = await self._profiles(joined)
            except Exception as exc:  # the event still goes out, without a name
                log.warning("profile lookup failed", extra={"error": repr(exc)})
        for event in events:
            kind = event[0]
            if kind == "join":
                _, user, version, state, now = event[:5]
                row = PresenceRow(str(user), str(version) or None, decode_state(state), now, 1)
                self._emit("join", _JSON.encode(presence_user(row, profiles.get(row.user_id))))
            elif kind == "leave":
                self._emit("leave", _JSON.encode(LeaveEvent(user_id=event[1], reason=event[2])))
            elif kind == "state":
                _, user, version, state = event[:4]
                payload = StateEvent(
                    user_id=str(user), version_id=str(version) or None, state=decode_state(state)
                )
                self._emit("state", _JSON.encode(payload))
            elif kind == "sessions":
                moved = SessionsEvent(user_id=str(event[1]), sessions=int(event[2]))
                self._emit("sessions", _JSON.encode(moved))
        self._count(int(online), int(sessions))

    def _emit(self, event: str, data: bytes) -> None:
        self._seq += 1
        frame = sse_frame(event, data, self.last_id)
        self._ring.append((self._seq, frame))
        for listener in self.listeners:
            listener.push(frame)
        metrics.EVENTS_SENT.labels(event).inc(len(self.listeners))

    def _count(self, online: int, sessions: int) -> None:
        """Leading edge at once, then at most one ``count`` per window, with the latest."""
        self._latest = (online, sessions)
        if self._latest == self._sent or self._count_timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self._sent_at + self._window_s - loop.time()
        if delay <= 0:
            self._flush_count()
        else:
            self._count_timer = loop.call_later(delay, self._flush_count)

    def _flush_count(self) -> None:
        self._count_timer = None
        if self._latest is None or self._latest == self._sent:
            return
        self._sent = self._latest
        self._sent_at = asyncio.get_running_loop().time()
        online, sessions = self._latest
        self._emit("count", _JSON.encode(OnlineCounts(online=online, sessions=sessions)))


class PresenceHub:
    """Every event stream of one API process, over one pub/sub connection."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keyspace,
        profiles: ProfileLookup,
        *,
        count_window_s: float = COUNT_WINDOW_S,
        probe_after_s: float = PROBE_AFTER_S,
        probe_timeout_s: float = 2.0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._profiles = profiles
        self._window_s = count_window_s
        self._probe_after_s = probe_after_s
        self._probe_timeout_s = probe_timeout_s
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
            topic = Topic(artifact_id, channel, self._profiles, self._window_s)
            self._topics[channel] = topic
            topic.subscribed = asyncio.ensure_future(self._subscribe(topic))
        assert topic.subscribed is not None
        topic.opening += 1
        listener: Listener | None = None
        try:
            await asyncio.shield(topic.subscribed)
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
        if isinstance(self._redis, RedisCluster):
            await self._redis.initialize()
        async with self._commands:
            await self._pubsub.subscribe(topic.channel)
        self._connected.set()
        await asyncio.wait_for(topic.ready.wait(), SUBSCRIBE_TIMEOUT_S)

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
        for task in (self._reader, self._watcher):
            task.cancel()
        await asyncio.gather(self._reader, self._watcher, return_exceptions=True)
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
        pubsub = await self._answering_pubsub()
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

    async def _answering_pubsub(self) -> PubSub:
        if not isinstance(self._redis, RedisCluster):
            await asyncio.wait_for(self._redis.ping(), self._probe_timeout_s)
            return self._redis.pubsub()
        nodes = self._redis.get_nodes()
        random.shuffle(nodes)
        for node in nodes:
            try:
                await asyncio.wait_for(
                    self._redis.execute_command("PING", target_nodes=node), self._probe_timeout_s
                )
            except (RedisError, OSError, TimeoutError):
                continue
            return self._redis.pubsub(node=node)
        raise ConnectionError("no Redis Cluster node answers")

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
