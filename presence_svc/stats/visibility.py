"""Hiding (or showing again) a user's existing records among the viewers of the versions
they viewed, when their view-history setting changes. New views are marked as they are
counted (``lua/stats/record_view.lua``); this fixes the ones counted before.

Where the records are: the user's views index (``ux:{U}:<user>:v``, every
``<artifact>/<version>`` they viewed, on their slot; written with each counted view and
walked by erasure too).
"""

from __future__ import annotations

from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import Keyspace

__all__ = ["BATCH", "restamp_viewer", "viewed_versions"]

BATCH = 500
"""Script calls per pipeline: each one a few HGET/HSET/ZADD on one version's keys."""


async def viewed_versions(
    redis: RedisConnection, keys: Keyspace, user_id: str
) -> list[tuple[str, str]]:
    """(artifact, version) pairs where ``user_id`` has a viewer record."""
    pairs: list[tuple[str, str]] = []
    async for member in redis.client.sscan_iter(keys.user_views_index(user_id), count=1000):
        artifact_id, _, version_id = as_text(member).partition("/")
        pairs.append((artifact_id, version_id))
    return pairs


async def restamp_viewer(redis: RedisConnection, keys: Keyspace, user_id: str, hide: bool) -> int:
    """Mark (``hide``) or unmark the user's viewer records, ``BATCH`` versions per
    pipeline; returns how many records there were. Counts never change."""
    found = 0
    pairs = await viewed_versions(redis, keys, user_id)
    script = redis.scripts.hide_viewer
    for start in range(0, len(pairs), BATCH):
        calls = [script.call(keys, a, v, user_id, hide) for a, v in pairs[start : start + BATCH]]
        for result in await redis.run_many(calls):
            if isinstance(result, Exception):
                raise result
            found += int(result)
    return found
