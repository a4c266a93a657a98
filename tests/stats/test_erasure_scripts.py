"""The erasure's scripts on the view records and the views stream, on each Redis version."""

from __future__ import annotations

import msgpack
import redis

from presence_svc.ledger.drain import GROUP
from presence_svc.privacy.erasure import StreamsEraser, ViewsEraser
from presence_svc.redis.connection import RedisConnection
from presence_svc.settings import Settings
from presence_svc.stats.views import ViewStore
from tests.privacy.scan import redis_findings

TOMB = "~erased-0123456789abcdef01234567"


def _users(sync_redis: redis.Redis, stream: str) -> list[tuple[str, str]]:
    out = []
    for _, fields in sync_redis.xrange(stream):
        view = msgpack.unpackb(fields[b"v"])
        out.append((view[3], view[4]))
    return out


async def test_erasing_views_keeps_counts_and_rewrites_the_stream_without_losing_entries(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis
) -> None:
    views = ViewStore(redis_conn, settings)
    keys = views.keys
    stream = keys.views_stream(keys.tag_of("doc-1"))
    sync_redis.xgroup_create(stream, GROUP, "0", mkstream=True)
    await views.record("doc-1", "v1", "alice", "tab-alice-0001")
    await views.record("doc-1", "v1", "bob", "tab-bob-0001")
    delivered = sync_redis.xreadgroup(GROUP, "first", {stream: ">"})  # held, not acked
    await views.record("doc-1", "v2", "alice", "tab-alice-0001")
    before = await views.stats("doc-1")

    assert await ViewsEraser(redis_conn, keys).erase_user("alice", TOMB, "") == "more"
    assert await ViewsEraser(redis_conn, keys).erase_user("alice", TOMB, "") is None
    streams = StreamsEraser(redis_conn, keys, settle_s=30)
    cursor = await streams.erase_user("alice", TOMB, "")
    assert cursor is not None
    assert cursor.split("|")[1] != "0"  # alice's first view is held: the step waits

    assert await views.stats("doc-1") == before
    page = await views.viewers("doc-1", "v1", 10, None)
    assert [v.user_id for v in page.viewers] == ["bob"]
    assert sync_redis.smembers(keys.artifact_viewers("doc-1")) == {b"bob", TOMB.encode()}
    assert not sync_redis.exists(keys.view_debounce("doc-1", "v1", "alice"))
    assert not sync_redis.exists(keys.user_views_index("alice"))
    assert _users(sync_redis, stream) == [(TOMB, ""), ("bob", "tab-bob-0001"), (TOMB, "")]
    # every entry comes again to the group: the two it had delivered and the new one
    again = sync_redis.xreadgroup(GROUP, "second", {stream: ">"})
    assert [i for i, _ in again[0][1]][:2] == [i for i, _ in delivered[0][1]]
    assert len(again[0][1]) == 3
    assert redis_findings(sync_redis, [b"tab-alice-0001"]) == []  # no flagged bytes either
