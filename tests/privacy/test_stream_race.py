"""Views between the views stream and the ledger when the erasure runs: none is lost, and
none reaches the ledger under the erased user's id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from presence_svc.http.resources import DATABASE, ERASURES, REDIS, SETTINGS
from presence_svc.ledger.drain import LedgerDrain
from presence_svc.ledger.store import LedgerQuery
from tests.conftest import AppClient, MakeClient

Auth = Callable[..., dict[str, str]]


def _drain(client: AppClient, name: str) -> LedgerDrain:
    app = client.server.app
    return LedgerDrain(app[REDIS], app[DATABASE].ledger, app[SETTINGS], consumer=name)


async def _views(client: AppClient, auth: Auth) -> None:
    for user in ("alice", "bob"):
        view = {"artifactId": "doc-1", "versionId": "v1", "sessionId": f"tab-{user}-0001"}
        assert (await client.post("/v1/views", json=view, headers=auth(user))).status == 200


async def _ledger_users(client: AppClient) -> list[str]:
    rows = await client.server.app[DATABASE].ledger.query_views(LedgerQuery(), 10)
    return sorted("~" if r.user_id.startswith("~erased-") else r.user_id for r in rows)


async def test_a_batch_in_flight_during_the_erasure_is_tombstoned_once_written(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(ledger_reclaim_idle_s=1.0)
    first = _drain(client, "first")
    await first.join()
    await _views(client, auth)
    batch = await first.read()  # read, not yet written: in flight
    response = await client.delete("/v1/users/alice", headers=auth("root", scope="admin"))
    assert response.status == 202  # it waits for the batch in flight to land
    await first.write(batch)  # lands after the rewrite, under alice's id
    await _drain(client, "second").drain_once()  # the rewritten copies: duplicates
    assert await _ledger_users(client) == ["alice", "bob"]

    jobs = client.server.app[ERASURES]
    location = response.headers["Location"]
    deadline = time.monotonic() + 20
    while (await (await client.get(location, headers=auth("r", scope="admin"))).json())[
        "status"
    ] != "complete":
        assert time.monotonic() < deadline
        await jobs.run_due()  # as a worker does
        await asyncio.sleep(0.2)
    assert await _ledger_users(client) == ["bob", "~"]


async def test_a_batch_lost_with_its_worker_during_the_erasure_still_reaches_the_ledger(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(ledger_reclaim_idle_s=0.2)
    first = _drain(client, "first")
    await first.join()
    await _views(client, auth)
    await first.read()  # the worker dies holding it: never written, never acknowledged
    response = await client.delete("/v1/users/alice", headers=auth("root", scope="admin"))
    assert response.status in (202, 204)
    second = _drain(client, "second")
    deadline = time.monotonic() + 20
    while len(await _ledger_users(client)) < 2:
        assert time.monotonic() < deadline
        await second.drain_once()
        await asyncio.sleep(0.05)
    assert await _ledger_users(client) == ["bob", "~"]
