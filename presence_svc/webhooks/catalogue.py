"""The event types an endpoint can subscribe to: one line each.

``source`` names what feeds the type: ``presence`` (the partition outboxes: the presence
writers append their changes, ``record_view.lua`` a first view and ``lib/engage.lua`` a
read-after crossing), ``views`` (the views streams, through the ``webhooks`` group) or
``test`` (``POST /v1/webhooks/{id}/test`` only). A new type from an existing source is one
line here and its derivation in ``events``; a new source adds its reader to the dispatcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "EVENT_TYPES",
    "VIEWER_TYPES",
    "EventType",
    "Source",
    "sources_of",
    "unknown_types",
]

Source = Literal["presence", "views", "test"]


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    source: Source
    description: str


EVENT_TYPES: Final[dict[str, EventType]] = {
    t.name: t
    for t in (
        EventType("artifact.occupied", "presence", "the first user arrived on an artifact"),
        EventType("artifact.vacated", "presence", "the last user left or timed out"),
        EventType("presence.join", "presence", "a user's first session came online"),
        EventType("presence.leave", "presence", "a user's last session went"),
        EventType("presence.interval", "presence", "a large room's joins and leaves, netted"),
        EventType("view.counted", "views", "a view was counted"),
        EventType("version.seen", "presence", "a user's first counted view of a version"),
        EventType("version.read", "presence", "a viewer's engaged time reached read-after"),
    )
}
"""Subscribable types, by name. ``presence.interval`` comes to endpoints that subscribe to
``presence.join`` or ``presence.leave`` while the room is in interval mode."""

TEST_EVENT = "webhook.test"

VIEWER_TYPES: Final = frozenset({"view.counted", "version.seen", "version.read"})
"""Types whose ``userId`` is a viewer: null when that user hides their view history."""


def unknown_types(names: list[str]) -> list[str]:
    return [n for n in names if n not in EVENT_TYPES]


def sources_of(names: frozenset[str]) -> frozenset[Source]:
    return frozenset(EVENT_TYPES[n].source for n in names if n in EVENT_TYPES)
