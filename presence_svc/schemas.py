"""Request and response bodies: one msgspec Struct each.

The same Structs decode JSON and msgpack, validate, and give the JSON Schema of the
OpenAPI document, so what is documented is what is enforced.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = [
    "ID_PATTERN",
    "MAX_AUDIENCE",
    "MAX_ENGAGED_MS",
    "SESSION_PATTERN",
    "ArtifactId",
    "BatchOnline",
    "EngagementItemOut",
    "EngagementOut",
    "HeartbeatIn",
    "HeartbeatOut",
    "HistogramBucketOut",
    "IntervalEvent",
    "JoinEvent",
    "LatestIn",
    "LatestOut",
    "LeaveEvent",
    "LeaveIn",
    "LedgerItemOut",
    "LedgerOut",
    "OnlineCounts",
    "OnlineOut",
    "PresenceListOut",
    "PresenceOut",
    "PresenceUser",
    "PrivacyIn",
    "PrivacyOut",
    "ProfileIn",
    "ProfileOut",
    "RecentItemOut",
    "RecentOut",
    "RecentUserOut",
    "SeenCheckIn",
    "SeenCheckOut",
    "SeenOut",
    "SeenViewerOut",
    "SessionId",
    "SessionMetaOut",
    "StateEvent",
    "StatsOut",
    "Status",
    "SyncEvent",
    "TimelineOut",
    "TimelinePeak",
    "TimelinePoint",
    "UnseenItemOut",
    "UnseenOut",
    "UserId",
    "VersionId",
    "VersionStatsOut",
    "ViewIn",
    "ViewOut",
    "ViewerOut",
    "ViewersOut",
    "WebhookFailureOut",
    "WebhookFailuresOut",
    "WebhookHealth",
    "WebhookIn",
    "WebhookOut",
    "WebhookPatch",
    "WebhookReplayIn",
    "WebhookReplayOut",
    "WebhookTestOut",
    "WebhooksOut",
    "WhereNowOut",
    "WhereOnlineOut",
    "WhereRecentOut",
]

ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$(?!\n)"
"""``(?!\n)``: Python's ``$`` also matches before a final newline (``"doc-1\n"``);
harmless in the ECMA dialect of JSON Schema, where ``$`` is the end."""
SESSION_PATTERN = r"^[A-Za-z0-9_-]{8,64}$(?!\n)"

_ID_META = Meta(
    min_length=1,
    max_length=128,
    pattern=ID_PATTERN,
    description="1-128 characters of A-Z a-z 0-9 . _ : @ -",
)
ArtifactId = Annotated[str, _ID_META]
VersionId = Annotated[str, _ID_META]
UserId = Annotated[str, _ID_META]
SessionId = Annotated[
    str,
    Meta(
        min_length=8,
        max_length=64,
        pattern=SESSION_PATTERN,
        description="8-64 characters of A-Z a-z 0-9 _ -; one per browser tab or device",
    ),
]
State = Annotated[
    dict[str, Any], Meta(description="Free-form session state; at most 1 KiB encoded as JSON")
]
Time = Annotated[str, Meta(description="ISO 8601 UTC with milliseconds")]
NamesJoined = Annotated[
    bool,
    Meta(
        description="false when the users directory could not be read (the database is "
        "down): every name and avatarUrl is then null, whatever the profiles hold"
    ),
]


Status = Annotated[
    Literal["active", "away"],
    Meta(
        description="active: someone is there; away: the tab is hidden or the user idle. "
        "A user is active when any of their online sessions is"
    ),
]
_COUNT_ACTIVE = Meta(description="users online with at least one active session")
_COUNT_AWAY = Meta(description="users online whose every online session is away")


MAX_ENGAGED_MS = 86_400_000
EngagedMs = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_ENGAGED_MS,
        description="Engaged milliseconds since the session's previous heartbeat (tab "
        "visible and focused, an input within idleAfterS): an integer, 0-86400000. The "
        "server clamps it to the time since the session's previous report plus 2 s, and "
        "to PRESENCE_ONLINE_TIMEOUT_S; it credits the viewer of the version only if they "
        "have a counted view of it",
    ),
]


class _Body(Struct, rename="camel", forbid_unknown_fields=False):
    """Request bodies ignore unknown fields (a client's ``userId`` is never trusted)."""


class HeartbeatIn(_Body, kw_only=True):
    artifact_id: ArtifactId
    session_id: SessionId
    version_id: VersionId | None = None
    state: State | None = None
    status: Annotated[
        Literal["active", "away"],
        Meta(
            description="away keeps the session online for PRESENCE_AWAY_TIMEOUT_S after "
            "this heartbeat (default 600 s) instead of PRESENCE_ONLINE_TIMEOUT_S (45 s): "
            "for hidden tabs, whose timers browsers throttle to about once a minute"
        ),
    ] = "active"
    engaged_ms: EngagedMs = 0


class LeaveIn(_Body, kw_only=True):
    artifact_id: ArtifactId
    session_id: SessionId
    grace: Annotated[
        bool,
        Meta(
            description="Leave after a short grace unless the session heartbeats again "
            "(a page reload); used by the browser SDK's pagehide beacon"
        ),
    ] = False
    token: Annotated[
        str | None,
        Meta(
            description="Bearer token for clients that cannot send headers "
            "(navigator.sendBeacon); ignored when an Authorization header is present"
        ),
    ] = None
    engaged_ms: EngagedMs = 0


class ViewIn(_Body, kw_only=True):
    artifact_id: ArtifactId
    version_id: VersionId
    session_id: SessionId | None = None


class ProfileIn(_Body, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    avatar_url: Annotated[str, Meta(max_length=2048, pattern=r"^https?://\S+$(?!\n)")] | None = None


Visibility = Annotated[
    Literal["visible", "hidden"],
    Meta(description="visible: shown to others (the default); hidden: shown to the user alone"),
]


class PrivacyIn(_Body, kw_only=True):
    """A partial update: a field left out keeps its stored value."""

    view_history: Annotated[
        Visibility | UnsetType,
        Meta(
            description="hidden: the user's views still count (views, unique viewers, "
            "readers) but they are listed to nobody else: not in viewer lists, seen lists, "
            "nor the ledger API (admins excepted)"
        ),
    ] = UNSET
    presence: Annotated[
        Visibility | UnsetType,
        Meta(
            description="hidden: the user's sessions count in online, sessions, active and "
            "away but are not listed, not announced in events (count updates only), not "
            "in where-now for others"
        ),
    ] = UNSET


class _Out(Struct, rename="camel"):
    pass


class PrivacyOut(_Out, kw_only=True):
    user_id: str
    view_history: Visibility
    presence: Visibility
    updated_at: Annotated[Time | None, Meta(description="null: never set (both visible)")]


class HeartbeatOut(_Out, kw_only=True):
    online: int
    sessions: int
    active: Annotated[int, _COUNT_ACTIVE]
    away: Annotated[int, _COUNT_AWAY]
    interval_s: float


class OnlineCounts(_Out, kw_only=True):
    online: int
    sessions: int
    active: Annotated[int, _COUNT_ACTIVE]
    away: Annotated[int, _COUNT_AWAY]


class OnlineOut(_Out, kw_only=True):
    artifact_id: str
    online: int
    sessions: int
    active: Annotated[int, _COUNT_ACTIVE]
    away: Annotated[int, _COUNT_AWAY]


class BatchOnline(_Out, kw_only=True):
    counts: dict[str, OnlineCounts]


class SessionMetaOut(_Out, kw_only=True):
    """One online session of a user (``?include=sessions``); never its id."""

    version_id: str | None
    state: dict[str, Any] | None
    last_seen: Time
    status: Status


class PresenceUser(_Out, kw_only=True, omit_defaults=True):
    user_id: str
    name: str | None
    avatar_url: str | None
    version_id: str | None
    last_seen: Time
    sessions: int
    state: dict[str, Any] | None
    status: Status
    session_list: Annotated[
        list[SessionMetaOut] | None,
        Meta(
            description="with ?include=sessions: each online session of the user, oldest "
            "first, at most 32 (no session ids); absent otherwise"
        ),
    ] = None


class RecentUserOut(_Out, kw_only=True):
    """A user recently on the artifact and offline now."""

    user_id: str
    name: str | None
    avatar_url: str | None
    last_seen: Time
    reason: Annotated[
        Literal["left", "timeout"] | None,
        Meta(description="how their last session went: a leave, or a timeout; null if unknown"),
    ]


class PresenceOut(_Out, kw_only=True):
    online: int
    sessions: int
    active: Annotated[int, _COUNT_ACTIVE]
    away: Annotated[int, _COUNT_AWAY]
    users: list[PresenceUser]
    next_cursor: str | None
    names_joined: NamesJoined


StreamMode = Annotated[
    Literal["exact", "interval"],
    Meta(
        description="exact: one event per user change; interval: one `interval` event per"
        " PRESENCE_LARGE_ROOM_INTERVAL_S (a large room)"
    ),
]


class SyncEvent(PresenceOut, kw_only=True):
    """The ``sync`` event: the first page of the presence list, and the stream's mode."""

    mode: StreamMode


class IntervalEvent(_Out, kw_only=True, omit_defaults=True):
    """The ``interval`` event of a large room: the counts now, and who came and went since
    the last one (each list capped; ``more`` when some were left out)."""

    online: int
    sessions: int
    joined: list[PresenceUser]
    left: list[LeaveEvent]
    more: bool
    names_joined: NamesJoined
    active: int
    """Users online with an active session."""
    away: int
    """Users online whose every session is away."""


class PresenceListOut(PresenceOut, kw_only=True):
    """The presence list: a page of online users, and with ``include`` more."""

    recent: Annotated[
        list[RecentUserOut] | UnsetType,
        Meta(
            description="with include=recent: users seen in the last PRESENCE_RECENT_S "
            "who are offline now, most recent first"
        ),
    ] = UNSET
    recent_next_cursor: Annotated[
        str | UnsetType | None,
        Meta(description="with include=recent: recentCursor of the next page"),
    ] = UNSET


class WhereOnlineOut(_Out, kw_only=True):
    """An artifact the user is online on."""

    artifact_id: str
    version_id: str | None
    status: Annotated[
        Literal["active", "away"], Meta(description="active when any of the user's sessions is")
    ]
    last_seen: Time
    sessions: int


class WhereRecentOut(_Out, kw_only=True):
    """An artifact the user left within PRESENCE_RECENT_S."""

    artifact_id: str
    last_seen: Time
    reason: Literal["left", "timeout"] | None


class WhereNowOut(_Out, kw_only=True):
    user_id: str
    online: list[WhereOnlineOut]
    recent: list[WhereRecentOut]


class JoinEvent(PresenceUser, kw_only=True):
    """The ``join`` event: a presence row, and whether its name could be read."""

    names_joined: NamesJoined


class LeaveEvent(_Out, kw_only=True):
    """The ``leave`` event: the user's last online session went."""

    user_id: str
    reason: Literal["left", "timeout"]


class SessionsEvent(_Out, kw_only=True):
    """The ``sessions`` event: an online user opened or closed one of several sessions."""

    user_id: str
    sessions: int


class StateEvent(_Out, kw_only=True):
    """The ``state`` event: a session of an online user changed its state or version, or
    the user's status changed (active/away)."""

    user_id: str
    version_id: str | None
    state: dict[str, Any] | None
    status: Status


class ViewOut(_Out, kw_only=True):
    counted: bool
    views: int
    unique_viewers: int


class HistogramBucketOut(_Out, kw_only=True):
    from_s: Annotated[int, Meta(description="the bucket's floor: engaged time >= this")]
    viewers: int


_ENGAGED = Meta(description="engaged milliseconds credited (see engagedMs of a heartbeat)")


class VersionStatsOut(_Out, kw_only=True):
    version_id: str
    views: int
    unique_viewers: int
    last_viewed_at: Time
    engaged_ms: Annotated[int, _ENGAGED]
    readers: Annotated[
        int, Meta(description="viewers whose engaged time reached PRESENCE_READ_AFTER_S")
    ]
    histogram: Annotated[
        list[HistogramBucketOut],
        Meta(
            description="viewers with engaged time > 0, by their total, in buckets from "
            "0, 10, 30, 60, 300 and 900 s (each up to the next floor)"
        ),
    ]


class StatsOut(_Out, kw_only=True):
    artifact_id: str
    views: int
    unique_viewers: int
    last_viewed_at: Time | None
    engaged_ms: Annotated[int, Meta(description="engaged milliseconds of the versions listed")]
    versions: list[VersionStatsOut]


class ViewerOut(_Out, kw_only=True):
    user_id: str
    name: str | None
    avatar_url: str | None
    views: int
    first_viewed_at: Time
    last_viewed_at: Time
    engaged_ms: Annotated[int, _ENGAGED]


class ViewersOut(_Out, kw_only=True):
    viewers: list[ViewerOut]
    next_cursor: str | None
    names_joined: NamesJoined
    hidden_viewers: Annotated[
        int,
        Meta(
            description="viewers of the version left out of the list because their view "
            "history is hidden (they still count in uniqueViewers); the caller's own row "
            "is listed to them and not counted here"
        ),
    ]


MAX_AUDIENCE = 1000
"""User ids one ``seen/check`` takes."""


class LatestIn(_Body, kw_only=True):
    version_id: Annotated[
        VersionId,
        Meta(description="The version people are expected to read; it need not have views yet"),
    ]


class LatestOut(_Out, kw_only=True):
    artifact_id: str
    version_id: str
    set_at: Time


_ENGAGED = Meta(description="engaged milliseconds on the version (0 until measured)")
_READ = Meta(description="engaged time reached PRESENCE_READ_AFTER_S")
_HIDDEN = Meta(description="viewers who hid their view history: counted, never listed")


class SeenViewerOut(_Out, kw_only=True):
    user_id: str
    name: str | None
    avatar_url: str | None
    views: int
    first_viewed_at: Time
    last_viewed_at: Time
    engaged_ms: Annotated[int, _ENGAGED]
    read: Annotated[bool, _READ]


class SeenOut(_Out, kw_only=True):
    artifact_id: str
    version_id: str
    seen: Annotated[int, Meta(description="users who viewed the version")]
    read: Annotated[
        int, Meta(description="of them, those whose engaged time reached PRESENCE_READ_AFTER_S")
    ]
    hidden_viewers: Annotated[int, _HIDDEN]
    viewers: list[SeenViewerOut]
    next_cursor: str | None
    names_joined: NamesJoined


_LooseId = Annotated[str, Meta(min_length=1, max_length=128, description=_ID_META.description)]
"""An id whose characters the handler checks, all ids of a body in one pass."""


class SeenCheckIn(_Body, kw_only=True):
    user_ids: Annotated[
        list[_LooseId],
        Meta(min_length=1, max_length=MAX_AUDIENCE, description="the audience, 1-1000 ids"),
    ]
    version_id: Annotated[
        VersionId | None, Meta(description="default: the artifact's latest version")
    ] = None


class SeenCheckOut(_Out, kw_only=True):
    version_id: str
    seen: Annotated[list[str], Meta(description="the ids that viewed the version")]
    read: Annotated[list[str], Meta(description="of them, those who read it")]
    not_seen: Annotated[list[str], Meta(description="the ids that did not view it")]
    hidden_viewers: Annotated[int, _HIDDEN]


class UnseenItemOut(_Out, kw_only=True):
    artifact_id: str
    version_id: Annotated[str, Meta(description="the latest version, not viewed by the user")]
    set_at: Time


class UnseenOut(_Out, kw_only=True):
    artifacts: list[UnseenItemOut]


class RecentItemOut(_Out, kw_only=True):
    artifact_id: str
    version_id: str | None
    last_viewed_at: Time


class RecentOut(_Out, kw_only=True):
    items: list[RecentItemOut]


class LedgerItemOut(_Out, kw_only=True):
    view_id: str
    artifact_id: str
    version_id: str
    user_id: str
    session_id: str | None
    viewed_at: Time


class LedgerOut(_Out, kw_only=True):
    items: list[LedgerItemOut]
    next_cursor: str | None


class EngagementItemOut(_Out, kw_only=True):
    artifact_id: str
    version_id: str
    user_id: str
    day: Annotated[str, Meta(description="the UTC day, YYYY-MM-DD")]
    engaged_ms: Annotated[int, Meta(description="the user's engaged milliseconds that day")]
    updated_at: Annotated[Time, Meta(description="when the worker last raised the total")]


class EngagementOut(_Out, kw_only=True):
    items: list[EngagementItemOut]
    next_cursor: str | None


class ProfileOut(_Out, kw_only=True):
    user_id: str
    name: str
    avatar_url: str | None
    updated_at: Time
    privacy: Annotated[
        PrivacyOut,
        Meta(description="the user's privacy settings (shown to the user and to admins)"),
    ]


class TimelinePoint(_Out, gc=False):
    """Positional (not keyword-only): a 10 000-point answer makes them with ``map``."""

    t: Time
    """The step's start."""
    online: int
    """The most users online at once in the step."""
    sessions: int
    """The most sessions online at once in the step."""


class TimelinePeak(_Out, kw_only=True):
    online: int
    at: Time | None
    """The start of the first step with that many users; null without points."""


class TimelineOut(_Out, kw_only=True):
    artifact_id: str
    step: Literal["1m", "1h", "1d"]
    points: list[TimelinePoint]
    peak: TimelinePeak


class ErasureOut(_Out, kw_only=True):
    erasure_id: str
    status: Literal["pending", "complete"]
    requested_at: Time
    completed_at: Time | None


_EVENT_TYPES = Meta(
    description="event types: artifact.occupied, artifact.vacated, presence.join, "
    "presence.leave, presence.interval, view.counted, version.seen, version.read "
    "(see docs/webhooks.md)"
)
_PREFIX = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9._:@-]{1,128}$(?!\n)",
        description="only artifacts whose id starts with this",
    ),
]


class WebhookIn(_Body, kw_only=True):
    url: Annotated[str, Meta(max_length=2048, description="https:// (see safety rules)")]
    events: Annotated[list[str], Meta(min_length=1, max_length=32), _EVENT_TYPES]
    artifact_prefix: _PREFIX | None = None


class WebhookPatch(_Body, kw_only=True):
    url: Annotated[str, Meta(max_length=2048)] | UnsetType = UNSET
    events: Annotated[list[str], Meta(min_length=1, max_length=32)] | UnsetType = UNSET
    artifact_prefix: _PREFIX | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET
    rotate_secret: Annotated[
        bool, Meta(description="a new secret (in the answer, once); the old one keeps signing")
    ] = False
    secret_overlap_s: Annotated[
        int,
        Meta(ge=0, le=604800, description="how long the old secret keeps signing, seconds"),
    ] = 86400


class WebhookHealth(_Out, kw_only=True):
    status: Literal["healthy", "failing", "disabled"]
    pending: int
    failures: int
    failing_since: Time | None
    last_success_at: Time | None
    last_failure_at: Time | None


class WebhookOut(_Out, kw_only=True, omit_defaults=True):
    webhook_id: str
    url: str
    events: list[str]
    artifact_prefix: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: Time
    updated_at: Time
    health: WebhookHealth
    secret: (
        Annotated[str, Meta(description="the signing secret: only when created or rotated")]
        | UnsetType
    ) = UNSET
    previous_secret_until: Time | None = None


class WebhooksOut(_Out, kw_only=True):
    items: list[WebhookOut]


class WebhookFailureOut(_Out, kw_only=True):
    failure_id: str
    event_id: str
    type: str
    artifact_id: str
    attempts: int
    last_error: str | None
    created_at: Time
    event: dict[str, Any]


class WebhookFailuresOut(_Out, kw_only=True):
    items: list[WebhookFailureOut]
    next_cursor: str | None


class WebhookReplayIn(_Body, kw_only=True):
    failure_id: (
        Annotated[str, Meta(pattern=r"^[0-9]{1,19}$(?!\n)", description="one failure; absent: all")]
        | None
    ) = None


class WebhookReplayOut(_Out, kw_only=True):
    replayed: int


class WebhookTestOut(_Out, kw_only=True):
    event_id: str
    delivered: bool
    status: int | None
    error: str | None


def schema_components(types: list[Any]) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """JSON Schemas of ``types`` with shared definitions under components/schemas."""
    return msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
