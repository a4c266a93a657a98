"""One sequence of views, and the Redis state it leaves, for comparing the two ways a view
is recorded: one script call on a single server (lua/stats/view.lua), note_view.lua and
record_view.lua side by side on a Cluster. Times, view ids and stream ids differ from run
to run: the state keeps what a reader sees of them (present, ordered), not their values."""

from __future__ import annotations

from typing import Any

import msgspec
import redis
from redis.cluster import RedisCluster

from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.stats.views import ViewStore

SyncRedis = redis.Redis | RedisCluster

# (artifact, version, user, hidden): repeats inside the debounce window are not counted
VIEWS = (
    ("doc-1", "v1", "alice", False),
    ("doc-1", "v1", "alice", False),  # debounced; alice's recent list still moves
    ("doc-1", "v1", "bob", True),  # hidden: counted, not listed, seen without a user id
    ("doc-1", "v2", "alice", False),  # not the latest version: seen with latest 0
    ("doc-2", "v1", "alice", False),
    ("doc-1", "v1", "bob", True),  # debounced
    ("doc-1", "v1", "carol", False),
)
ARTIFACTS = ("doc-1", "doc-2")
USERS = ("alice", "bob", "carol")


async def record_all(redis_conn: RedisConnection, store: ViewStore) -> list[tuple[Any, ...]]:
    """Open the outbox (as a webhook endpoint's dispatcher does), make v1 doc-1's latest
    version, then record ``VIEWS`` in order: what each answered."""
    keys = store.keys
    for artifact in ARTIFACTS:
        outbox = keys.outbox(keys.tag_of(artifact))
        await redis_conn.client.xgroup_create(outbox, "hooks", id="$", mkstream=True)
    await redis_conn.run(redis_conn.scripts.set_latest.call(keys, "doc-1", "v1"))
    answers = []
    for artifact, version, user, hidden in VIEWS:
        view = await store.record(artifact, version, user, f"tab-{user}", hidden)
        assert view.viewed_at_ms > 0
        answers.append((artifact, version, user, view.counted, view.views, view.unique_viewers))
        await _next_ms(redis_conn, view.viewed_at_ms)
    return answers


async def _next_ms(redis_conn: RedisConnection, ms: int) -> None:
    """Wait for Redis's clock to pass ``ms``: two views in one millisecond do not reorder
    the recent list (``ZADD GT``), so either path could keep either version there."""
    while True:
        seconds, micros = await redis_conn.client.time()
        if seconds * 1000 + micros // 1000 > ms:
            return


def state(r: SyncRedis, keys: Keyspace) -> dict[str, Any]:
    """Every key a view writes, as a reader sees it."""
    out: dict[str, Any] = {}
    versions = sorted({(a, v) for a, v, _, _ in VIEWS})
    for artifact in ARTIFACTS:
        stats = r.hgetall(keys.artifact_stats(artifact))
        out[f"stats {artifact}"] = (stats[b"views"], b"last" in stats)
        out[f"viewers {artifact}"] = sorted(r.smembers(keys.artifact_viewers(artifact)))
        out[f"versions {artifact}"] = r.zrange(keys.artifact_versions(artifact), 0, -1)
        tag = keys.tag_of(artifact)
        stream = r.xrange(keys.views_stream(tag))
        entries = [msgspec.msgpack.decode(fields[b"v"]) for _, fields in stream]
        assert len({e[0] for e in entries}) == len(entries)  # a view id each
        out[f"stream {tag}"] = sorted(tuple(e[1:5]) for e in entries if e[1] in ARTIFACTS)
        events = [msgspec.msgpack.decode(f[b"e"]) for _, f in r.xrange(keys.outbox(tag))]
        out[f"outbox {tag}"] = sorted(tuple(e[:4] + e[5:]) for e in events)
    for artifact, version in versions:
        name = f"{artifact}/{version}"
        out[f"version {name}"] = r.hget(keys.version_stats(artifact, version), "views")
        viewers: dict[Any, Any] = {}
        for user, raw in r.hgetall(keys.version_viewers(artifact, version)).items():
            views, first, last, *rest = msgspec.msgpack.decode(raw)
            viewers[user] = (views, 0 < first <= last, rest)
        out[f"entries {name}"] = viewers
        out[f"listed {name}"] = r.zrange(keys.version_viewers_by_time(artifact, version), 0, -1)
        for user in USERS:
            debounce = keys.view_debounce(artifact, version, user)
            out[f"debounce {name} {user}"] = r.pttl(debounce) > 0
    for user in USERS:
        out[f"index {user}"] = sorted(r.smembers(keys.user_views_index(user)))
        recent = keys.user_recent(user)
        out[f"recent {user}"] = (r.zrange(recent, 0, -1), r.pttl(recent) > 0)
        versions_key = keys.user_recent_versions(user)
        out[f"recent versions {user}"] = (r.hgetall(versions_key), r.pttl(versions_key) > 0)
    return out
