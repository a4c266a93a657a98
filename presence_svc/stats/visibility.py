"""Hiding (or showing again) a user's existing records among the viewers of the versions
they viewed, when their view-history setting changes. New views are marked as they are
counted (``lua/stats/record_view.lua``); this fixes the ones counted before.

Where the records are: the user's recently-viewed list (``rc:{U}:<user>:z``, the 200
artifacts viewed last, kept 90 days) gives the artifacts, each artifact's versions zset
the versions. The erasure work is building a complete per-user index of where a user has
data; once it exists, ``viewed_versions`` should read it instead (older artifacts than the
recent list holds keep their visible rows until then).
"""

from __future__ import annotations

from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import Keyspace

__all__ = ["BATCH", "restamp_viewer", "viewed_versions"]

BATCH = 500
"""Script calls per pipeline: each one a few HGET/HSET/ZADD on one version's keys."""
MOST_VERSIONS = 1000
"""Versions looked at per artifact, most recently viewed first."""


async def viewed_versions(
    redis: RedisConnection, keys: Keyspace, user_id: str
) -> list[tuple[str, str]]:
    """(artifact, version) pairs where ``user_id`` may have a viewer record."""
    found = await redis.client.zrange(keys.user_recent(user_id), 0, -1)
    artifacts = [as_text(a) for a in found if isinstance(a, str | bytes)]
    pairs: list[tuple[str, str]] = []
    for start in range(0, len(artifacts), BATCH):
        chunk = artifacts[start : start + BATCH]
        pipe = redis.client.pipeline(transaction=False)
        for artifact_id in chunk:
            pipe.zrevrange(keys.artifact_versions(artifact_id), 0, MOST_VERSIONS - 1)
        for artifact_id, versions in zip(chunk, await pipe.execute(), strict=True):
            pairs += [(artifact_id, as_text(v)) for v in versions]
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
