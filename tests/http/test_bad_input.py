"""Bad input gets a clear 4xx in the problem+json shape and changes nothing in Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.conftest import AppClient

Auth = Callable[..., dict[str, str]]

GOOD = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}


async def _assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:presence-svc:problem:")
    assert body["title"]
    assert body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


BAD_HEARTBEATS: list[tuple[str, Any, int, str | None]] = [
    ("missing artifactId", {"sessionId": "tab-aaaa1"}, 400, "artifactId"),
    ("missing sessionId", {"artifactId": "doc-1"}, 400, "sessionId"),
    ("artifactId wrong type", {**GOOD, "artifactId": 7}, 400, "artifactId"),
    ("artifactId forbidden chars", {**GOOD, "artifactId": "doc/1"}, 400, "artifactId"),
    ("artifactId with space", {**GOOD, "artifactId": "doc 1"}, 400, "artifactId"),
    ("artifactId too long", {**GOOD, "artifactId": "a" * 129}, 400, "artifactId"),
    ("artifactId empty", {**GOOD, "artifactId": ""}, 400, "artifactId"),
    ("artifactId ending in a newline", {**GOOD, "artifactId": "doc-1\n"}, 400, "artifactId"),
    ("sessionId too short", {**GOOD, "sessionId": "abc"}, 400, "sessionId"),
    ("sessionId too long", {**GOOD, "sessionId": "a" * 65}, 400, "sessionId"),
    ("sessionId with colon", {**GOOD, "sessionId": "tab:aaaa1"}, 400, "sessionId"),
    ("versionId bad", {**GOOD, "versionId": "v 1"}, 400, "versionId"),
    ("state not an object", {**GOOD, "state": [1, 2]}, 400, "state"),
    ("state a string", {**GOOD, "state": "x"}, 400, "state"),
    ("state over 1 KiB", {**GOOD, "state": {"x": "y" * 1100}}, 400, "state"),
    ("body is a list", [GOOD], 400, "body"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "field"), BAD_HEARTBEATS, ids=[c[0] for c in BAD_HEARTBEATS]
)
async def test_bad_heartbeat_is_refused_and_writes_nothing(
    client: AppClient,
    auth: Auth,
    sync_redis: redis.Redis,
    case: str,
    body: Any,
    status: int,
    field: str | None,
) -> None:
    response = await client.post("/v1/heartbeat", json=body, headers=auth("alice"))
    await _assert_problem(response, status, field)
    assert sync_redis.dbsize() == 0


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"\xc1\xc1", "application/msgpack", 400),
        (b'{"artifactId": "doc-1"}', "text/html", 415),
        (b'{"artifactId": "doc-1"}', "application/x-www-form-urlencoded", 415),
        (b"", "application/json", 400),
        (b'{"artifactId": "' + b"a" * 17000 + b'"}', "application/json", 413),
    ],
    ids=["not-json", "not-msgpack", "html", "form", "empty", "over-16KiB"],
)
async def test_undecodable_body_is_refused(
    client: AppClient,
    auth: Auth,
    sync_redis: redis.Redis,
    data: bytes,
    content_type: str,
    status: int,
) -> None:
    response = await client.post(
        "/v1/heartbeat", data=data, headers={**auth("alice"), "Content-Type": content_type}
    )
    await _assert_problem(response, status)
    assert sync_redis.dbsize() == 0


async def test_a_user_id_in_the_body_is_ignored(client: AppClient, auth: Auth) -> None:
    response = await client.post(
        "/v1/heartbeat", json={**GOOD, "userId": "bob"}, headers=auth("alice")
    )
    assert response.status == 200
    page = await (await client.get("/v1/artifacts/doc-1/presence", headers=auth("x"))).json()
    assert [u["userId"] for u in page["users"]] == ["alice"]


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/v1/artifacts/doc-1/presence?limit=0", 400, "limit"),
        ("/v1/artifacts/doc-1/presence?limit=501", 400, "limit"),
        ("/v1/artifacts/doc-1/presence?limit=ten", 400, "limit"),
        ("/v1/artifacts/doc-1/presence?cursor=%21%21not-ours", 400, None),
        ("/v1/artifacts/doc-1/presence?cursor=bm9wZQ", 400, None),
        ("/v1/artifacts/d%20oc/online", 400, "artifactId"),
        ("/v1/online", 400, "artifactId"),
        ("/v1/online?artifactId=a%2Fb", 400, "artifactId"),
        ("/v1/online?artifactId=doc-1%0A", 400, "artifactId"),
        ("/v1/online?" + "&".join(f"artifactId=a{i}" for i in range(1001)), 400, "artifactId"),
        ("/v1/artifacts/doc-1/presence?include=everything", 400, "include"),
        ("/v1/artifacts/doc-1/presence?include=recent&recentLimit=0", 400, "recentLimit"),
        ("/v1/artifacts/doc-1/presence?include=recent&recentCursor=bm9wZQ", 400, "recentCursor"),
        ("/v1/users/a%2Fb/presence", 400, "userId"),
    ],
    ids=[
        "limit-0",
        "limit-501",
        "limit-text",
        "cursor-garbage",
        "cursor-not-ours",
        "path-id",
        "batch-none",
        "batch-bad-id",
        "batch-id-newline",
        "batch-1001",
        "include-unknown",
        "recent-limit-0",
        "recent-cursor-not-ours",
        "where-now-bad-user",
    ],
)
async def test_bad_query_is_refused(
    client: AppClient, auth: Auth, path: str, status: int, field: str | None
) -> None:
    response = await client.get(path, headers=auth("viewer", scope="dashboard"))
    await _assert_problem(response, status, field)


async def test_unknown_path_is_a_problem_404(client: AppClient) -> None:
    await _assert_problem(await client.get("/v1/nope"), 404)


async def test_wrong_method_is_a_problem_405(client: AppClient, auth: Auth) -> None:
    response = await client.get("/v1/heartbeat", headers=auth("alice"))
    body = await _assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]
    assert body["title"] == "Method Not Allowed"


async def test_wrong_method_on_a_path_with_parameters_is_a_problem_405(
    client: AppClient, auth: Auth
) -> None:
    response = await client.delete("/v1/artifacts/doc-1/online", headers=auth("alice"))
    await _assert_problem(response, 405)
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}
    # an OPTIONS that is not a CORS preflight is a method like any other
    await _assert_problem(await client.options("/v1/heartbeat"), 405)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"avatarUrl": "https://x.org/a.png"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "A", "avatarUrl": "javascript:alert(1)"}, "avatarUrl"),
    ],
    ids=["no-name", "empty-name", "bad-avatar"],
)
async def test_bad_profile_is_refused(
    client: AppClient, auth: Auth, body: dict[str, Any], field: str
) -> None:
    response = await client.put("/v1/users/alice", json=body, headers=auth("root", scope="admin"))
    await _assert_problem(response, 400, field)
    response = await client.get("/v1/users/alice", headers=auth("root", scope="admin"))
    await _assert_problem(response, 404)
