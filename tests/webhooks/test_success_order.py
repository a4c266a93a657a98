"""A lane writes its successes in batches, so a success can land after a failure that
came later: it must not clear the failure clock (``failingSince`` empty while the
endpoint fails), on both databases and through a real lane."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from presence_svc.webhooks.store import NewDelivery
from tests.conftest import opened_database
from tests.webhooks.endpoints import plain_endpoint
from tests.webhooks.receiver import receiving, until


def _failed(event_id: str, at_ms: int) -> NewDelivery:
    return NewDelivery(
        "wh_1",
        event_id,
        "presence.join",
        "a",
        "{}",
        at_ms,
        attempts=1,
        next_at_ms=at_ms + 60_000,
        last_error="HTTP 500",
    )


async def _clock(store: Any) -> tuple[int | None, int | None]:
    found = await store.endpoint("wh_1")
    assert found is not None
    return found.failing_since_ms, found.last_success_ms


async def test_a_success_written_after_a_later_failure_does_not_clear_it(
    ledger_url: str,
) -> None:
    async with opened_database(ledger_url) as database:
        store = database.webhooks
        await store.add_endpoint(plain_endpoint())
        await store.succeeded("wh_1", 1000)
        assert await _clock(store) == (None, 1000)
        await store.park("wh_1", [_failed("e1", 2000)], now_ms=2000)  # fails at 2000
        await store.succeeded("wh_1", 1500)  # the 2xx of 1500, written only now
        assert await _clock(store) == (2000, 1500)
        (row,) = await store.pending("wh_1", 0, 10)
        await store.delivered("wh_1", [], 1800)  # likewise for rows delivered at 1800
        assert await _clock(store) == (2000, 1800)
        await store.attempt_failed(row, next_at_ms=9000, error="HTTP 500", now_ms=2500)
        await store.succeeded("wh_1", 2500)  # the same moment: still failing
        assert await _clock(store) == (2000, 2500)

        await store.succeeded("wh_1", 3000)  # a success after every failure clears it
        assert await _clock(store) == (None, 3000)
        await store.succeeded("wh_1", 2800)  # and the last success never moves back
        assert await _clock(store) == (None, 3000)
        await store.delivered("wh_1", [row.seq], 3500)
        assert await _clock(store) == (None, 3500)


async def test_a_lanes_batched_success_does_not_hide_the_failure_after_it(
    make_hooks: Any,
) -> None:
    """Two deliveries succeed within a second (the second success is written up to a
    second later), then the endpoint fails every attempt of the next one: once the
    second success is written, the endpoint still shows failing, since its first
    failure."""
    hooks = await make_hooks(webhook_retry_schedule=(0.05,))
    async with receiving() as receiver:
        receiver.behave = lambda event_id, body, n: (
            web.Response(status=500) if body["data"]["artifactId"] == "doc-3" else None
        )
        made = await hooks.create(receiver.url, ["presence.join"])
        receiver.secrets.append(made["secret"])
        path = f"/v1/webhooks/{made['webhookId']}"
        await hooks.beat("doc-1", "u1")
        await until(lambda: len(receiver.got) == 1, what="the first delivery")
        first = (await hooks.call("GET", path))["health"]["lastSuccessAt"]
        assert first is not None
        await hooks.beat("doc-2", "u1")
        await until(lambda: len(receiver.got) == 2, what="the second delivery")
        await hooks.beat("doc-3", "u1")
        seen: dict[str, Any] = {}

        async def settled() -> bool:
            seen.update(await hooks.call("GET", path))
            failed = (await hooks.call("GET", f"{path}/failures"))["items"]
            return bool(failed) and seen["health"]["lastSuccessAt"] != first

        deadline = time.monotonic() + 20
        while not await settled():
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0.05)
        assert seen["health"]["status"] == "failing", seen
        assert seen["health"]["failingSince"] is not None
        assert seen["health"]["lastFailureAt"] >= seen["health"]["failingSince"]
