"""The users directory and erasure."""

from __future__ import annotations

from collections.abc import Callable

import redis

from tests.conftest import AppClient

Auth = Callable[..., dict[str, str]]


async def test_profile_round_trip(client: AppClient, auth: Auth) -> None:
    admin = auth("root", scope="admin")
    response = await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    stored = await response.json()
    assert (stored["userId"], stored["name"], stored["avatarUrl"]) == ("alice", "Alice", None)
    response = await client.get("/v1/users/alice", headers=admin)
    assert await response.json() == stored
    response = await client.put(
        "/v1/users/alice",
        json={"name": "Alicia", "avatarUrl": "https://x.org/a.png"},
        headers=admin,
    )
    assert (await response.json())["name"] == "Alicia"


async def test_erasing_a_user_removes_profile_and_sessions_everywhere(
    client: AppClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    admin = auth("root", scope="admin")
    await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    for artifact in ("doc-1", "doc-2", "doc-3"):
        for tab in ("tab-aaaa1", "tab-aaaa2"):
            await client.post(
                "/v1/heartbeat",
                json={
                    "artifactId": artifact,
                    "sessionId": f"{tab}-{artifact}",
                    "state": {"secret": "alice's cursor"},
                },
                headers=auth("alice"),
            )
    await client.post(
        "/v1/heartbeat", json={"artifactId": "doc-1", "sessionId": "tab-bbbb1"}, headers=auth("bob")
    )

    response = await client.delete("/v1/users/alice", headers=admin)
    assert response.status == 204
    assert (await client.get("/v1/users/alice", headers=admin)).status == 404
    for artifact, expected in (("doc-1", 1), ("doc-2", 0), ("doc-3", 0)):
        online = await (
            await client.get(f"/v1/artifacts/{artifact}/online", headers=auth("x"))
        ).json()
        assert (online["online"], online["sessions"]) == (expected, expected)
    # nothing of alice is left in Redis: no key or value mentions her state
    for key in sync_redis.scan_iter():
        kind = sync_redis.type(key)
        if kind == b"hash":
            assert not any(b"alice" in v for v in sync_redis.hvals(key)), key
            assert b"alice" not in sync_redis.hkeys(key), key


async def test_erasing_an_unknown_user_is_still_204(client: AppClient, auth: Auth) -> None:
    response = await client.delete("/v1/users/nobody", headers=auth("root", scope="admin"))
    assert response.status == 204
