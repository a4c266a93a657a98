"""An erasure asked for while the database is down is accepted, and completes once the
database is back: nothing of the user is left in it then."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import AppClient, MakeClient
from tests.postgres import PostgresServer
from tests.privacy.scan import postgres_findings

Auth = Callable[..., dict[str, str]]


async def _get(client: AppClient, path: str, headers: dict[str, str]) -> Any:
    response = await client.get(path, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def _until(check: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + 30
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


@pytest.mark.timeout(90)
async def test_an_erasure_during_a_database_outage_completes_when_it_is_back(
    make_client: MakeClient, auth: Auth, own_postgres: PostgresServer
) -> None:
    client = await make_client(
        ledger_url=own_postgres.url(), run_worker=True, ledger_reclaim_idle_s=1.0
    )
    admin, board = auth("ops", scope="admin"), auth("board", scope="dashboard")
    assert (
        await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    ).status == 200
    view = {"artifactId": "doc-1", "versionId": "v1", "sessionId": "tab-alice-0001"}
    assert (await client.post("/v1/views", json=view, headers=auth("alice"))).status == 200

    async def in_ledger() -> bool:
        return bool((await _get(client, "/v1/ledger?userId=alice", board))["items"])

    await _until(in_ledger, "the view reached the ledger")

    own_postgres.stop("immediate")
    own_postgres.wait_gone()
    response = await client.delete("/v1/users/alice", headers=admin)
    assert response.status == 202, await response.text()  # accepted, not lost
    location = response.headers["Location"]
    assert (await _get(client, location, admin))["status"] == "pending"

    own_postgres.start()

    async def complete() -> bool:
        return bool((await _get(client, location, admin))["status"] == "complete")

    await _until(complete, "the erasure completed once the database was back")
    assert await postgres_findings(own_postgres.url(), ["alice", "tab-alice-0001"]) == []
    stats = await _get(client, "/v1/artifacts/doc-1/stats", board)
    assert (stats["views"], stats["uniqueViewers"]) == (1, 1)
