"""Typed answers of the API, decoded by msgspec straight from the JSON bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

__all__ = [
    "ArtifactOnline",
    "Erasure",
    "HeartbeatResult",
    "LedgerItem",
    "LedgerPage",
    "OnlineCounts",
    "PresencePage",
    "PresenceUser",
    "RecentItem",
    "RecentList",
    "RecentUser",
    "SessionMeta",
    "Stats",
    "Status",
    "VersionStats",
    "ViewResult",
    "Viewer",
    "ViewersPage",
    "WhereNow",
    "WhereOnline",
    "WhereRecent",
]


class _Model(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    """Unknown fields are ignored, so a newer service does not break an older client."""


Status = Literal["active", "away"]


class OnlineCounts(_Model, frozen=True, kw_only=True):
    online: int
    sessions: int
    active: int = 0
    """Users online with an active session (0 from a service older than the field)."""
    away: int = 0
    """Users online whose every session is away."""


class HeartbeatResult(OnlineCounts, frozen=True, kw_only=True):
    interval_s: float


class ArtifactOnline(OnlineCounts, frozen=True, kw_only=True):
    artifact_id: str


class _BatchOnline(_Model, frozen=True, kw_only=True):
    counts: dict[str, OnlineCounts]


class SessionMeta(_Model, frozen=True, kw_only=True):
    """One online session of a user (never its id)."""

    version_id: str | None = None
    state: dict[str, Any] | None = None
    last_seen: datetime
    status: Status = "active"


class PresenceUser(_Model, frozen=True, kw_only=True):
    user_id: str
    name: str | None = None
    avatar_url: str | None = None
    version_id: str | None = None
    last_seen: datetime
    sessions: int
    state: dict[str, Any] | None = None
    status: Status = "active"
    session_list: list[SessionMeta] | None = None
    """Each online session of the user, with ``include_sessions=True``."""


class RecentUser(_Model, frozen=True, kw_only=True):
    """A user recently on the artifact and offline now (``include_recent=True``)."""

    user_id: str
    name: str | None = None
    avatar_url: str | None = None
    last_seen: datetime
    reason: str | None = None


class PresencePage(OnlineCounts, frozen=True, kw_only=True):
    users: list[PresenceUser]
    next_cursor: str | None = None
    names_joined: bool = True
    """False when the service could not read the users directory: names are None."""
    recent: list[RecentUser] | None = None
    """Only with ``include_recent=True``: who was here recently, newest first."""
    recent_next_cursor: str | None = None


class ViewResult(_Model, frozen=True, kw_only=True):
    counted: bool
    views: int
    unique_viewers: int


class VersionStats(_Model, frozen=True, kw_only=True):
    version_id: str
    views: int
    unique_viewers: int
    last_viewed_at: datetime


class Stats(_Model, frozen=True, kw_only=True):
    artifact_id: str
    views: int
    unique_viewers: int
    last_viewed_at: datetime | None = None
    versions: list[VersionStats]


class Viewer(_Model, frozen=True, kw_only=True):
    user_id: str
    name: str | None = None
    avatar_url: str | None = None
    views: int
    first_viewed_at: datetime
    last_viewed_at: datetime


class ViewersPage(_Model, frozen=True, kw_only=True):
    viewers: list[Viewer]
    next_cursor: str | None = None
    names_joined: bool = True
    """False when the service could not read the users directory: names are None."""


class RecentItem(_Model, frozen=True, kw_only=True):
    artifact_id: str
    version_id: str | None = None
    last_viewed_at: datetime


class RecentList(_Model, frozen=True, kw_only=True):
    items: list[RecentItem]


class LedgerItem(_Model, frozen=True, kw_only=True):
    view_id: str
    artifact_id: str
    version_id: str
    user_id: str
    session_id: str | None = None
    viewed_at: datetime


class Erasure(_Model, frozen=True, kw_only=True):
    """An erasure of a user. ``erasure_id`` is None when it completed within the request
    (the service answered 204 and keeps no erasure to follow)."""

    erasure_id: str | None = None
    status: Literal["pending", "complete"] = "complete"
    requested_at: str | None = None
    completed_at: str | None = None


class LedgerPage(_Model, frozen=True, kw_only=True):
    items: list[LedgerItem]
    next_cursor: str | None = None


class WhereOnline(_Model, frozen=True, kw_only=True):
    artifact_id: str
    version_id: str | None = None
    status: str = "active"
    last_seen: datetime
    sessions: int


class WhereRecent(_Model, frozen=True, kw_only=True):
    artifact_id: str
    last_seen: datetime
    reason: str | None = None


class WhereNow(_Model, frozen=True, kw_only=True):
    """Where a user is online now, and the artifacts they left recently."""

    user_id: str
    online: list[WhereOnline]
    recent: list[WhereRecent]
