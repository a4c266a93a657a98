"""A user's privacy settings, kept in the users directory's ``privacy`` table: whether
their view history and their presence are shown to others. A user without a row has both
visible. The hot paths read a mirror of the hidden ones (``live/privacy.py``), not this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PRIVACY_COLUMNS", "Privacy", "Visibility", "privacy_of"]

Visibility = Literal["visible", "hidden"]

PRIVACY_COLUMNS = "user_id, view_history, presence, updated_at"
"""The ``privacy`` table's columns, in ``Privacy`` order."""


@dataclass(frozen=True, slots=True)
class Privacy:
    user_id: str
    view_history: Visibility = "visible"
    presence: Visibility = "visible"
    updated_at_ms: int = 0
    """0: never set (both visible by default)."""

    @property
    def flags(self) -> int:
        """As the Redis mirror keeps them: 1 view history hidden, 2 presence hidden."""
        return (self.view_history == "hidden") + 2 * (self.presence == "hidden")


def privacy_of(user_id: str, view_history: str, presence: str, updated_at_ms: int) -> Privacy:
    """A stored row as ``Privacy`` (anything but 'hidden' reads as visible)."""
    return Privacy(
        user_id,
        "hidden" if view_history == "hidden" else "visible",
        "hidden" if presence == "hidden" else "visible",
        int(updated_at_ms),
    )
