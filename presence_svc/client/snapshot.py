"""``LivePresence``: who is here, kept from an artifact's events in either mode (the
browser SDK's snapshot, in Python)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from presence_svc.client.events import (
    CountEvent,
    IntervalEvent,
    JoinEvent,
    LeaveEvent,
    Mode,
    PresenceEvent,
    SessionsEvent,
    StateEvent,
    SyncEvent,
)
from presence_svc.client.models import PresenceUser

__all__ = ["LivePresence"]


class LivePresence:
    """``apply`` each event of ``client.events(...)``. ``online`` and ``sessions`` are the
    service's counts (``join``/``leave`` adjust them until the next ``count``); ``users``
    holds the ``sync``'s page and the changes since. In interval mode (``mode``) that is
    a sample once an interval said ``more``; ``active``/``away`` count users."""

    def __init__(self) -> None:
        self.online = 0
        self.sessions = 0
        self.active = 0
        self.away = 0
        self.mode: Mode = "exact"
        self.users: dict[str, PresenceUser] = {}
        self.syncs = 0
        """``sync`` events applied: a second one means the service started over."""
        self._appliers: dict[type[Any], Callable[[Any], None]] = {
            SyncEvent: self._sync,
            JoinEvent: self._join,
            LeaveEvent: self._leave,
            StateEvent: self._state,
            SessionsEvent: self._sessions,
            CountEvent: self._count,
            IntervalEvent: self._interval,
        }

    def apply(self, event: PresenceEvent) -> None:
        self._appliers[type(event)](event)

    def _sync(self, event: SyncEvent) -> None:
        self.users = {u.user_id: u for u in event.users}
        self.online, self.sessions, self.mode = event.online, event.sessions, event.mode
        self.active, self.away = event.active, event.away
        self.syncs += 1

    def _join(self, event: JoinEvent) -> None:
        known = event.user_id in self.users
        self.users[event.user_id] = msgspec.convert(event, PresenceUser, from_attributes=True)
        if not known:
            self.online += 1
            self.sessions += event.sessions

    def _leave(self, event: LeaveEvent) -> None:
        gone = self.users.pop(event.user_id, None)
        if gone is not None:
            self.online = max(0, self.online - 1)
            self.sessions = max(0, self.sessions - gone.sessions)

    def _state(self, event: StateEvent) -> None:
        row = self.users.get(event.user_id)
        if row is not None:  # not on the page: the next sync brings them
            changes: dict[str, Any] = {"version_id": event.version_id, "state": event.state}
            if event.status is not None:
                changes["status"] = event.status
            self.users[event.user_id] = msgspec.structs.replace(row, **changes)

    def _sessions(self, event: SessionsEvent) -> None:
        row = self.users.get(event.user_id)
        if row is not None:
            self.users[event.user_id] = msgspec.structs.replace(row, sessions=event.sessions)

    def _count(self, event: CountEvent) -> None:
        self.online, self.sessions = event.online, event.sessions
        self.active, self.away = event.active, event.away

    def _interval(self, event: IntervalEvent) -> None:
        for user in event.joined:
            self.users[user.user_id] = user
        for left in event.left:
            self.users.pop(left.user_id, None)
        self.online, self.sessions = event.online, event.sessions
        self.active, self.away = event.active, event.away
