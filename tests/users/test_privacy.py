"""The privacy settings: PUT/GET /v1/users/{id}/privacy, who may read and write them, bad
input, durability in both databases, and how fast a change reaches another API process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from presence_svc.database import open_database
from presence_svc.redis.keys import Keyspace
from tests.conftest import AppClient, MakeClient

Auth = Callable[..., dict[str, str]]


async def put_privacy(
    client: AppClient, headers: dict[str, str], user: str, body: Any
) -> dict[str, Any]:
    response = await client.put(f"/v1/users/{user}/privacy", json=body, headers=headers)
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def test_settings_default_to_visible_and_take_partial_updates(
    client: AppClient, auth: Auth
) -> None:
    alice = auth("alice")
    response = await client.get("/v1/users/alice/privacy", headers=alice)
    assert await response.json() == {
        "userId": "alice",
        "viewHistory": "visible",
        "presence": "visible",
        "updatedAt": None,
    }
    stored = await put_privacy(client, alice, "alice", {"viewHistory": "hidden"})
    assert (stored["viewHistory"], stored["presence"]) == ("hidden", "visible")
    assert stored["updatedAt"] is not None
    stored = await put_privacy(client, alice, "alice", {"presence": "hidden"})
    assert (stored["viewHistory"], stored["presence"]) == ("hidden", "hidden")  # kept
    stored = await put_privacy(client, alice, "alice", {"viewHistory": "visible"})
    assert (stored["viewHistory"], stored["presence"]) == ("visible", "hidden")
    response = await client.get("/v1/users/alice/privacy", headers=alice)
    assert await response.json() == stored


async def test_only_the_user_and_admins_read_or_write_them(client: AppClient, auth: Auth) -> None:
    admin = auth("root", scope="admin")
    await put_privacy(client, admin, "alice", {"presence": "hidden"})  # an admin may
    for other in (auth("bob"), auth("board", scope="dashboard")):
        response = await client.get("/v1/users/alice/privacy", headers=other)
        assert response.status == 403
        response = await client.put(
            "/v1/users/alice/privacy", json={"presence": "visible"}, headers=other
        )
        assert response.status == 403
    response = await client.get("/v1/users/alice/privacy", headers=auth("alice"))
    assert (await response.json())["presence"] == "hidden"  # the refused PUTs changed nothing
    assert (await client.get("/v1/users/alice/privacy")).status == 401


async def test_the_profile_shows_the_settings_to_the_user_and_admins_only(
    client: AppClient, auth: Auth
) -> None:
    admin = auth("root", scope="admin")
    await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    await put_privacy(client, auth("alice"), "alice", {"viewHistory": "hidden"})
    for headers in (auth("alice"), admin):
        profile = await (await client.get("/v1/users/alice", headers=headers)).json()
        assert profile["name"] == "Alice"
        assert profile["privacy"]["viewHistory"] == "hidden"
        assert profile["privacy"]["presence"] == "visible"
    for other in (auth("bob"), auth("board", scope="dashboard")):
        assert (await client.get("/v1/users/alice", headers=other)).status == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"viewHistory": "invisible"}, "viewHistory"),
        ({"presence": "HIDDEN"}, "presence"),
        ({"presence": True}, "presence"),
        ({"viewHistory": None}, "viewHistory"),
        ({"viewHistory": "hidden", "presence": 1}, "presence"),
    ],
)
async def test_bad_values_are_400_naming_the_field_and_change_nothing(
    client: AppClient, auth: Auth, body: dict[str, Any], field: str
) -> None:
    alice = auth("alice")
    response = await client.put("/v1/users/alice/privacy", json=body, headers=alice)
    assert response.status == 400
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert field in [e["field"] for e in problem["errors"]], problem
    stored = await (await client.get("/v1/users/alice/privacy", headers=alice)).json()
    assert (stored["viewHistory"], stored["presence"]) == ("visible", "visible")


async def test_not_a_body_and_a_bad_user_id_are_400(client: AppClient, auth: Auth) -> None:
    alice = auth("alice")
    response = await client.put("/v1/users/alice/privacy", data=b"[1, 2", headers=alice)
    assert response.status == 415  # not JSON or msgpack
    response = await client.put(
        "/v1/users/alice/privacy",
        data=b"[1, 2",
        headers={**alice, "Content-Type": "application/json"},
    )
    assert response.status == 400
    response = await client.get("/v1/users/a%20b/privacy", headers=auth("root", scope="admin"))
    assert response.status == 400


async def test_settings_are_stored_in_the_database(
    make_client: MakeClient, auth: Auth, ledger_url: str
) -> None:
    """SQLite and PostgreSQL: what the PUT answered is what the directory holds."""
    client = await make_client(ledger_url=ledger_url)
    await put_privacy(
        client, auth("alice"), "alice", {"viewHistory": "hidden", "presence": "hidden"}
    )
    await put_privacy(client, auth("bob"), "bob", {"presence": "hidden"})
    await put_privacy(client, auth("bob"), "bob", {"presence": "visible"})
    # two partial updates at once: both hold (one atomic step each)
    carol = auth("carol")
    await asyncio.gather(
        *(
            put_privacy(client, carol, "carol", {field: "hidden"})
            for field in ("viewHistory", "presence")
        )
    )
    stored = await (await client.get("/v1/users/carol/privacy", headers=carol)).json()
    assert (stored["viewHistory"], stored["presence"]) == ("hidden", "hidden")
    database = open_database(ledger_url)
    await database.open()
    try:
        alice = await database.users.get_privacy("alice")
        assert (alice.view_history, alice.presence) == ("hidden", "hidden")
        hidden = await database.users.hidden_privacy()
        assert sorted(p.user_id for p in hidden) == ["alice", "carol"]  # bob is visible again
    finally:
        await database.close()


async def wait_until(check: Callable[[], Any], deadline_s: float = 10.0) -> float:
    """Poll ``check`` (async) until it is true; how long that took."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < deadline_s, "never happened"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_change_on_one_process_reaches_another_within_the_refresh(
    make_client: MakeClient, auth: Auth
) -> None:
    """Two app instances on one Redis (as two processes or hosts are): the one that took the
    PUT applies it at once, the other within PRESENCE_PRIVACY_REFRESH_S."""
    # alice's tabs stay online through the test (with the tests' 1 s timeout she went
    # offline before the last check on a loaded machine, and was never listed again)
    lasting = {"online_timeout_s": 30.0, "retention_s": 60.0}
    first = await make_client(privacy_refresh_s=0.2, **lasting)
    second = await make_client(privacy_refresh_s=0.2, **lasting)
    board = auth("board", scope="dashboard")

    async def listed(client: AppClient) -> bool:
        page = await (await client.get("/v1/artifacts/doc-1/presence", headers=board)).json()
        return "alice" in [u["userId"] for u in page["users"]]

    response = await second.post(
        "/v1/heartbeat",
        json={"artifactId": "doc-1", "sessionId": "tab-aaaa1"},
        headers=auth("alice"),
    )
    assert response.status == 200
    assert await listed(first)
    assert await listed(second)
    await put_privacy(first, auth("alice"), "alice", {"presence": "hidden"})
    assert not await listed(first)  # at once where the PUT was answered
    await wait_until(lambda: _not(listed(second)))
    # and the other process marks alice's next heartbeat hidden
    response = await second.post(
        "/v1/heartbeat",
        json={"artifactId": "doc-1", "sessionId": "tab-aaaa2"},
        headers=auth("alice"),
    )
    assert (await response.json())["sessions"] == 2
    await put_privacy(first, auth("alice"), "alice", {"presence": "visible"})
    await wait_until(lambda: listed(second))


async def _not(check: Any) -> bool:
    return not await check


async def test_a_lost_mirror_is_seeded_again_from_the_directory(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    """Redis loses its data (a restart without persistence): the processes seed the mirror
    again from the users directory, so a hidden user does not become visible."""
    client = await make_client(privacy_refresh_s=0.1)
    await put_privacy(client, auth("alice"), "alice", {"viewHistory": "hidden"})
    key = Keyspace.hidden_users()
    sync_redis.delete(key)

    async def seeded() -> bool:
        return sync_redis.hget(key, "alice") == b"1"

    await wait_until(seeded)
