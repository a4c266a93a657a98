"""Deliveries for an endpoint deleted a moment earlier (a lane parking what it held, the
dispatcher queueing what it read) leave no row behind, on both databases: the foreign key
from the deliveries to the endpoints refuses them and the store drops them as "endpoint
gone"; deleting an endpoint takes its rows with it; rows left behind before the migration
are dropped by it."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import redis
from aiohttp import web

from presence_svc.db.migrations import migrations, statements
from presence_svc.http.resources import DATABASE
from presence_svc.redis.keys import Keyspace
from presence_svc.webhooks.store import NewDelivery, WebhookStore
from presence_svc.webhooks.streams import GROUP
from tests.conftest import opened_database
from tests.webhooks.endpoints import plain_endpoint
from tests.webhooks.receiver import until

KEYS = Keyspace(16)


def _join(endpoint_id: str, event_id: str, artifact: str = "a", **more: Any) -> NewDelivery:
    body = json.dumps({"id": event_id, "type": "presence.join", "data": {"artifactId": artifact}})
    return NewDelivery(endpoint_id, event_id, "presence.join", artifact, body, 1000, **more)


async def _rows(store: WebhookStore) -> list[tuple[str, str]]:
    found = await store._fetch(  # every row, whatever its endpoint
        "SELECT endpoint_id, event_id FROM webhook_deliveries ORDER BY seq"
    )
    return [(str(r[0]), str(r[1])) for r in found]


async def test_deliveries_for_a_deleted_endpoint_are_dropped_not_orphaned(
    ledger_url: str,
) -> None:
    async with opened_database(ledger_url) as database:
        store = database.webhooks
        for endpoint_id in ("wh_gone", "wh_kept"):
            await store.add_endpoint(plain_endpoint(endpoint_id))
        await store.enqueue([_join("wh_gone", "e0"), _join("wh_kept", "e0")])
        assert await store.delete_endpoint("wh_gone")
        assert await _rows(store) == [("wh_kept", "e0")]  # its rows went with it

        # The dispatcher read the endpoints before the delete: its batch still names it.
        stale = [_join("wh_gone", "e1"), _join("wh_kept", "e1"), _join("wh_gone", "e2")]
        assert await store.enqueue(stale) == 2
        # A lane parks what it held (a failed attempt, the artifact's next behind it).
        failed = _join("wh_gone", "e3", attempts=1, next_at_ms=5000, last_error="HTTP 500")
        assert not await store.park("wh_gone", [failed, _join("wh_gone", "e4")], now_ms=2000)
        assert await store.park("wh_kept", [_join("wh_kept", "e5")], now_ms=2000)

        assert await _rows(store) == [("wh_kept", "e0"), ("wh_kept", "e1"), ("wh_kept", "e5")]
        backlog = await store.backlog()
        assert list(backlog) == ["wh_kept"]
        assert (backlog["wh_kept"].pending, backlog["wh_kept"].failures) == (3, 0)


async def test_deletes_racing_enqueues_and_parks_leave_no_row(ledger_url: str) -> None:
    """Really at once (PostgreSQL runs them on separate connections): whichever lands
    first, none fails (a park's delete of the rows it moves, then its insert, once
    deadlocked with the endpoint's delete), no row of a deleted endpoint remains and the
    other endpoint's are all there."""
    async with opened_database(ledger_url) as database:
        store = database.webhooks
        await store.add_endpoint(plain_endpoint("wh_kept"))
        for n in range(50):
            gone = f"wh_{n}"
            await store.add_endpoint(plain_endpoint(gone))
            await store.enqueue([_join(gone, f"q{n}")])
            batch = [_join(gone, f"e{n}"), _join("wh_kept", f"e{n}")]
            parked = [_join(gone, f"p{n}", attempts=1, next_at_ms=0, last_error="timeout")]
            await asyncio.gather(
                store.enqueue(batch),
                store.park(gone, parked, now_ms=1, behind=["a"]),
                store.delete_endpoint(gone),
            )
        rows = await _rows(store)
        assert rows == [("wh_kept", f"e{n}") for n in range(50)]
        backlog = await store.backlog()
        assert list(backlog) == ["wh_kept"]
        assert backlog["wh_kept"].pending == 50


async def _before_this_migration(url: str) -> None:
    """The schema as the release before this one left it (its migrations only), with a
    row left behind for a deleted endpoint, and the highest seq given then delivered."""
    backend = "sqlite" if url.startswith("sqlite") else "postgres"
    (ours,) = [m for m in migrations(backend) if m.name == "webhook_delivery_cascade"]
    earlier = [m for m in migrations(backend) if m.version < ours.version]
    endpoint = (
        "INSERT INTO webhook_endpoints (endpoint_id, url, events, secret, enabled, "
        "created_at, updated_at) VALUES ('wh_1', 'https://h.example.com/', '[]', 's', 1, 1, 1)"
    )
    rows = [
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, artifact_id, "
        "body, created_at, attempts, next_at, failed) "
        f"VALUES ('{e}', '{v}', 't', 'a', '{{}}', 1, 0, 1, 0)"
        for e, v in (("wh_1", "e1"), ("wh_orphan", "e2"), ("wh_1", "e3"))
    ]
    last = "DELETE FROM webhook_deliveries WHERE event_id = 'e3'"  # the highest seq, delivered
    if backend == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            for migration in earlier:
                for statement in statements(migration.sql):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {earlier[-1].version}")
            for statement in (endpoint, *rows, last):
                conn.execute(statement)
        finally:
            conn.close()
    else:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT "
                "NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for migration in earlier:
                for statement in statements(migration.sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            for statement in (endpoint, *rows, last):
                await conn.execute(statement)
        finally:
            await conn.close()


async def test_the_migration_drops_the_rows_left_behind_and_keeps_the_others(
    ledger_url: str,
) -> None:
    await _before_this_migration(ledger_url)
    async with opened_database(ledger_url) as database:
        store = database.webhooks
        assert await _rows(store) == [("wh_1", "e1")]
        assert list(await store.backlog()) == ["wh_1"]
        # seqs carry on past the highest one ever given (e3's, deleted): none is reused
        await store.enqueue([_join("wh_1", "e4")])
        (first, fourth) = await store.pending("wh_1", 0, 10)
        assert fourth.seq > 3 > first.seq
        # and the constraint holds from now on
        assert await store.enqueue([_join("wh_orphan", "e5")]) == 1
        assert await store.delete_endpoint("wh_1")
        assert await _rows(store) == []


@asynccontextmanager
async def _failing_receiver() -> AsyncIterator[tuple[str, list[str], asyncio.Event]]:
    """Holds each delivery until ``release`` is set, then answers 500."""
    attempts: list[str] = []
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        attempts.append(request.headers.get("webhook-id", ""))
        await release.wait()
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/hook", attempts, release
    finally:
        release.set()
        await runner.cleanup()


def _unacknowledged(sync_redis: redis.Redis) -> int:
    return sum(
        int(sync_redis.xpending(KEYS.outbox(t), GROUP)["pending"])
        for t in KEYS.tags
        if sync_redis.exists(KEYS.outbox(t))
    )


async def test_a_lane_parking_the_failure_of_an_endpoint_just_deleted_leaves_nothing(
    make_hooks: Any, ledger_url: str, caplog: pytest.LogCaptureFixture, sync_redis: redis.Redis
) -> None:
    """Over real HTTP with the in-process worker: the endpoint is deleted while its
    delivery is in flight, the delivery then fails, and the lane writes its retry (with
    the artifact's next event behind it) for an endpoint that is gone."""
    hooks = await make_hooks(ledger_url=ledger_url)
    store = hooks.client.app[DATABASE].webhooks
    async with _failing_receiver() as (url, attempts, release):
        made = await hooks.create(url, ["presence.join"])
        with caplog.at_level(logging.INFO, logger="presence_svc.webhooks"):
            await hooks.beat("doc-del", "u1")
            await until(lambda: len(attempts) == 1, what="the first attempt")
            await hooks.beat("doc-del", "u2")  # held behind it, in memory
            await hooks.call("DELETE", f"/v1/webhooks/{made['webhookId']}")
            release.set()
            # The lane parks the failure for the gone endpoint, or (when the dispatcher's
            # refresh saw the delete first) is retired with it: either way the entries
            # are acknowledged once nothing is held for the endpoint.
            await until(lambda: _unacknowledged(sync_redis) == 0, what="the entries settled")
        assert await _rows(store) == []
        assert await store.backlog() == {}
        crashed = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert crashed == []


@pytest.mark.parametrize("write", ["delivered", "attempt_failed"])
async def test_a_lane_write_waits_behind_an_endpoint_delete_without_a_deadlock(
    pg_url: str, write: str
) -> None:
    """An endpoint's delete locks its row, then (the cascade) its deliveries'. A lane's
    write that took a delivery row first and then waited for the endpoint's would deadlock
    with it on PostgreSQL (one side cancelled: a 500 or a lost write). The lane's writes
    take the endpoint's row first, so they wait and the delete goes through."""
    async with opened_database(pg_url) as database:
        store = database.webhooks
        await store.add_endpoint(plain_endpoint("wh_x"))
        await store.enqueue([_join("wh_x", "e0")])
        (delivery,) = await store.pending("wh_x", 0, 10)
        deleting = await asyncpg.connect(pg_url)
        try:
            async with deleting.transaction():
                # as ``DELETE FROM webhook_endpoints``: the endpoint's row first ...
                await deleting.execute(
                    "SELECT 1 FROM webhook_endpoints WHERE endpoint_id = $1 FOR UPDATE", "wh_x"
                )
                if write == "delivered":
                    lane = asyncio.create_task(store.delivered("wh_x", [delivery.seq], 5_000))
                else:
                    lane = asyncio.create_task(
                        store.attempt_failed(delivery, next_at_ms=9_000, error="500", now_ms=5_000)
                    )
                await asyncio.sleep(0.5)  # the lane's write is under way, waiting on a lock
                # ... then, as the cascade, its deliveries' rows
                await deleting.execute(
                    "DELETE FROM webhook_deliveries WHERE seq = $1", delivery.seq
                )
                await deleting.execute(
                    "DELETE FROM webhook_endpoints WHERE endpoint_id = $1", "wh_x"
                )
            await asyncio.wait_for(lane, 30)  # no DeadlockDetectedError
        finally:
            await deleting.close()
        assert await _rows(store) == []
