"""Async client of presence-svc for services and bots (aiohttp, typed answers).

```python
async with PresenceClient("http://127.0.0.1:8080", token) as client:
    live = await client.join("doc-1", version_id="v3")   # heartbeats until the block ends
    print(live.counts.online, (await client.presence("doc-1")).users)
```
"""

from presence_svc.client.client import PresenceClient, TokenProvider, new_session_id
from presence_svc.client.errors import PresenceClientError
from presence_svc.client.live import LiveSession
from presence_svc.client.models import (
    ArtifactOnline,
    HeartbeatResult,
    LedgerItem,
    LedgerPage,
    OnlineCounts,
    PresencePage,
    PresenceUser,
    RecentItem,
    RecentList,
    RecentUser,
    Stats,
    VersionStats,
    Viewer,
    ViewersPage,
    ViewResult,
    WhereNow,
    WhereOnline,
    WhereRecent,
)

__all__ = [
    "ArtifactOnline",
    "HeartbeatResult",
    "LedgerItem",
    "LedgerPage",
    "LiveSession",
    "OnlineCounts",
    "PresenceClient",
    "PresenceClientError",
    "PresencePage",
    "PresenceUser",
    "RecentItem",
    "RecentList",
    "RecentUser",
    "Stats",
    "TokenProvider",
    "VersionStats",
    "ViewResult",
    "Viewer",
    "ViewersPage",
    "WhereNow",
    "WhereOnline",
    "WhereRecent",
    "new_session_id",
]
