"""One streamed artifact in this process: its listeners, a ring of recent frames, and
``count`` coalescing.

Messages from the artifact's channel are turned into frames once, whatever the number of
listeners; the ring lets a client that reconnects with ``Last-Event-ID`` resume; ``count``
events are coalesced to a few per second.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from presence_svc import metrics
from presence_svc.live.events.sse import Listener, sse_frame
from presence_svc.live.rows import join_event
from presence_svc.live.store import Counts, PresenceRow, decode_state, status_of
from presence_svc.schemas import LeaveEvent, SessionsEvent, StateEvent
from presence_svc.users.directory import Profile, ProfileLookup

__all__ = ["COUNT_WINDOW_S", "Topic"]

log = logging.getLogger(__name__)

COUNT_WINDOW_S = 0.25
"""At most one ``count`` event per artifact per window (the latest counts win)."""
RING_SIZE = 512
"""Recent frames kept per streamed artifact for clients that resume."""
INBOX_LIMIT = 10_000
"""Messages waiting for an artifact's pump before it gives up and resyncs its listeners."""
SHARED_READ_GATHER_S = 0.01
"""How long a sync read waits for more listeners to share it."""

_JSON = msgspec.json.Encoder()
_MESSAGE = msgspec.msgpack.Decoder(list[Any])
"""A message of ``lua/lib/presence.lua``: online, sessions, the events, active users (a
message without the last, from scripts older than it, counts everyone active)."""


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
        self._latest: Counts | None = None
        self._sent: Counts | None = None
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
        message = _MESSAGE.decode(data)
        online, sessions = int(message[0]), int(message[1])
        events: list[list[Any]] = message[2]
        active = int(message[3]) if len(message) > 3 else online
        joined = [str(e[1]) for e in events if e and e[0] == "join"]
        profiles: dict[str, Profile] = {}
        names_joined = True
        if joined:
            try:
                profiles = await self._profiles(joined)
            except Exception as exc:  # the event still goes out, without a name
                log.warning("profile lookup failed", extra={"error": repr(exc)})
                names_joined = False
        for event in events:
            kind = event[0]
            if kind == "join":
                _, user, version, state, now, status = event[:6]
                row = PresenceRow(
                    str(user), str(version) or None, decode_state(state), now, 1, status_of(status)
                )
                joining = join_event(row, profiles.get(row.user_id), names_joined)
                self._emit("join", _JSON.encode(joining))
            elif kind == "leave":
                self._emit("leave", _JSON.encode(LeaveEvent(user_id=event[1], reason=event[2])))
            elif kind == "state":
                _, user, version, state, status = event[:5]
                payload = StateEvent(
                    user_id=str(user),
                    version_id=str(version) or None,
                    state=decode_state(state),
                    status=status_of(status),
                )
                self._emit("state", _JSON.encode(payload))
            elif kind == "sessions":
                moved = SessionsEvent(user_id=str(event[1]), sessions=int(event[2]))
                self._emit("sessions", _JSON.encode(moved))
        self._count(Counts.of(online, sessions, active))

    def _emit(self, event: str, data: bytes) -> None:
        self._seq += 1
        frame = sse_frame(event, data, self.last_id)
        self._ring.append((self._seq, frame))
        for listener in self.listeners:
            listener.push(frame)
        metrics.EVENTS_SENT.labels(event).inc(len(self.listeners))

    def _count(self, counts: Counts) -> None:
        """Leading edge at once, then at most one ``count`` per window, with the latest."""
        self._latest = counts
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
        self._emit("count", _JSON.encode(self._latest))  # encodes as OnlineCounts
