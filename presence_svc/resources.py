"""The shared resources of one app, each made and closed by its own cleanup context and
reached through a typed ``web.AppKey`` (no module-level clients)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence_svc.auth import TokenCodec
from presence_svc.db import Database, open_database
from presence_svc.events import PresenceHub
from presence_svc.presence import PresenceStore
from presence_svc.redis_client import RedisClient, connect
from presence_svc.redis_pipe import RedisPipe
from presence_svc.scripts import Scripts
from presence_svc.settings import Settings
from presence_svc.views import ViewStore

__all__ = [
    "DATABASE",
    "HUB",
    "PRESENCE",
    "REDIS",
    "SCRIPTS",
    "SETTINGS",
    "TOKENS",
    "VIEWS",
    "database_ctx",
    "end_event_streams",
    "hub_ctx",
    "redis_ctx",
]

log = logging.getLogger(__name__)

SETTINGS: Final = web.AppKey("settings", Settings)
TOKENS: Final = web.AppKey("tokens", TokenCodec)
REDIS: Final = web.AppKey[RedisClient]("redis")
SCRIPTS: Final = web.AppKey("scripts", Scripts)
PRESENCE: Final = web.AppKey("presence", PresenceStore)
VIEWS: Final = web.AppKey("views", ViewStore)
DATABASE: Final = web.AppKey[Database]("database")
HUB: Final = web.AppKey("hub", PresenceHub)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Redis client and its scripts. Starts even if Redis is down: /readyz tells."""
    settings = app[SETTINGS]
    client = connect(settings)
    # One try and one retry, each bounded by the Redis timeout: a 503 within 2 s.
    deadline_s = 2 * settings.redis_timeout_s
    pipe = RedisPipe.for_client(client, deadline_s) if isinstance(client, Redis) else None
    scripts = Scripts(client, deadline_s=deadline_s, pipe=pipe)
    try:
        await scripts.load()
    except RedisError as exc:
        log.warning("redis not reachable at start; will retry on use", extra={"error": repr(exc)})
    app[REDIS] = client
    app[SCRIPTS] = scripts
    app[PRESENCE] = PresenceStore(scripts, settings)
    app[VIEWS] = ViewStore(scripts, settings)
    yield
    if pipe is not None:
        await pipe.aclose()
    await client.aclose()


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    database = open_database(app[SETTINGS].resolved_ledger_url)
    await database.open()
    app[DATABASE] = database
    yield
    await database.close()


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    """The live-events hub (after Redis and the database: it uses both, and closes first)."""
    database = app[DATABASE]
    hub = PresenceHub(app[REDIS], app[PRESENCE].keys, database.get_profiles)
    app[HUB] = hub
    yield
    await hub.aclose()


async def end_event_streams(app: web.Application) -> None:
    """``on_shutdown``: open event streams end, so graceful shutdown does not wait on them."""
    if HUB in app:
        app[HUB].end_streams()
