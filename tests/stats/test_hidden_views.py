"""Hidden view history against the read endpoints: the views count everywhere, the viewer
is listed to nobody but themselves, and switching fixes the records counted before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import redis

from presence_svc.redis.keys import Keyspace
from tests.conftest import AppClient
from tests.stats.test_views import view

Auth = Callable[..., dict[str, str]]


async def hide(client: AppClient, auth: Auth, user: str, value: str = "hidden") -> None:
    response = await client.put(
        f"/v1/users/{user}/privacy", json={"viewHistory": value}, headers=auth(user)
    )
    assert response.status == 200, await response.text()


async def viewers(
    client: AppClient, headers: dict[str, str], version: str = "v1", query: str = ""
) -> dict[str, Any]:
    response = await client.get(
        f"/v1/artifacts/doc-1/versions/{version}/viewers{query}", headers=headers
    )
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def listed(page: dict[str, Any]) -> list[str]:
    return [row["userId"] for row in page["viewers"]]


async def stats(client: AppClient, auth: Auth) -> dict[str, Any]:
    response = await client.get("/v1/artifacts/doc-1/stats", headers=auth("b", scope="dashboard"))
    body: dict[str, Any] = await response.json()
    return body


async def test_a_hidden_viewer_counts_but_is_listed_to_nobody_else(
    client: AppClient, auth: Auth
) -> None:
    await hide(client, auth, "alice")
    assert await view(client, auth, "alice") == {"counted": True, "views": 1, "uniqueViewers": 1}
    assert await view(client, auth, "bob") == {"counted": True, "views": 2, "uniqueViewers": 2}
    found = await stats(client, auth)
    assert (found["views"], found["uniqueViewers"]) == (2, 2)
    assert (found["versions"][0]["views"], found["versions"][0]["uniqueViewers"]) == (2, 2)
    for other in (auth("board", scope="dashboard"), auth("root", scope="admin")):
        page = await viewers(client, other)
        assert listed(page) == ["bob"]
        assert page["hiddenViewers"] == 1
    # alice (with a dashboard token of her own) sees her own row, in its place
    own = await viewers(client, auth("alice", scope="dashboard"))
    assert listed(own) == ["bob", "alice"]
    assert own["hiddenViewers"] == 0
    assert own["viewers"][1]["views"] == 1


async def test_the_entry_follows_the_shared_layout(
    client: AppClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    """vu entry [views, first, last, engagedMs, hidden] and no place in vz: the contract the
    seen and engagement work read."""
    await hide(client, auth, "alice")
    await view(client, auth, "alice")
    keys = Keyspace(16)
    raw = sync_redis.hget(keys.version_viewers("doc-1", "v1"), "alice")
    assert isinstance(raw, bytes)
    views, first, last, engaged, hidden = msgspec.msgpack.decode(raw)
    assert (views, engaged, hidden) == (1, 0, 1)
    assert first == last
    assert sync_redis.zscore(keys.version_viewers_by_time("doc-1", "v1"), "alice") is None


async def test_switching_hides_and_shows_the_views_counted_before(
    client: AppClient, auth: Auth
) -> None:
    board = auth("board", scope="dashboard")
    for version in ("v1", "v2"):
        await view(client, auth, "alice", version=version)
        await view(client, auth, "bob", version=version)
    before = {v: await viewers(client, board, v) for v in ("v1", "v2")}
    counts = await stats(client, auth)
    await hide(client, auth, "alice")
    for version in ("v1", "v2"):
        page = await viewers(client, board, version)
        assert listed(page) == ["bob"]
        assert page["hiddenViewers"] == 1
    assert await stats(client, auth) == counts
    await hide(client, auth, "alice", "visible")
    for version in ("v1", "v2"):
        page = await viewers(client, board, version)
        assert page["viewers"] == before[version]["viewers"]  # same place, same times
        assert page["hiddenViewers"] == 0
    # and a view counted while visible again is listed as any other
    assert await stats(client, auth) == counts


async def test_the_own_row_appears_once_while_paging(client: AppClient, auth: Auth) -> None:
    await hide(client, auth, "carol")
    for user in ("alice", "bob", "carol", "dave", "erin"):
        await view(client, auth, user)
    everyone = ["erin", "dave", "carol", "bob", "alice"]  # last view first
    for caller, expected in (
        ("carol", everyone),
        ("board", [u for u in everyone if u != "carol"]),
    ):
        headers = auth(caller, scope="dashboard")
        seen: list[str] = []
        query = "?limit=1"
        while True:
            page = await viewers(client, headers, query=query)
            seen += listed(page)
            if page["nextCursor"] is None:
                break
            query = f"?limit=1&cursor={page['nextCursor']}"
        assert seen == expected
        assert page["hiddenViewers"] == (0 if caller == "carol" else 1)


async def test_recent_list_still_shows_the_user_their_own_views(
    client: AppClient, auth: Auth
) -> None:
    await hide(client, auth, "alice")
    await view(client, auth, "alice")
    response = await client.get("/v1/users/alice/recent", headers=auth("alice"))
    items = (await response.json())["items"]
    assert [(i["artifactId"], i["versionId"]) for i in items] == [("doc-1", "v1")]


async def test_erasing_viewers_leaves_the_hidden_count_to_the_hidden_ones(
    client: AppClient, auth: Auth
) -> None:
    """An erased viewer's tombstone stays in the version's viewers (counts do not move)
    but is neither listed nor a hidden viewer."""
    await hide(client, auth, "alice")
    await hide(client, auth, "carol")
    for user in ("alice", "bob", "carol", "dave"):
        await view(client, auth, user)
    board, admin = auth("board", scope="dashboard"), auth("root", scope="admin")
    before = await viewers(client, board)
    assert (sorted(listed(before)), before["hiddenViewers"]) == (["bob", "dave"], 2)

    for user in ("alice", "bob"):  # one hidden, one listed
        response = await client.delete(f"/v1/users/{user}", headers=admin)
        assert response.status == 204, await response.text()
    after = await viewers(client, board)
    assert (listed(after), after["hiddenViewers"]) == (["dave"], 1)
    seen = await client.get("/v1/artifacts/doc-1/seen?versionId=v1", headers=board)
    body = await seen.json()
    assert (body["seen"], body["hiddenViewers"], [v["userId"] for v in body["viewers"]]) == (
        4,
        1,
        ["dave"],
    )
    found = await stats(client, auth)
    assert (found["views"], found["uniqueViewers"]) == (4, 4)


async def test_a_hidden_viewer_sees_their_own_row_in_the_seen_list(
    client: AppClient, auth: Auth
) -> None:
    await hide(client, auth, "alice")
    await view(client, auth, "alice")
    await view(client, auth, "bob")

    async def seen(headers: dict[str, str]) -> tuple[list[str], int, int]:
        response = await client.get("/v1/artifacts/doc-1/seen?versionId=v1", headers=headers)
        assert response.status == 200, await response.text()
        body = await response.json()
        return sorted(v["userId"] for v in body["viewers"]), body["hiddenViewers"], body["seen"]

    assert await seen(auth("board", scope="dashboard")) == (["bob"], 1, 2)
    assert await seen(auth("alice", scope="dashboard")) == (["alice", "bob"], 0, 2)
