"""An erasure while a delivery of the user's event is held in a worker's memory (in flight
to a hanging endpoint): the erasure waits out what is in flight, so the delivery that
fails afterwards is filed under the tombstone, never under the erased user's id."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from presence_svc.webhooks import lane
from tests.webhooks.receiver import receiving, until


async def test_a_delivery_held_in_memory_never_files_an_erased_users_id(
    make_hooks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lane, "SPILL_S", 0.3)
    # A drain's reclaim wait far shorter than a delivery's timeout: the erasure's wait for
    # what is in flight must still cover the held delivery (it finished in 3 s before).
    hooks = await make_hooks(
        webhook_timeout_s=3.0, webhook_retry_schedule=(0.1,), ledger_reclaim_idle_s=0.5
    )
    async with receiving() as receiver:
        receiver.behave = lambda event_id, body, n: "hang"
        made = await hooks.create(receiver.url, ["presence.join"])
        receiver.secrets.append(made["secret"])
        await hooks.beat("doc-e", "erin")
        await until(lambda: len(receiver.attempts) >= 1, what="the join in flight")

        response = await hooks.client.delete("/v1/users/erin", headers=hooks.admin)
        assert response.status in (202, 204), await response.text()
        if response.status == 202:
            location = response.headers["Location"]
            deadline = time.monotonic() + 60
            while (await hooks.call("GET", location))["status"] != "complete":
                assert time.monotonic() < deadline, "the erasure did not complete"
                await asyncio.sleep(0.2)

        failures: list[dict[str, Any]] = []

        async def filed() -> bool:
            failures[:] = (await hooks.call("GET", f"/v1/webhooks/{made['webhookId']}/failures"))[
                "items"
            ]
            return bool(failures)

        deadline = time.monotonic() + 30
        while not await filed():
            assert time.monotonic() < deadline, "the failed join was never filed"
            await asyncio.sleep(0.2)
        (failure,) = failures
        assert failure["type"] == "presence.join"
        assert failure["event"]["data"]["userId"] != "erin"
        assert "erin" not in str(failure)
