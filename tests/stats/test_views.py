"""Views and statistics through HTTP against the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis

from presence_svc import metrics
from presence_svc.ratelimits import RateLimits
from presence_svc.redis.keys import Keyspace
from tests.conftest import AppClient, MakeClient

pytestmark = pytest.mark.every_redis  # see tests/conftest.py

NO_LIMITS = RateLimits(buckets=())

Auth = Callable[..., dict[str, str]]


async def view(
    client: AppClient, auth: Auth, user: str, artifact: str = "doc-1", version: str = "v1"
) -> dict[str, object]:
    response = await client.post(
        "/v1/views",
        json={"artifactId": artifact, "versionId": version, "sessionId": "tab-aaaa1"},
        headers=auth(user),
    )
    assert response.status == 200, await response.text()
    body: dict[str, object] = await response.json()
    return body


def stream_length(sync_redis: redis.Redis, artifact: str = "doc-1") -> int:
    keys = Keyspace(16)
    return int(sync_redis.xlen(keys.views_stream(keys.tag_of(artifact))))


async def test_reload_within_window_is_not_counted_twice_but_after_it_is(
    client: AppClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    counted, debounced = metrics.VIEWS.labels("counted"), metrics.VIEWS.labels("debounced")
    before = counted._value.get(), debounced._value.get()
    assert await view(client, auth, "alice") == {"counted": True, "views": 1, "uniqueViewers": 1}
    assert await view(client, auth, "alice") == {"counted": False, "views": 1, "uniqueViewers": 1}
    # presence_views_total, as the dashboard shows it
    assert (counted._value.get(), debounced._value.get()) == (before[0] + 1, before[1] + 1)
    await asyncio.sleep(1.05)  # the test debounce window is 1 s
    assert await view(client, auth, "alice") == {"counted": True, "views": 2, "uniqueViewers": 1}
    assert stream_length(sync_redis) == 2


async def test_versions_and_users_are_counted_separately(client: AppClient, auth: Auth) -> None:
    await view(client, auth, "alice", version="v1")
    await view(client, auth, "alice", version="v2")
    await view(client, auth, "bob", version="v2")
    assert await view(client, auth, "carol", version="v2") == {
        "counted": True,
        "views": 3,
        "uniqueViewers": 3,
    }
    stats = await (
        await client.get("/v1/artifacts/doc-1/stats", headers=auth("d", scope="dashboard"))
    ).json()
    assert (stats["artifactId"], stats["views"], stats["uniqueViewers"]) == ("doc-1", 4, 3)
    assert stats["lastViewedAt"].endswith("Z")
    by_version = {v["versionId"]: v for v in stats["versions"]}
    assert (by_version["v1"]["views"], by_version["v1"]["uniqueViewers"]) == (1, 1)
    assert (by_version["v2"]["views"], by_version["v2"]["uniqueViewers"]) == (3, 3)
    assert [v["versionId"] for v in stats["versions"]] == ["v2", "v1"]  # most recent first


async def test_two_hundred_concurrent_identical_views_count_once(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    # 200 at once: over the view limit; a debounce window far longer than the 200 take on a
    # loaded machine (with the test's 1 s, they can span two windows: two counted, rightly)
    client = await make_client(rate_limits=NO_LIMITS, view_debounce_s=60.0)
    results = await asyncio.gather(*(view(client, auth, "spammer") for _ in range(200)))
    assert sum(1 for r in results if r["counted"]) == 1
    assert all(r["views"] == 1 for r in results)
    assert stream_length(sync_redis) == 1
    stats = await (
        await client.get("/v1/artifacts/doc-1/stats", headers=auth("d", scope="dashboard"))
    ).json()
    assert stats["views"] == 1


async def test_viewers_page_most_recent_first_with_names(client: AppClient, auth: Auth) -> None:
    admin = auth("root", scope="admin")
    await client.put("/v1/users/user-3", json={"name": "Three"}, headers=admin)
    for i in range(5):
        await view(client, auth, f"user-{i}")
        await asyncio.sleep(0.003)
    dashboard = auth("d", scope="dashboard")
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        url = "/v1/artifacts/doc-1/versions/v1/viewers?limit=2" + (
            f"&cursor={cursor}" if cursor else ""
        )
        page = await (await client.get(url, headers=dashboard)).json()
        seen += page["viewers"]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert [v["userId"] for v in seen] == ["user-4", "user-3", "user-2", "user-1", "user-0"]
    three = seen[1]
    assert (three["name"], three["views"]) == ("Three", 1)
    assert three["firstViewedAt"] == three["lastViewedAt"]
    assert seen[0]["name"] is None


async def test_recent_list_most_recent_first_for_the_user_only(
    client: AppClient, auth: Auth
) -> None:
    await view(client, auth, "alice", artifact="doc-1", version="v1")
    await asyncio.sleep(0.003)
    await view(client, auth, "alice", artifact="doc-2", version="v7")
    await asyncio.sleep(0.003)
    await view(client, auth, "alice", artifact="doc-1", version="v2")
    response = await client.get("/v1/users/alice/recent", headers=auth("alice"))
    items = (await response.json())["items"]
    assert [(i["artifactId"], i["versionId"]) for i in items] == [("doc-1", "v2"), ("doc-2", "v7")]
    assert (await client.get("/v1/users/alice/recent", headers=auth("bob"))).status == 403
    dashboard = auth("d", scope="dashboard")
    assert (await client.get("/v1/users/alice/recent?limit=1", headers=dashboard)).status == 200


async def test_recent_list_keeps_only_the_latest_two_hundred(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(rate_limits=NO_LIMITS)  # 205 views: over the view limit
    # 25 at a time: 205 at once queued behind each other on the service's connection past
    # its 0.9 s Redis timeout on a loaded machine (a 503, rightly); the list is the point.
    for first in range(0, 205, 25):
        await asyncio.gather(
            *(
                view(client, auth, "alice", artifact=f"doc-{i}")
                for i in range(first, min(205, first + 25))
            )
        )
    response = await client.get("/v1/users/alice/recent?limit=200", headers=auth("alice"))
    assert len((await response.json())["items"]) == 200


async def test_stats_and_viewers_need_a_dashboard_token(client: AppClient, auth: Auth) -> None:
    for path in (
        "/v1/artifacts/doc-1/stats",
        "/v1/artifacts/doc-1/versions/v1/viewers",
        "/v1/ledger",
    ):
        assert (await client.get(path, headers=auth("alice"))).status == 403
    body = {"artifactId": "doc-1", "versionId": "v1"}
    response = await client.post("/v1/views", json=body, headers=auth("d", scope="dashboard"))
    assert response.status == 403
    response = await client.post("/v1/views", json=body, headers=auth("a", artifacts=["doc-2"]))
    assert response.status == 403


async def test_unviewed_artifact_has_empty_stats(client: AppClient, auth: Auth) -> None:
    stats = await (
        await client.get("/v1/artifacts/nothing/stats", headers=auth("d", scope="dashboard"))
    ).json()
    assert stats == {
        "artifactId": "nothing",
        "views": 0,
        "uniqueViewers": 0,
        "lastViewedAt": None,
        "engagedMs": 0,
        "versions": [],
    }
