"""Live events: the hub (one subscription per streamed artifact), its topics, and SSE."""

from __future__ import annotations

from presence_svc.live.events.hub import PresenceHub
from presence_svc.live.events.interval import LargeRooms
from presence_svc.live.events.sse import Listener, StreamClosed, sse_frame
from presence_svc.live.events.topic import COUNT_WINDOW_S, Topic

__all__ = [
    "COUNT_WINDOW_S",
    "LargeRooms",
    "Listener",
    "PresenceHub",
    "StreamClosed",
    "Topic",
    "sse_frame",
]
