"""The one decoder of the presence scripts' pub/sub message (``lua/lib/presence.lua``).

A message is msgpack ``[online, sessions, events, active, ...]``: the artifact's counts
right after the change, then the change's events, then the users with an active session
(the others are away; a message without it counts everyone active). A decoder that ignores what
it does not know lets the scripts grow without breaking older API processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from presence_svc.live.store import Counts

__all__ = ["Counts", "Message", "decode_message"]

_DECODER = msgspec.msgpack.Decoder(list[Any])


@dataclass(frozen=True, slots=True)
class Message:
    counts: Counts
    events: list[list[Any]]


def _count(items: list[Any], index: int) -> int | None:
    value = items[index] if index < len(items) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def decode_message(data: bytes) -> Message:
    """Raises ``msgspec.DecodeError``, ``ValueError`` or ``TypeError`` on a malformed one."""
    items = _DECODER.decode(data)
    if len(items) < 3 or not isinstance(items[2], list):
        raise ValueError("a presence message is [online, sessions, events, ...]")
    online, sessions = _count(items, 0), _count(items, 1)
    if online is None or sessions is None:
        raise TypeError("a presence message starts with two counts")
    events = [e for e in items[2] if isinstance(e, list) and e]
    active = _count(items, 3)  # absent from older scripts' messages: everyone is active
    return Message(Counts.of(online, sessions, online if active is None else active), events)
