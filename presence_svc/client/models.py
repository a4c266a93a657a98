"""Typed answers of the API, decoded by msgspec straight from the JSON bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

__all__ = [
    "ArtifactOnline",
    "EngagementItem",
    "EngagementPage",
    "Erasure",
    "HeartbeatResult",
    "HistogramBucket",
    "LedgerItem",
    "LedgerPage",
    "OnlineCounts",
    "PresencePage",
    "PresenceUser",
    "Privacy",
    "RecentItem",
    "RecentList",
    "RecentUser",
    "SessionMeta",
    "Stats",
    "Status",
    "Timeline",
    "TimelinePeak",
    "TimelinePoint",
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


class HistogramBucket(_Model, frozen=True, kw_only=True):
    from_s: int
    """The bucket holds the viewers whose engaged time is at least this (and below the
    next bucket's floor)."""
    viewers: int


class VersionStats(_Model, frozen=True, kw_only=True):
    version_id: str
    views: int
    unique_viewers: int
    last_viewed_at: datetime
    engaged_ms: int = 0
    readers: int = 0
    """Viewers whose engaged time reached the service's read-after time (30 s)."""
    histogram: list[HistogramBucket] = msgspec.field(default_factory=list)


class Stats(_Model, frozen=True, kw_only=True):
    artifact_id: str
    views: int
    unique_viewers: int
    last_viewed_at: datetime | None = None
    engaged_ms: int = 0
    versions: list[VersionStats]


class TimelinePoint(_Model, frozen=True, kw_only=True):
    t: datetime
    """The step's start."""
    online: int
    """The most users online at once in the step."""
    sessions: int


class TimelinePeak(_Model, frozen=True, kw_only=True):
    online: int
    at: datetime | None = None


class Timeline(_Model, frozen=True, kw_only=True):
    artifact_id: str
    step: Literal["1m", "1h", "1d"]
    points: list[TimelinePoint]
    peak: TimelinePeak


class Viewer(_Model, frozen=True, kw_only=True):
    user_id: str
    name: str | None = None
    avatar_url: str | None = None
    views: int
    first_viewed_at: datetime
    last_viewed_at: datetime
    engaged_ms: int = 0


class ViewersPage(_Model, frozen=True, kw_only=True):
    viewers: list[Viewer]
    next_cursor: str | None = None
    names_joined: bool = True
    """False when the service could not read the users directory: names are None."""
    hidden_viewers: int = 0
    """Viewers left out because their view history is hidden (they still count)."""


class Privacy(_Model, frozen=True, kw_only=True):
    """A user's privacy settings: ``visible`` or ``hidden`` each."""

    user_id: str
    view_history: Literal["visible", "hidden"] = "visible"
    presence: Literal["visible", "hidden"] = "visible"
    updated_at: datetime | None = None
    """None: never set."""


class Latest(_Model, frozen=True, kw_only=True):
    """The version of an artifact people are expected to read."""

    artifact_id: str
    version_id: str
    set_at: datetime


class SeenViewer(_Model, frozen=True, kw_only=True):
    user_id: str
    name: str | None = None
    avatar_url: str | None = None
    views: int
    first_viewed_at: datetime
    last_viewed_at: datetime
    engaged_ms: int = 0
    read: bool = False


class SeenPage(_Model, frozen=True, kw_only=True):
    """Who has seen a version: counts (hidden viewers included) and one page of names."""

    artifact_id: str
    version_id: str
    seen: int
    read: int
    hidden_viewers: int = 0
    viewers: list[SeenViewer]
    next_cursor: str | None = None
    names_joined: bool = True


class SeenCheck(_Model, frozen=True, kw_only=True):
    """Which of an audience saw (and read) a version; hidden viewers are in no list."""

    version_id: str
    seen: list[str]
    read: list[str]
    not_seen: list[str]
    hidden_viewers: int = 0


class UnseenItem(_Model, frozen=True, kw_only=True):
    artifact_id: str
    version_id: str
    set_at: datetime


class _Unseen(_Model, frozen=True, kw_only=True):
    artifacts: list[UnseenItem]


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


class EngagementItem(_Model, frozen=True, kw_only=True):
    artifact_id: str
    version_id: str
    user_id: str
    day: str
    """The UTC day, ``YYYY-MM-DD``."""
    engaged_ms: int
    updated_at: datetime


class EngagementPage(_Model, frozen=True, kw_only=True):
    items: list[EngagementItem]
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
