"""The views streams are trimmed by the ledger drain only below what the webhooks group
has acknowledged too: a view the ledger wrote but webhooks did not deliver yet stays."""

from __future__ import annotations

import redis

from presence_svc.ledger.drain import LedgerDrain
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.stats.views import ViewStore
from presence_svc.webhooks.streams import GROUP, WebhookStreams
from tests.conftest import opened_database


async def test_the_ledger_drain_keeps_views_the_webhooks_group_still_needs(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis
) -> None:
    keys = Keyspace(settings.partitions)
    stream = keys.views_stream(keys.tag_of("doc-1"))
    async with opened_database(f"sqlite:///{settings.data_dir}/t.sqlite3") as database:
        drain = LedgerDrain(redis_conn, database.ledger, settings, consumer="one")
        await drain.join()
        await WebhookStreams(redis_conn, keys).ensure(presence=False, views=True)
        store = ViewStore(redis_conn, settings)
        for i in range(4):
            await store.record("doc-1", "v1", f"u{i}", None)
        assert await drain.drain_once() == 4
        await drain.trim_and_measure()
        assert sync_redis.xlen(stream) == 4  # written to the ledger, not yet to webhooks

        read = sync_redis.xreadgroup(GROUP, "w", {stream: ">"})[0][1]
        sync_redis.xack(stream, GROUP, *[entry_id for entry_id, _ in read[:3]])
        await drain.trim_and_measure()
        assert sync_redis.xlen(stream) == 1  # the one webhooks still holds
        sync_redis.xack(stream, GROUP, read[3][0])
        await drain.trim_and_measure()
        assert sync_redis.xlen(stream) == 0

        # Once no endpoint wants views (the group dropped), trimming is the ledger's alone.
        await WebhookStreams(redis_conn, keys).ensure(
            presence=False, views=False, drop=frozenset({"views"})
        )
        await store.record("doc-1", "v1", "u9", None)
        await drain.drain_once()
        await drain.trim_and_measure()
        assert sync_redis.xlen(stream) == 0
