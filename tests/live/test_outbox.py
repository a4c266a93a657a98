"""The partition outbox: while it exists, every presence change the writers publish is
appended to it too (what webhooks deliver); while it does not, the writers create nothing."""

from __future__ import annotations

import msgpack
import pytest
import redis

from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import RedisConnection
from presence_svc.settings import Settings

pytestmark = pytest.mark.every_redis  # see tests/conftest.py


async def test_writers_append_their_changes_only_while_the_outbox_exists(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis
) -> None:
    store = PresenceStore(redis_conn, settings)
    outbox = store.keys.artifact("doc-ob").outbox
    await store.heartbeat("doc-ob", "tab-alice-01", "alice", "v1", None)
    assert not sync_redis.exists(outbox)

    sync_redis.xgroup_create(outbox, "webhooks", id="$", mkstream=True)
    await store.heartbeat("doc-ob", "tab-bob-0001", "bob", "v2", b'{"x":1}')
    await store.heartbeat("doc-ob", "tab-bob-0001", "bob", "", None)  # a refresh: nothing new
    await store.leave("doc-ob", "tab-alice-01", "alice")
    entries = sync_redis.xrange(outbox)
    messages = [msgpack.unpackb(fields[b"m"], raw=False) for _, fields in entries]
    assert [(m[0], m[1], m[2], [e[0] for e in m[3]], m[6]) for m in messages] == [
        ("doc-ob", 2, 2, ["join"], 1),
        ("doc-ob", 1, 1, ["leave"], 2),
    ]
    assert messages[0][3][0][1:3] == ["bob", "v2"]
    assert messages[1][3][0][1:] == ["alice", "left"]
    assert all(isinstance(m[5], int) and m[5] > 0 for m in messages)


async def test_a_user_with_two_tabs_turning_hidden_and_back_leaves_once_and_joins_once(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis
) -> None:
    """Others see one leave when the user's last visible tab turns hidden, and one join
    when the first turns visible again; the other tab's flips change nothing they see."""
    store = PresenceStore(redis_conn, settings)
    outbox = store.keys.artifact("doc-2t").outbox
    sync_redis.xgroup_create(outbox, "webhooks", id="$", mkstream=True)
    tabs = ("tab-alice-01", "tab-alice-02")
    for tab in tabs:
        await store.heartbeat("doc-2t", tab, "alice", "v1", None)
    for hidden in (True, False):
        for tab in tabs:
            counts = await store.heartbeat("doc-2t", tab, "alice", "", None, hidden=hidden)
            assert (counts.online, counts.sessions) == (1, 2)
    events = [
        [e[0] for e in msgpack.unpackb(fields[b"m"], raw=False)[3]]
        for _, fields in sync_redis.xrange(outbox)
    ]
    assert [kinds for kinds in events if kinds] == [["join"], ["sessions"], ["leave"], ["join"]]
