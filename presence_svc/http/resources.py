"""The shared resources of one app, each made and closed by its own cleanup context and
reached through a typed ``web.AppKey`` (no module-level clients)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web
from redis.exceptions import RedisError

from presence_svc.auth import TokenCodec
from presence_svc.database import Database, DatabaseUnavailable, database_for
from presence_svc.http.limiter import Limiter
from presence_svc.http.page_cache import PageCache
from presence_svc.ledger.store import LedgerStore
from presence_svc.live.events import LargeRooms, PresenceHub
from presence_svc.live.privacy import PrivacyMirror
from presence_svc.live.store import PresenceStore
from presence_svc.privacy.jobs import ErasureJobs
from presence_svc.privacy.wiring import erasure_jobs
from presence_svc.redis.connection import RedisConnection, connect
from presence_svc.settings import Settings
from presence_svc.stats.engagement import EngagementRules
from presence_svc.stats.seen import SeenStore
from presence_svc.stats.views import ViewStore
from presence_svc.tasks import cancel_and_wait
from presence_svc.timeline.query import Timeline
from presence_svc.timeline.store import timeline_store
from presence_svc.users.cache import CachedUsers
from presence_svc.users.directory import UsersDirectory
from presence_svc.worker import Worker

__all__ = [
    "DATABASE",
    "ENGAGEMENT",
    "ERASURES",
    "HUB",
    "LEDGER",
    "LIMITER",
    "PAGES",
    "PRESENCE",
    "PRIVACY",
    "REDIS",
    "SEEN",
    "SETTINGS",
    "TIMELINE",
    "TOKENS",
    "USERS",
    "VIEWS",
    "database_ctx",
    "end_event_streams",
    "hub_ctx",
    "privacy_ctx",
    "redis_ctx",
    "worker_ctx",
]

log = logging.getLogger(__name__)

SETTINGS: Final = web.AppKey("settings", Settings)
TOKENS: Final = web.AppKey("tokens", TokenCodec)
REDIS: Final = web.AppKey("redis", RedisConnection)
PRESENCE: Final = web.AppKey("presence", PresenceStore)
VIEWS: Final = web.AppKey("views", ViewStore)
SEEN: Final = web.AppKey("seen", SeenStore)
ENGAGEMENT: Final = web.AppKey("engagement", EngagementRules)
DATABASE: Final = web.AppKey("database", Database)
LEDGER: Final = web.AppKey[LedgerStore]("ledger")
USERS: Final = web.AppKey[UsersDirectory]("users")
HUB: Final = web.AppKey("hub", PresenceHub)
LIMITER: Final = web.AppKey("limiter", Limiter)
TIMELINE: Final = web.AppKey("timeline", Timeline)
PRIVACY: Final = web.AppKey("privacy", PrivacyMirror)
ERASURES: Final = web.AppKey("erasures", ErasureJobs)
PAGES: Final = web.AppKey("pages", PageCache)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Redis connection and the stores on it. Starts even if Redis is down: /readyz
    tells."""
    settings = app[SETTINGS]
    # One try and one retry, each bounded by the Redis timeout: a 503 within 2 s.
    redis = connect(settings, deadline_s=2 * settings.redis_timeout_s, pipelined=True)
    try:
        await redis.load_scripts()
    except RedisError as exc:
        log.warning("redis not reachable at start; will retry on use", extra={"error": repr(exc)})
    app[REDIS] = redis
    app[PRESENCE] = PresenceStore(redis, settings)
    app[PAGES] = PageCache(settings.page_cache_s)
    app[VIEWS] = ViewStore(redis, settings)
    app[SEEN] = SeenStore(redis, settings)
    app[ENGAGEMENT] = EngagementRules(settings)
    limits = settings.rate_limits
    app[LIMITER] = Limiter(
        redis,
        app[PRESENCE].keys,
        limits,
        settings.rate_limit_settle_s,
        settings.rate_limit_lazy_s,
    )
    async with app[LIMITER].settling():
        yield
    await redis.aclose()


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """The ledger and the users directory. Starts even if the database is down: it is
    connected on first use, /readyz tells, and its endpoints answer 503 meanwhile."""
    database = database_for(app[SETTINGS])
    await database.start()
    app[DATABASE] = database
    app[LEDGER] = database.ledger
    # Names are joined into every presence page and event: a short per-process cache.
    users = CachedUsers(database.users, app[SETTINGS].profile_cache_s)
    app[USERS] = users
    app[TIMELINE] = Timeline(app[REDIS], timeline_store(database.connection), app[SETTINGS])
    app[ERASURES] = erasure_jobs(app[REDIS], database, app[SETTINGS], app[PRESENCE])
    yield
    await users.aclose()
    await database.close()


async def privacy_ctx(app: web.Application) -> AsyncIterator[None]:
    """The privacy mirror (after Redis and the database: it reads both), loaded once before
    the first request when Redis answers, then polled in the background."""
    mirror = PrivacyMirror(app[REDIS], app[USERS], app[SETTINGS].privacy_refresh_s)
    try:
        await mirror.refresh()
    except (RedisError, DatabaseUnavailable, OSError) as exc:
        log.warning("privacy mirror not loaded at start", extra={"error": repr(exc)})
    app[PRIVACY] = mirror
    task = asyncio.create_task(mirror.run(), name="privacy-mirror")
    yield
    await cancel_and_wait(task)  # for sure: a cancellation can be lost on 3.11


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    """The live-events hub (after Redis and the database: it uses both, and closes first)."""
    settings, presence = app[SETTINGS], app[PRESENCE]

    async def online(artifact_id: str) -> int:
        return (await presence.online_one(artifact_id)).online

    hub = PresenceHub(
        app[REDIS],
        presence.keys,
        app[USERS].get_profiles,
        large_rooms=LargeRooms(settings.large_room_users, settings.large_room_interval_s),
        online=online,
    )
    app[HUB] = hub
    yield
    await hub.aclose()


async def end_event_streams(app: web.Application) -> None:
    """``on_shutdown``: open event streams end, so graceful shutdown does not wait on them."""
    if HUB in app:
        app[HUB].end_streams()


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """The worker inside ``serve``; stopped (after its current batch) at shutdown."""
    worker = Worker(app[REDIS], app[DATABASE], app[SETTINGS])
    task = asyncio.create_task(worker.run(), name="worker")
    yield
    worker.stop()
    await task
