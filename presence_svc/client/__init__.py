"""Async client of presence-svc for services and bots (aiohttp, typed answers).

```python
async with PresenceClient("http://127.0.0.1:8080", token) as client:
    live = await client.join("doc-1", version_id="v3")   # heartbeats until the block ends
    print(live.counts.online, (await client.presence("doc-1")).users)
    here = LivePresence()
    async for event in client.events("doc-1"):              # typed, resumes after drops
        here.apply(event)                                    # exact or interval mode
        print(here.mode, here.online, sorted(here.users))
```
"""

from presence_svc.client.client import PresenceClient, TokenProvider, new_session_id
from presence_svc.client.errors import PresenceClientError
from presence_svc.client.events import (
    CountEvent,
    EventStream,
    IntervalEvent,
    JoinEvent,
    LeaveEvent,
    PresenceEvent,
    SessionsEvent,
    StateEvent,
    SyncEvent,
)
from presence_svc.client.live import LiveSession
from presence_svc.client.models import (
    ArtifactOnline,
    EngagementItem,
    EngagementPage,
    Erasure,
    HeartbeatResult,
    HistogramBucket,
    Latest,
    LedgerItem,
    LedgerPage,
    OnlineCounts,
    PresencePage,
    PresenceUser,
    Privacy,
    RecentItem,
    RecentList,
    RecentUser,
    SeenCheck,
    SeenPage,
    SeenViewer,
    Stats,
    Timeline,
    TimelinePeak,
    TimelinePoint,
    UnseenItem,
    VersionStats,
    Viewer,
    ViewersPage,
    ViewResult,
    WhereNow,
    WhereOnline,
    WhereRecent,
)
from presence_svc.client.snapshot import LivePresence
from presence_svc.client.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "ArtifactOnline",
    "CountEvent",
    "EngagementItem",
    "EngagementPage",
    "Erasure",
    "EventStream",
    "HeartbeatResult",
    "HistogramBucket",
    "IntervalEvent",
    "JoinEvent",
    "Latest",
    "LeaveEvent",
    "LedgerItem",
    "LedgerPage",
    "LivePresence",
    "LiveSession",
    "OnlineCounts",
    "PresenceClient",
    "PresenceClientError",
    "PresenceEvent",
    "PresencePage",
    "PresenceUser",
    "Privacy",
    "RecentItem",
    "RecentList",
    "RecentUser",
    "SeenCheck",
    "SeenPage",
    "SeenViewer",
    "SessionsEvent",
    "StateEvent",
    "Stats",
    "SyncEvent",
    "Timeline",
    "TimelinePeak",
    "TimelinePoint",
    "TokenProvider",
    "UnseenItem",
    "VersionStats",
    "ViewResult",
    "Viewer",
    "ViewersPage",
    "WebhookVerificationError",
    "WhereNow",
    "WhereOnline",
    "WhereRecent",
    "new_session_id",
    "verify_webhook",
]
