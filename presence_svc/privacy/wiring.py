"""The erasers of this service, in the order an erasure walks them, and the jobs on them.

To erase a new kind of user data, append its eraser in ``default_erasers`` (before the
profile, which goes last): an ``Eraser`` for data erased in several bounded steps, or
``erasers.add_simple(name, store.erase_user)`` for one ``erase_user(user_id, tombstone)``
call that is bounded and idempotent.
"""

from __future__ import annotations

from presence_svc.database import Database
from presence_svc.ledger.engagement_flush import EngagementFlush
from presence_svc.live.store import PresenceStore
from presence_svc.privacy.copies import Copies
from presence_svc.privacy.erasure import (
    Erasers,
    LedgerEraser,
    PresenceEraser,
    PrivacyMirrorEraser,
    ProfileEraser,
    StreamsEraser,
    UserKeysEraser,
    ViewsEraser,
)
from presence_svc.privacy.jobs import ErasureJobs
from presence_svc.redis.connection import RedisConnection
from presence_svc.settings import Settings
from presence_svc.webhooks.lane import held_at_most_s

__all__ = ["default_erasers", "erasure_jobs"]


def default_erasers(
    redis: RedisConnection, database: Database, presence: PresenceStore, settings: Settings
) -> Erasers:
    keys = presence.keys
    return Erasers(
        [
            ViewsEraser(redis, keys),
            PresenceEraser(presence),
            UserKeysEraser(redis, keys),
            # before the ledger: a drain may still be writing the user's views
            # (and the webhook deliveries of the user's events held in a worker's memory,
            # until they are delivered or in the database, rewritten below)
            StreamsEraser(
                redis,
                keys,
                settle_s=settings.ledger_reclaim_idle_s,
                webhook_settle_s=held_at_most_s(settings.webhook_timeout_s),
            ),
            LedgerEraser(database.ledger),
            # after the sessions went: engaged time a heartbeat credited meanwhile, then
            # what the worker had written
            _EngagementLeft(EngagementFlush(redis, database.engagement, settings)),
            _Engagement(database),
            _Webhooks(database),
            PrivacyMirrorEraser(redis),
            ProfileEraser(database.users),  # and the privacy settings
        ]
    )


class _EngagementLeft:
    """Engaged-time totals still in Redis under the user's id (the days' totals and the
    dirty marks), found by a scan of every partition: after the user's sessions and view
    records went, so no heartbeat can credit more under their id afterwards."""

    name = "engagement-left"

    def __init__(self, flush: EngagementFlush) -> None:
        self.flush = flush

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        await self.flush.forget_user(user_id)
        return None


class _Engagement:
    """The engaged-time daily totals in the database: the tombstone for the user id."""

    name = "engagement-totals"

    def __init__(self, database: Database) -> None:
        self.database = database

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        await self.database.engagement.erase_user(user_id, tombstone)
        return None


class _Webhooks:
    """The user's id in webhook deliveries still queued or failed: the tombstone instead."""

    name = "webhooks"

    def __init__(self, database: Database) -> None:
        self.database = database

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        await self.database.webhooks.erase_user(user_id, tombstone)
        return None


def erasure_jobs(
    redis: RedisConnection,
    database: Database,
    settings: Settings,
    presence: PresenceStore | None = None,
) -> ErasureJobs:
    presence = presence or PresenceStore(redis, settings)
    erasers = default_erasers(redis, database, presence, settings)
    return ErasureJobs(redis, presence.keys, erasers, Copies(redis, database, settings))
