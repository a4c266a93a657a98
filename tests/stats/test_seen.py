"""The latest version and who has seen it, through HTTP against the real Redis.

Engaged time and hidden view histories are written by other work (the engagement and
privacy scripts); here such entries are written straight into Redis in the shape those
scripts share: ``[views, firstViewedAt, lastViewedAt, engagedMs, hidden]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import redis

from presence_svc.redis.keys import Keyspace
from tests.conftest import AppClient

Auth = Callable[..., dict[str, str]]
KEYS = Keyspace(16)
READ_AFTER_MS = 30_000  # PRESENCE_READ_AFTER_S's default


async def view(client: AppClient, auth: Auth, user: str, artifact: str, version: str) -> None:
    body = {"artifactId": artifact, "versionId": version}
    response = await client.post("/v1/views", json=body, headers=auth(user))
    assert response.status == 200, await response.text()


async def put_latest(
    client: AppClient, headers: dict[str, str], artifact: str, version: Any
) -> tuple[int, dict[str, Any]]:
    response = await client.put(
        f"/v1/artifacts/{artifact}/latest", json={"versionId": version}, headers=headers
    )
    body: dict[str, Any] = await response.json()
    return response.status, body


async def get(client: AppClient, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    response = await client.get(path, headers=headers)
    return response.status, await response.json()


async def check(
    client: AppClient, headers: dict[str, str], artifact: str, body: dict[str, Any]
) -> tuple[int, Any]:
    response = await client.post(f"/v1/artifacts/{artifact}/seen/check", json=body, headers=headers)
    return response.status, await response.json()


def write_viewer(
    sync_redis: redis.Redis,
    artifact: str,
    version: str,
    user: str,
    *,
    at_ms: int,
    engaged_ms: int = 0,
    hidden: bool = False,
) -> None:
    """A viewer entry as the engagement and privacy scripts leave it."""
    entry = msgspec.msgpack.encode([1, at_ms, at_ms, engaged_ms, hidden])
    sync_redis.hset(KEYS.version_viewers(artifact, version), user, entry)
    if not hidden:  # the privacy work keeps hidden viewers out of the by-time zset
        sync_redis.zadd(KEYS.version_viewers_by_time(artifact, version), {user: at_ms})


@pytest.mark.every_redis
async def test_latest_version_need_not_have_views_and_unseen_follows_version_changes(
    client: AppClient, auth: Auth
) -> None:
    board, admin = auth("d", scope="dashboard"), auth("root", scope="admin")
    await view(client, auth, "alice", "doc-1", "v1")
    await view(client, auth, "bob", "doc-1", "v1")
    assert (await get(client, "/v1/artifacts/doc-1/latest", board))[0] == 404
    status, body = await get(client, "/v1/artifacts/doc-1/seen", board)
    assert status == 404
    assert "latest" in body["detail"]

    status, latest = await put_latest(client, admin, "doc-1", "v1")
    assert status == 200
    assert latest["versionId"] == "v1"
    assert (await get(client, "/v1/artifacts/doc-1/latest", auth("alice")))[1] == latest
    status, seen = await get(client, "/v1/artifacts/doc-1/seen", board)
    assert status == 200
    assert (seen["versionId"], seen["seen"], seen["read"]) == ("v1", 2, 0)
    assert {v["userId"] for v in seen["viewers"]} == {"alice", "bob"}
    unseen = "/v1/users/alice/unseen?artifactId=doc-1&artifactId=doc-2"
    assert (await get(client, unseen, auth("alice")))[1] == {"artifacts": []}

    # v2 published before anyone opened it: nobody has seen it, both have it unseen
    assert (await put_latest(client, admin, "doc-1", "v2"))[0] == 200
    status, seen = await get(client, "/v1/artifacts/doc-1/seen", board)
    assert (seen["versionId"], seen["seen"], seen["viewers"]) == ("v2", 0, [])
    status, body = await get(client, unseen, auth("alice"))
    assert [(a["artifactId"], a["versionId"]) for a in body["artifacts"]] == [("doc-1", "v2")]

    await view(client, auth, "alice", "doc-1", "v2")
    assert (await get(client, unseen, auth("alice")))[1] == {"artifacts": []}
    status, body = await get(client, "/v1/users/bob/unseen?artifactId=doc-1", board)
    assert [a["versionId"] for a in body["artifacts"]] == ["v2"]
    # the older version is still there to ask for
    status, seen = await get(client, "/v1/artifacts/doc-1/seen?versionId=v1", board)
    assert (seen["versionId"], seen["seen"]) == ("v1", 2)


@pytest.mark.every_redis
async def test_seen_lists_engaged_time_and_read_and_counts_hidden_viewers_unlisted(
    client: AppClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    admin = auth("root", scope="admin")
    response = await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    assert response.status == 200
    now = int(time.time() * 1000)
    write_viewer(sync_redis, "doc-1", "v4", "alice", at_ms=now - 3000, engaged_ms=45_000)
    write_viewer(sync_redis, "doc-1", "v4", "bob", at_ms=now - 2000, engaged_ms=4_000)
    write_viewer(
        sync_redis, "doc-1", "v4", "carol", at_ms=now - 1000, engaged_ms=90_000, hidden=True
    )
    sync_redis.hset(KEYS.version_stats("doc-1", "v4"), "readers", 2)  # alice and carol
    assert (await put_latest(client, admin, "doc-1", "v4"))[0] == 200

    status, seen = await get(client, "/v1/artifacts/doc-1/seen", auth("d", scope="dashboard"))
    assert status == 200
    assert (seen["seen"], seen["read"], seen["hiddenViewers"]) == (3, 2, 1)
    assert seen["namesJoined"] is True
    rows = [(v["userId"], v["name"], v["engagedMs"], v["read"]) for v in seen["viewers"]]
    assert rows == [("bob", None, 4000, False), ("alice", "Alice", 45_000, True)]

    status, found = await check(
        client,
        auth("d", scope="dashboard"),
        "doc-1",
        {"userIds": ["alice", "bob", "carol", "dave"]},
    )
    assert status == 200
    assert found == {
        "versionId": "v4",
        "seen": ["alice", "bob"],
        "read": ["alice"],
        "notSeen": ["dave"],
        "hiddenViewers": 1,
    }


async def test_seen_pages_in_a_stable_order_without_repeats(
    client: AppClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    board = auth("d", scope="dashboard")
    now = int(time.time() * 1000)
    users = [f"u{i}" for i in range(7)]
    for i, user in enumerate(users):  # two pairs share a time: the user id breaks ties
        write_viewer(sync_redis, "doc-1", "v1", user, at_ms=now - 1000 * (i // 2))
    pages: list[str] = []
    path = "/v1/artifacts/doc-1/seen?versionId=v1&limit=2"
    cursor = None
    late = 0
    while True:
        status, page = await get(client, path + (f"&cursor={cursor}" if cursor else ""), board)
        assert status == 200
        assert page["seen"] == 7 + late
        pages += [v["userId"] for v in page["viewers"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
        # a new viewer arriving between pages does not shift the next page
        late += 1
        write_viewer(sync_redis, "doc-1", "v1", f"late{late}", at_ms=now + 10_000)
    assert pages == ["u1", "u0", "u3", "u2", "u5", "u4", "u6"]


@pytest.mark.every_redis
async def test_seen_check_of_a_thousand_ids_and_unknown_versions(
    client: AppClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    board = auth("d", scope="dashboard")
    now = int(time.time() * 1000)
    audience = [f"user:{i:04d}" for i in range(1000)]
    for i, user in enumerate(audience[:300]):
        write_viewer(sync_redis, "doc-1", "v9", user, at_ms=now, engaged_ms=READ_AFTER_MS * (i % 2))
    status, found = await check(client, board, "doc-1", {"userIds": audience, "versionId": "v9"})
    assert status == 200
    assert found["seen"] == audience[:300]
    assert found["read"] == audience[1:300:2]
    assert found["notSeen"] == audience[300:]
    # a version nobody viewed (allowed: it may be published before anyone opens it)
    status, found = await check(client, board, "doc-1", {"userIds": ["a", "b"], "versionId": "v10"})
    assert (status, found["seen"], found["notSeen"]) == (200, [], ["a", "b"])


async def test_bad_input_is_a_400_naming_the_field(client: AppClient, auth: Auth) -> None:
    board, admin = auth("d", scope="dashboard"), auth("root", scope="admin")
    too_many = [f"u{i}" for i in range(1001)]
    cases = [
        (await check(client, board, "doc-1", {"userIds": too_many, "versionId": "v1"}), "userIds"),
        (await check(client, board, "doc-1", {"userIds": [], "versionId": "v1"}), "userIds"),
        (await check(client, board, "doc-1", {"userIds": ["a b"], "versionId": "v1"}), "userIds.0"),
        (await check(client, board, "doc-1", {"userIds": ["a", "b/c"]}), "userIds.1"),
        (await check(client, board, "doc-1", {"userIds": ["a\nb", "c"]}), "userIds.0"),
        (await check(client, board, "doc-1", {"userIds": ["a", "x" * 129]}), "userIds.1"),
        (await check(client, board, "doc-1", {"userIds": ["a"], "versionId": "v/1"}), "versionId"),
        (await check(client, board, "doc-1", {"versionId": "v1"}), "userIds"),
        (await put_latest(client, admin, "doc-1", "v 1"), "versionId"),
        (await put_latest(client, admin, "doc-1", 4), "versionId"),
        (await get(client, "/v1/artifacts/doc-1/seen?versionId=v%2F1", board), "versionId"),
        (await get(client, "/v1/artifacts/doc-1/seen?versionId=v1&cursor=zz", board), "cursor"),
        (await get(client, "/v1/artifacts/doc-1/seen?versionId=v1&limit=0", board), "limit"),
        (await get(client, "/v1/users/alice/unseen", board), "artifactId"),
        (
            await get(
                client,
                "/v1/users/alice/unseen?" + "&".join(f"artifactId=a{i}" for i in range(1001)),
                board,
            ),
            "artifactId",
        ),
    ]
    for (status, body), field in cases:
        assert status == 400, body
        assert field in [e["field"] for e in body["errors"]], body
    # no latest version and none given
    status, body = await check(client, board, "doc-1", {"userIds": ["a"]})
    assert status == 404
    assert body["type"].endswith("not-found")


async def test_who_may_publish_and_read(client: AppClient, auth: Auth) -> None:
    publisher = auth("backend", scope="publisher")
    for headers in (auth("alice"), auth("d", scope="dashboard")):
        assert (await put_latest(client, headers, "doc-1", "v1"))[0] == 403
    narrow = auth("backend", scope="publisher", artifacts=["doc-2"])
    assert (await put_latest(client, narrow, "doc-1", "v1"))[0] == 403
    assert (await put_latest(client, narrow, "doc-2", "v1"))[0] == 200
    assert (await put_latest(client, publisher, "doc-1", "v1"))[0] == 200
    # a publisher reads like a dashboard and never writes presence or views
    assert (await get(client, "/v1/artifacts/doc-1/seen", publisher))[0] == 200
    body = {"artifactId": "doc-1", "versionId": "v1"}
    assert (await client.post("/v1/views", json=body, headers=publisher)).status == 403
    # seen and check: dashboards; unseen: the user's own token or a dashboard
    assert (await get(client, "/v1/artifacts/doc-1/seen", auth("alice")))[0] == 403
    assert (await check(client, auth("alice"), "doc-1", {"userIds": ["a"]}))[0] == 403
    unseen = "/v1/users/alice/unseen?artifactId=doc-1"
    assert (await get(client, unseen, auth("alice")))[0] == 200
    assert (await get(client, unseen, auth("bob")))[0] == 403
    assert (await get(client, unseen, auth("alice", artifacts=["doc-2"])))[0] == 403
    assert (await get(client, unseen, {"Authorization": "Bearer nope"}))[0] == 401


async def test_unseen_across_many_partitions_in_the_order_asked(
    client: AppClient, auth: Auth
) -> None:
    publisher = auth("backend", scope="publisher")
    artifacts = [f"doc-{i}" for i in range(60)]  # spread over all 16 partitions
    for artifact in artifacts[:40]:
        assert (await put_latest(client, publisher, artifact, "v2"))[0] == 200
    for artifact in artifacts[:40:4]:
        await view(client, auth, "alice", artifact, "v2")
    for artifact in artifacts[1:40:4]:
        await view(client, auth, "alice", artifact, "v1")  # an older version: still unseen
    query = "&".join(f"artifactId={a}" for a in reversed(artifacts))
    status, body = await get(client, f"/v1/users/alice/unseen?{query}", auth("alice"))
    assert status == 200
    expected = [a for a in reversed(artifacts[:40]) if a not in artifacts[:40:4]]
    assert [a["artifactId"] for a in body["artifacts"]] == expected
    assert {a["versionId"] for a in body["artifacts"]} == {"v2"}
