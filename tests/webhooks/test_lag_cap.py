"""The webhooks group's lag cap on the views streams (PRESENCE_WEBHOOK_MAX_LAG): with the
dispatcher stopped, the ledger drain's trim gives up the group's oldest entries past the
cap, so the stream stays bounded and an erasure goes on; the ledger gets every view."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import redis
from prometheus_client import REGISTRY

from presence_svc.http.resources import DATABASE, PRESENCE, REDIS, SETTINGS
from presence_svc.ledger.drain import LedgerDrain
from presence_svc.ledger.store import LedgerQuery
from presence_svc.privacy.erasure import NotYet, StreamsEraser
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import ConfigError, Settings
from presence_svc.stats.views import ViewStore
from presence_svc.webhooks.streams import GROUP, WebhookStreams
from tests.conftest import MakeClient, opened_database

CAP = 100
VIEWS = 450


def _dropped(source: str = "views") -> float:
    found = REGISTRY.get_sample_value("presence_webhook_dropped_total", {"source": source})
    return found or 0.0


async def _views(store: ViewStore, count: int, user: str = "u") -> None:
    calls = [store.record_call("doc-1", "v1", f"{user}{i}", None) for i in range(count)]
    for result in await store.redis.run_many(calls):
        assert not isinstance(result, Exception)
        assert result[0] == 1  # counted


async def _drain_all(drain: LedgerDrain) -> int:
    total = 0
    while written := await drain.drain_once():
        total += written
        await drain.trim_and_measure()
    await drain.trim_and_measure()
    return total


async def _erase(eraser: StreamsEraser, user: str) -> None:
    cursor: str | None = ""
    while cursor is not None:
        cursor = await eraser.erase_user(user, "erased-0001", cursor)


async def test_a_stopped_dispatcher_cannot_grow_the_views_streams_past_the_cap(
    redis_conn: RedisConnection,
    settings: Settings,
    sync_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings.replace(webhook_max_lag=CAP)
    keys = Keyspace(settings.partitions)
    stream = keys.views_stream(keys.tag_of("doc-1"))
    # The erasure waits while a stream owes more than this (20 000 in production).
    eraser = StreamsEraser(redis_conn, keys, settle_s=0.0)
    eraser.MOST_ENTRIES = 2 * CAP
    async with opened_database(f"sqlite:///{settings.data_dir}/t.sqlite3") as database:
        drain = LedgerDrain(redis_conn, database.ledger, settings, consumer="one")
        await drain.join()
        await WebhookStreams(redis_conn, keys).ensure(presence=False, views=True)
        store = ViewStore(redis_conn, settings)
        # The dispatcher read a first batch and died before acknowledging it.
        await _views(store, 30, user="early")
        held = sync_redis.xreadgroup(GROUP, "dead", {stream: ">"})[0][1]
        assert len(held) == 30

        before = _dropped()
        written = 0
        with caplog.at_level(logging.WARNING, logger="presence_svc.ledger.drain"):
            for batch in range(3):
                await _views(store, VIEWS // 3, user=f"b{batch}-")
                written += await _drain_all(drain)
                assert sync_redis.xlen(stream) <= CAP  # bounded, batch after batch
        total = 30 + VIEWS
        assert await drain.drain_once() == 0
        # the ledger got every view, the 30 the dead dispatcher held included
        rows = await database.ledger.query_views(LedgerQuery(artifact_id="doc-1"), 1000)
        assert len(rows) == total
        assert sync_redis.xlen(stream) == CAP
        assert _dropped() - before == total - CAP
        assert any("webhooks lagged too far" in r.getMessage() for r in caplog.records)

        # The group's pending entries were given up; it resumes at the newest CAP views.
        (group,) = [g for g in sync_redis.xinfo_groups(stream) if g["name"] == GROUP.encode()]
        assert group["pending"] == 0
        resumed = sync_redis.xreadgroup(GROUP, "next", {stream: ">"})[0][1]
        newest = sync_redis.xrevrange(stream, count=CAP)
        assert [i for i, _ in resumed] == [i for i, _ in reversed(newest)]

        # An erasure's streams step completes (it waits past MOST_ENTRIES owed).
        await _views(store, CAP // 2, user="late")
        await _drain_all(drain)
        await _erase(eraser, "late0")
        assert not any(b"late0" in v for _, f in sync_redis.xrange(stream) for v in f.values())


async def test_without_the_cap_the_same_backlog_holds_the_stream_and_the_erasure_waits(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis
) -> None:
    """The contrast: the cap is what keeps the stream bounded (here far above the views)."""
    settings = settings.replace(webhook_max_lag=10_000_000)
    keys = Keyspace(settings.partitions)
    stream = keys.views_stream(keys.tag_of("doc-1"))
    eraser = StreamsEraser(redis_conn, keys, settle_s=0.0)
    eraser.MOST_ENTRIES = 2 * CAP
    async with opened_database(f"sqlite:///{settings.data_dir}/t.sqlite3") as database:
        drain = LedgerDrain(redis_conn, database.ledger, settings, consumer="one")
        await drain.join()
        await WebhookStreams(redis_conn, keys).ensure(presence=False, views=True)
        store = ViewStore(redis_conn, settings)
        before = _dropped()
        await _views(store, VIEWS)
        assert await _drain_all(drain) == VIEWS
        assert sync_redis.xlen(stream) == VIEWS  # all kept for the webhooks group
        assert _dropped() == before
        with pytest.raises(NotYet):
            await _erase(eraser, "u0")


async def test_the_ledger_group_is_never_capped(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis
) -> None:
    """The ledger behind by more than the cap (its database down, say) keeps everything."""
    settings = settings.replace(webhook_max_lag=CAP)
    keys = Keyspace(settings.partitions)
    stream = keys.views_stream(keys.tag_of("doc-1"))
    async with opened_database(f"sqlite:///{settings.data_dir}/t.sqlite3") as database:
        drain = LedgerDrain(redis_conn, database.ledger, settings, consumer="one")
        await drain.join()
        await WebhookStreams(redis_conn, keys).ensure(presence=False, views=True)
        store = ViewStore(redis_conn, settings)
        await _views(store, 3 * CAP)
        # webhooks is up to date, the ledger has read nothing yet
        read = sync_redis.xreadgroup(GROUP, "w", {stream: ">"})[0][1]
        sync_redis.xack(stream, GROUP, *[i for i, _ in read])
        before = _dropped()
        await drain.trim_and_measure()
        assert sync_redis.xlen(stream) == 3 * CAP
        assert _dropped() == before
        assert await _drain_all(drain) == 3 * CAP
        assert sync_redis.xlen(stream) == 0


async def test_a_stopped_dispatcher_cannot_grow_an_outbox_past_the_cap_either(
    make_client: MakeClient, auth: Callable[..., dict[str, str]], sync_redis: redis.Redis
) -> None:
    """The outboxes are the dispatcher's own to trim; while it is down the ledger drain
    caps them too, so an erasure (which rewrites them) completes."""
    client = await make_client(webhook_max_lag=CAP)
    app = client.server.app
    keys = app[PRESENCE].keys
    outbox = keys.outbox(keys.tag_of("doc-1"))
    sync_redis.xgroup_create(outbox, GROUP, id="$", mkstream=True)  # no dispatcher reads
    for i in range(CAP + 50):  # a join each: one outbox entry each
        body = {"artifactId": "doc-1", "sessionId": f"tab-u{i}-0001"}
        response = await client.post("/v1/heartbeat", json=body, headers=auth(f"u{i}"))
        assert response.status == 200
    assert sync_redis.xlen(outbox) == CAP + 50
    drain = LedgerDrain(app[REDIS], app[DATABASE].ledger, app[SETTINGS], consumer="t")
    before = _dropped("presence")
    await drain.trim_and_measure()
    assert sync_redis.xlen(outbox) == CAP
    assert _dropped("presence") - before == 50
    response = await client.delete("/v1/users/u149", headers=auth("root", scope="admin"))
    assert response.status == 204, await response.text()
    assert not any(b"u149" in v for _, f in sync_redis.xrange(outbox) for v in f.values())


@pytest.mark.parametrize("value", ["99", "10000001", "-1", "many"])
def test_a_bad_max_lag_is_rejected_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="PRESENCE_WEBHOOK_MAX_LAG"):
        Settings.from_env({"PRESENCE_WEBHOOK_MAX_LAG": value})


def test_the_max_lag_is_read() -> None:
    assert Settings.from_env({"PRESENCE_WEBHOOK_MAX_LAG": "500"}).webhook_max_lag == 500
    assert Settings().webhook_max_lag == 10_000
