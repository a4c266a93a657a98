"""The webhook store on both databases: the queue in order, failures and their
replay, and scrubbing an erased user's id from what is stored."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import asyncpg

from presence_svc.webhooks.store import EndpointChange, NewDelivery
from tests.conftest import opened_database
from tests.webhooks.endpoints import plain_endpoint


def _join(event_id: str, artifact: str, user: str) -> NewDelivery:
    body = {
        "id": event_id,
        "type": "presence.join",
        "data": {"artifactId": artifact, "userId": user},
    }
    return NewDelivery("wh_1", event_id, "presence.join", artifact, json.dumps(body), 1000)


def _failed_first() -> NewDelivery:
    """Artifact a's first event, held in memory until its attempt timed out."""
    return NewDelivery(
        "wh_1",
        "e1",
        "presence.join",
        "a",
        json.dumps({"id": "e1"}),
        900,
        attempts=1,
        next_at_ms=5000,
        last_error="timeout",
    )


async def test_queue_order_failures_replay_and_erasure(ledger_url: str) -> None:
    async with opened_database(ledger_url) as database:
        store = database.webhooks
        await store.add_endpoint(plain_endpoint("wh_1"))
        batch = [_join("e1", "a", "alice"), _join("e2", "a", "bob"), _join("e3", "b", "alice")]
        await store.enqueue(batch)
        await store.enqueue(batch[:1])  # redelivered entry: kept once
        pending = await store.pending("wh_1", 0, 10)
        assert [d.event_id for d in pending] == ["e1", "e2", "e3"]  # in the order queued
        assert [d.event_id for d in await store.pending("wh_1", pending[0].seq, 10)] == [
            "e2",
            "e3",
        ]

        first = pending[0]
        await store.attempt_failed(first, next_at_ms=5000, error="HTTP 500", now_ms=2000)
        (retry, *_) = await store.pending("wh_1", 0, 10)
        assert (retry.event_id, retry.attempts, retry.next_at_ms) == ("e1", 1, 5000)
        await store.attempt_failed(retry, next_at_ms=None, error="HTTP 500", now_ms=6000)
        (failure,) = await store.failures("wh_1", 0, 10)
        assert failure.attempts == 2
        assert failure.last_error == "HTTP 500"
        assert (await store.endpoint("wh_1")).failing_since_ms == 2000  # type: ignore[union-attr]
        assert [d.event_id for d in await store.pending("wh_1", 0, 10)] == ["e2", "e3"]
        backlog = (await store.backlog())["wh_1"]
        assert (backlog.pending, backlog.failures) == (2, 1)

        assert await store.erase_user("alice", "erased-1") == 2
        bodies = [json.loads(d.body) for d in await store.pending("wh_1", 0, 10)]
        bodies += [json.loads(d.body) for d in await store.failures("wh_1", 0, 10)]
        assert sorted(b["data"]["userId"] for b in bodies) == ["bob", "erased-1", "erased-1"]

        assert await store.replay("wh_1", failure.seq, 8000) == 1
        assert await store.replay("wh_1", failure.seq, 8000) == 0
        everything = await store.pending("wh_1", 0, 10)
        assert [d.event_id for d in everything] == ["e1", "e2", "e3"]
        await store.delivered("wh_1", [d.seq for d in everything], 9000)
        assert await store.pending("wh_1", 0, 10) == []
        assert (await store.endpoint("wh_1")).failing_since_ms is None  # type: ignore[union-attr]
        assert await store.delete_endpoint("wh_1")
        assert await store.backlog() == {}


async def test_parked_deliveries_go_ahead_of_the_artifacts_newer_rows(ledger_url: str) -> None:
    """A delivery held in memory that failed is written with its attempt, and the
    artifact's rows already queued (newer events) move behind it; other artifacts stay."""
    async with opened_database(ledger_url) as database:
        store = database.webhooks
        await store.add_endpoint(plain_endpoint("wh_1"))
        await store.enqueue([_join("e2", "a", "bob"), _join("e9", "b", "carol")])
        await store.enqueue([_join("e3", "a", "dave")])
        failed = _failed_first()
        await store.park("wh_1", [failed], now_ms=2000, behind=["a"])
        pending = await store.pending("wh_1", 0, 10)
        assert [d.event_id for d in pending if d.artifact_id == "a"] == ["e1", "e2", "e3"]
        assert [d.event_id for d in pending if d.artifact_id == "b"] == ["e9"]
        first = next(d for d in pending if d.event_id == "e1")
        assert (first.attempts, first.next_at_ms, first.last_error) == (1, 5000, "timeout")
        assert (await store.endpoint("wh_1")).failing_since_ms == 2000  # type: ignore[union-attr]
        await store.succeeded("wh_1", 3000)
        endpoint = await store.endpoint("wh_1")
        assert endpoint is not None
        assert (endpoint.failing_since_ms, endpoint.last_success_ms) == (None, 3000)


class _Writer:
    """A second client of the database inserting the artifact's next event's row in a
    transaction it holds open (as the dispatcher's queueing does, on any host)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pg: asyncpg.Connection | None = None
        self._pg_tx: Any = None
        self._lite: sqlite3.Connection | None = None

    async def insert_and_hold(self, row: tuple[Any, ...]) -> None:
        columns = (
            "endpoint_id, event_id, event_type, artifact_id, body, created_at, attempts, "
            "next_at, last_error, failed"
        )
        if self.url.startswith("sqlite:"):
            self._lite = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self._lite.execute("BEGIN IMMEDIATE")
            self._lite.execute(
                f"INSERT INTO webhook_deliveries ({columns}) VALUES ({', '.join('?' * 10)})", row
            )
            return
        self._pg = await asyncpg.connect(self.url)
        self._pg_tx = self._pg.transaction()
        await self._pg_tx.start()
        marks = ", ".join(f"${n}" for n in range(1, 11))
        await self._pg.execute(f"INSERT INTO webhook_deliveries ({columns}) VALUES ({marks})", *row)

    async def commit(self) -> None:
        if self._lite is not None:
            self._lite.execute("COMMIT")
            self._lite.close()
        if self._pg is not None:
            await self._pg_tx.commit()
            await self._pg.close()


async def test_a_row_written_while_a_delivery_is_parked_still_goes_behind_it(
    ledger_url: str,
) -> None:
    """The artifact's newer event is being queued by another client while a failed older
    one is parked with its artifact's rows moved behind: the park waits for that write
    and moves its row too, instead of leaving it ahead (read before it was committed)."""
    async with opened_database(ledger_url) as database:
        store = database.webhooks
        await store.add_endpoint(plain_endpoint("wh_1"))
        await store.enqueue([_join("e2", "a", "bob")])
        writer = _Writer(ledger_url)
        await writer.insert_and_hold(
            ("wh_1", "e3", "presence.join", "a", json.dumps({"id": "e3"}), 1000, 0, 0, None, 0)
        )
        failed = _failed_first()
        parking = asyncio.create_task(store.park("wh_1", [failed], now_ms=2000, behind=["a"]))
        await asyncio.sleep(0.5)  # the park under way (or, before, done without e3)
        await writer.commit()
        assert await asyncio.wait_for(parking, 30)
        pending = await store.pending("wh_1", 0, 10)
        assert [d.event_id for d in pending] == ["e1", "e2", "e3"]


async def test_a_lane_disabling_an_endpoint_disabled_meanwhile_keeps_the_first_disable(
    ledger_url: str,
) -> None:
    """An admin disables the endpoint; its lane, still running with the endpoint as it was
    (enabled), finds it failing for too long and disables it too: the admin's disable
    stands, its reason and its time (events after that time are not kept for it)."""
    async with opened_database(ledger_url) as database:
        store = database.webhooks
        endpoint = plain_endpoint("wh_1")
        await store.add_endpoint(endpoint)
        assert await store.update_endpoint("wh_1", EndpointChange(now_ms=100, enabled=False))
        await store.disable(endpoint, "failing", 200)  # the lane's copy: still enabled
        found = await store.endpoint("wh_1")
        assert found is not None
        assert (found.enabled, found.disabled_reason, found.disabled_at_ms) == (
            False,
            "by request",
            100,
        )
        # an enabled endpoint is disabled by its lane as before
        await store.add_endpoint(plain_endpoint("wh_2"))
        await store.disable(plain_endpoint("wh_2"), "failing", 300)
        second = await store.endpoint("wh_2")
        assert second is not None
        assert (second.enabled, second.disabled_reason, second.disabled_at_ms) == (
            False,
            "failing",
            300,
        )
