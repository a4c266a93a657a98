"""Server-sent events for one listener: the frame format and a bounded queue of frames.

A listener that falls ``LISTENER_BACKLOG`` frames behind is closed rather than let its
queue grow: the client reconnects and resumes (or resyncs), and the others never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from presence_svc.live.events.topic import Topic

__all__ = ["LISTENER_BACKLOG", "Listener", "StreamClosed", "sse_frame"]

LISTENER_BACKLOG = 4096
"""Frames a listener may fall behind before its stream is ended (it reconnects and resumes)."""


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
        "on_overflow",
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
        self.on_overflow: Callable[[], None] | None = None
        """Called when the backlog overflows: the writer may be stuck on a client that does
        not read, so the stream's owner ends the connection itself."""

    def push(self, frame: bytes) -> None:
        if self.closed:
            return
        self._frames.append(frame)
        if len(self._frames) > LISTENER_BACKLOG:
            self.close()
            if self.on_overflow is not None:
                self.on_overflow()
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
