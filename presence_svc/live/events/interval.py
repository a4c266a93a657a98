"""Interval mode for large rooms: when to use it, and what one ``interval`` event carries.

Above ``enter_users`` online users an artifact's streams stop sending an event per user
and send one ``interval`` event per ``interval_s`` instead, so what a listener receives per
second no longer grows with the room's churn. The mode is left only below 80% of
``enter_users``: a room hovering at the border does not flip back and forth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from presence_svc.live.store import PresenceRow

__all__ = ["LIST_CAP", "IntervalBatch", "LargeRooms", "Mode"]

Mode = Literal["exact", "interval"]

LIST_CAP = 100
"""Users an ``interval`` event lists as joined, and as left, at most (then ``more``)."""


@dataclass(frozen=True, slots=True)
class LargeRooms:
    """The thresholds of interval mode (``PRESENCE_LARGE_ROOM_*``)."""

    enter_users: int = 500
    interval_s: float = 2.0
    list_cap: int = LIST_CAP

    @property
    def exit_below(self) -> int:
        """Interval mode ends when fewer than this many users are online (80%)."""
        return max(1, self.enter_users * 4 // 5)

    def first_mode(self, online: int) -> Mode:
        return "interval" if online >= self.enter_users else "exact"

    def next_mode(self, mode: Mode, online: int) -> Mode:
        if mode == "exact":
            return self.first_mode(online)
        return "exact" if online < self.exit_below else "interval"


@dataclass(frozen=True, slots=True)
class Batch:
    """One interval's net changes: rows of who is online now and was not (or left and
    came back), and ``(user, reason)`` of who was online and is not; ``more``: capped."""

    joined: list[PresenceRow]
    left: list[tuple[str, str]]
    more: bool


class IntervalBatch:
    """Who came and went since the last ``interval`` event, netted per user.

    A user's first event of the interval tells whether they were online before it (a
    ``join`` comes only from offline). Someone who joined and left within one interval is
    in neither list: listeners never saw them, and the counts never held them at a flush.
    Someone who left and came back is listed as joined, with their fresh row.
    """

    def __init__(self) -> None:
        self._was_online: dict[str, bool] = {}
        self._rows: dict[str, PresenceRow] = {}
        self._left: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self._rows or self._left)

    def join(self, row: PresenceRow) -> None:
        self._was_online.setdefault(row.user_id, False)
        self._left.pop(row.user_id, None)
        self._rows.pop(row.user_id, None)  # re-inserted: the list keeps the latest order
        self._rows[row.user_id] = row

    def leave(self, user_id: str, reason: str) -> None:
        was_online = self._was_online.setdefault(user_id, True)
        self._rows.pop(user_id, None)
        if was_online:
            self._left[user_id] = reason

    def update(self, user_id: str, **changes: Any) -> None:
        """A ``state``/``sessions`` change of a user listed as joined lands in their row;
        of anyone else it is not sent in interval mode."""
        row = self._rows.get(user_id)
        if row is not None:
            self._rows[user_id] = dataclasses.replace(row, **changes)

    def take(self, cap: int) -> Batch:
        """The interval's changes (at most ``cap`` of each), and a fresh start."""
        joined = list(self._rows.values())
        left = list(self._left.items())
        self._was_online, self._rows, self._left = {}, {}, {}
        return Batch(joined[:cap], left[:cap], len(joined) > cap or len(left) > cap)
