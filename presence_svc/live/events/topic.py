"""One streamed artifact in this process: its listeners, a ring of recent frames, ``count``
coalescing, and interval mode.

Messages from the artifact's channel are turned into frames once, whatever the number of
listeners; the ring lets a client that reconnects with ``Last-Event-ID`` resume; ``count``
events are coalesced to a few per second. A large room sends one ``interval`` event per
interval instead of an event per user (``interval.py``); switching mode resyncs every
listener, so a client always knows which shape the events it gets have.
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
from presence_svc.live.events.interval import IntervalBatch, LargeRooms, Mode
from presence_svc.live.events.message import decode_message
from presence_svc.live.events.sse import Listener, sse_frame
from presence_svc.live.rows import join_event, presence_user
from presence_svc.live.store import Counts, PresenceRow, decode_state, status_of
from presence_svc.schemas import (
    IntervalEvent,
    LeaveEvent,
    SessionsEvent,
    StateEvent,
)
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


class _SharedRead:
    """A read shared by listeners; ``mark``: the attach count when it started (None: not yet)."""

    __slots__ = ("future", "mark")

    def __init__(self) -> None:
        self.future: asyncio.Future[bytes] | None = None
        self.mark: int | None = None


class Topic:
    """One streamed artifact in this process: its listeners, ring and count coalescing."""

    def __init__(
        self,
        artifact_id: str,
        channel: bytes,
        profiles: ProfileLookup,
        window_s: float,
        large_rooms: LargeRooms | None = None,
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
        self._rooms = large_rooms or LargeRooms()
        self.mode: Mode = "exact"
        self._heard = False
        self._counts: Counts | None = None
        self._batch = IntervalBatch()
        self._interval_sent: Counts | None = None
        self._next_interval = 0.0

    @property
    def last_id(self) -> str:
        return f"{self._epoch}-{self._seq}"

    @property
    def epoch(self) -> str:
        return self._epoch

    def seed(self, online: int) -> None:
        """The room's size when the topic opened, before any listener: its first mode."""
        if not self._heard and not self.listeners:
            self._set_mode(self._rooms.first_mode(online))

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
        """Messages may have been lost (or the mode changed): new ids, empty ring, every
        listener resyncs."""
        self._epoch = secrets.token_hex(4)
        self._seq = 0
        self._ring.clear()
        self._sent = None
        self._batch = IntervalBatch()
        self._counts = self._interval_sent = None  # known again with the next message
        for listener in self.listeners:
            listener.resync(self.last_id)

    def _set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "interval":
            self._next_interval = asyncio.get_running_loop().time() + self._rooms.interval_s
        elif self._count_timer is not None:
            self._count_timer.cancel()
            self._count_timer = None

    def close(self) -> None:
        self._pump.cancel()
        if self._count_timer is not None:
            self._count_timer.cancel()
        for listener in list(self.listeners):
            listener.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.mode == "interval":
                wait_s = self._next_interval - loop.time()
                if wait_s <= 0:
                    await self._flush_interval()
                    # from the end of this one: never two events closer than the interval
                    self._next_interval = loop.time() + self._rooms.interval_s
                    continue
                try:
                    data = await asyncio.wait_for(self._inbox.get(), wait_s)
                except TimeoutError:
                    continue
            else:
                data = await self._inbox.get()
            try:
                await self._handle(data)
            except (msgspec.DecodeError, ValueError, TypeError, IndexError) as exc:
                log.warning("unreadable presence event", extra={"error": repr(exc)})

    async def _handle(self, data: bytes) -> None:
        message = decode_message(data)
        self._heard = True
        self._counts = message.counts
        mode = self._rooms.next_mode(self.mode, message.counts.online)
        if mode != self.mode:
            # the fresh sync every listener now gets already holds this message's changes
            log.info(
                "event stream mode changed",
                extra={"artifact": self.artifact_id, "mode": mode},
            )
            self._set_mode(mode)
            self.restart()
            return
        if self.mode == "interval":
            self._collect(message.events)
            return
        events = message.events
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
        self._count(message.counts)

    def _collect(self, events: list[list[Any]]) -> None:
        """Interval mode: the changes wait for the next ``interval`` event."""
        for event in events:
            kind = event[0]
            if kind == "join":
                _, user, version, state, now, status = event[:6]
                row = PresenceRow(
                    str(user), str(version) or None, decode_state(state), now, 1, status_of(status)
                )
                self._batch.join(row)
            elif kind == "leave":
                self._batch.leave(str(event[1]), str(event[2]))
            elif kind == "state":
                _, user, version, state, status = event[:5]
                self._batch.update(
                    str(user),
                    version_id=str(version) or None,
                    state=decode_state(state),
                    status=status_of(status),
                )
            elif kind == "sessions":
                self._batch.update(str(event[1]), sessions=int(event[2]))

    async def _flush_interval(self) -> None:
        """One ``interval`` event: the counts now and the interval's net changes; none when
        nothing changed since the last one."""
        counts = self._counts
        if counts is None or (not self._batch and counts == self._interval_sent):
            return
        batch = self._batch.take(self._rooms.list_cap)
        epoch = self._epoch
        profiles: dict[str, Profile] = {}
        names_joined = True
        if batch.joined:
            try:
                profiles = await self._profiles([row.user_id for row in batch.joined])
            except Exception as exc:  # the event still goes out, without names
                log.warning("profile lookup failed", extra={"error": repr(exc)})
                names_joined = False
        if self.mode != "interval" or self._epoch != epoch:  # a sync follows: it has all this
            return
        event = IntervalEvent(
            online=counts.online,
            sessions=counts.sessions,
            active=counts.active,
            away=counts.away,
            joined=[presence_user(row, profiles.get(row.user_id)) for row in batch.joined],
            left=[LeaveEvent(user_id=user, reason=reason) for user, reason in batch.left],  # type: ignore[arg-type]
            more=batch.more,
            names_joined=names_joined,
        )
        self._interval_sent = counts
        self._emit("interval", _JSON.encode(event))

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
        if self.mode != "exact" or self._latest is None or self._latest == self._sent:
            return
        self._sent = self._latest
        self._sent_at = asyncio.get_running_loop().time()
        self._emit("count", _JSON.encode(self._latest))  # encodes as OnlineCounts
