"""GET /v1/ledger and hidden view history, on SQLite and PostgreSQL: the rows of a user
whose view history is hidden are kept (the ledger counts every view) and listed to admins
and to that user, never to another dashboard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from presence_svc.http.resources import DATABASE
from presence_svc.ledger.engagement import EngagementTotal
from tests.conftest import AppClient, MakeClient

Auth = Callable[..., dict[str, str]]


async def rows(client: AppClient, headers: dict[str, str], query: str = "") -> list[dict[str, Any]]:
    response = await client.get(f"/v1/ledger?limit=1000{query}", headers=headers)
    assert response.status == 200, await response.text()
    items: list[dict[str, Any]] = (await response.json())["items"]
    return items


async def test_hidden_rows_are_listed_to_admins_and_their_user_only(
    make_client: MakeClient, auth: Auth, ledger_url: str
) -> None:
    client = await make_client(run_worker=True, ledger_url=ledger_url)
    response = await client.put(
        "/v1/users/alice/privacy", json={"viewHistory": "hidden"}, headers=auth("alice")
    )
    assert response.status == 200
    for user in ("alice", "bob"):
        for version in ("v1", "v2"):
            response = await client.post(
                "/v1/views", json={"artifactId": "doc-1", "versionId": version}, headers=auth(user)
            )
            assert (await response.json())["counted"] is True
    admin = auth("root", scope="admin")
    started = time.monotonic()
    while len(await rows(client, admin)) < 4:  # the worker drains within about a second
        assert time.monotonic() - started < 20, "the views never reached the ledger"
        await asyncio.sleep(0.05)

    def users(found: list[dict[str, Any]]) -> list[str]:
        return sorted(row["userId"] for row in found)

    assert users(await rows(client, admin)) == ["alice", "alice", "bob", "bob"]
    board = auth("board", scope="dashboard")
    assert users(await rows(client, board)) == ["bob", "bob"]
    assert await rows(client, board, "&userId=alice") == []
    assert users(await rows(client, board, "&order=desc&artifactId=doc-1")) == ["bob", "bob"]
    own = auth("alice", scope="dashboard")  # alice's own dashboard token
    assert users(await rows(client, own)) == ["alice", "alice", "bob", "bob"]
    # paging as a dashboard never lands on a hidden row
    page = await (await client.get("/v1/ledger?limit=1", headers=board)).json()
    seen = [row["userId"] for row in page["items"]]
    while page["nextCursor"]:
        url = f"/v1/ledger?limit=1&cursor={page['nextCursor']}"
        page = await (await client.get(url, headers=board)).json()
        seen += [row["userId"] for row in page["items"]]
    assert seen == ["bob", "bob"]
    # visible again: listed again (the filter reads the directory, no restamp needed)
    response = await client.put(
        "/v1/users/alice/privacy", json={"viewHistory": "visible"}, headers=auth("alice")
    )
    assert response.status == 200
    assert users(await rows(client, board)) == ["alice", "alice", "bob", "bob"]


async def test_engaged_time_of_a_hidden_viewer_is_listed_to_admins_and_their_user_only(
    make_client: MakeClient, auth: Auth, ledger_url: str
) -> None:
    """Engaged time per user and version says who viewed it: the same rule as the views."""
    client = await make_client(ledger_url=ledger_url)
    response = await client.put(
        "/v1/users/alice/privacy", json={"viewHistory": "hidden"}, headers=auth("alice")
    )
    assert response.status == 200
    totals = [
        EngagementTotal("doc-1", "v1", user, "2026-11-01", ms)
        for user, ms in (("alice", 10), ("bob", 20))
    ]
    await client.server.app[DATABASE].engagement.upsert_totals(totals, 1)

    async def users(headers: dict[str, str]) -> list[str]:
        response = await client.get("/v1/ledger/engagement", headers=headers)
        assert response.status == 200, await response.text()
        return sorted(row["userId"] for row in (await response.json())["items"])

    assert await users(auth("root", scope="admin")) == ["alice", "bob"]
    assert await users(auth("board", scope="dashboard")) == ["bob"]
    assert await users(auth("alice", scope="dashboard")) == ["alice", "bob"]
