"""Live presence through HTTP against the real Redis: what a user of the API notices."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest

from tests.conftest import AppClient
from tests.live.heartbeats import beat

pytestmark = pytest.mark.every_redis  # see tests/conftest.py

Auth = Callable[..., dict[str, str]]


async def test_one_user_with_three_tabs_is_one_user_and_three_sessions(
    client: AppClient, auth: Auth
) -> None:
    for tab in ("tab-aaaa1", "tab-aaaa2", "tab-aaaa3"):
        body = await beat(client, auth, "alice", tab)
    assert body == {"online": 1, "sessions": 3, "active": 1, "away": 0, "intervalS": 0.5}
    body = await beat(client, auth, "bob", "tab-bbbb1")
    assert (body["online"], body["sessions"]) == (2, 4)

    response = await client.get("/v1/artifacts/doc-1/online", headers=auth("carol"))
    assert await response.json() == {
        "artifactId": "doc-1",
        "online": 2,
        "sessions": 4,
        "active": 2,
        "away": 0,
    }


async def test_repeated_heartbeats_of_one_session_count_once(client: AppClient, auth: Auth) -> None:
    for _ in range(5):
        body = await beat(client, auth, "alice", "tab-aaaa1")
    assert (body["online"], body["sessions"]) == (1, 1)


async def test_session_goes_offline_after_the_timeout_without_any_sweep(
    client: AppClient, auth: Auth
) -> None:
    await beat(client, auth, "alice", "tab-aaaa1")
    await beat(client, auth, "bob", "tab-bbbb1")
    await asyncio.sleep(0.6)
    await beat(client, auth, "bob", "tab-bbbb1")
    await asyncio.sleep(0.6)  # alice silent for 1.2 s > 1 s timeout; bob for 0.6 s
    body = await beat(client, auth, "bob", "tab-bbbb1")  # bob's answer knows
    assert (body["online"], body["sessions"]) == (1, 1)
    response = await client.get("/v1/artifacts/doc-1/online", headers=auth("carol"))
    assert await response.json() == {
        "artifactId": "doc-1",
        "online": 1,
        "sessions": 1,
        "active": 1,
        "away": 0,
    }
    page = await (await client.get("/v1/artifacts/doc-1/presence", headers=auth("c"))).json()
    assert [u["userId"] for u in page["users"]] == ["bob"]
    # alice comes back: counted again
    body = await beat(client, auth, "alice", "tab-aaaa1")
    assert (body["online"], body["sessions"]) == (2, 2)


async def test_leave_takes_the_session_offline_at_once(client: AppClient, auth: Auth) -> None:
    await beat(client, auth, "alice", "tab-aaaa1")
    await beat(client, auth, "alice", "tab-aaaa2")
    response = await client.post(
        "/v1/leave", json={"artifactId": "doc-1", "sessionId": "tab-aaaa1"}, headers=auth("alice")
    )
    assert await response.json() == {"online": 1, "sessions": 1, "active": 1, "away": 0}
    response = await client.post(
        "/v1/leave", json={"artifactId": "doc-1", "sessionId": "tab-aaaa2"}, headers=auth("alice")
    )
    assert await response.json() == {"online": 0, "sessions": 0, "active": 0, "away": 0}
    # leaving again is harmless
    response = await client.post(
        "/v1/leave", json={"artifactId": "doc-1", "sessionId": "tab-aaaa2"}, headers=auth("alice")
    )
    assert await response.json() == {"online": 0, "sessions": 0, "active": 0, "away": 0}


async def test_heartbeat_moves_version_and_changes_state(client: AppClient, auth: Auth) -> None:
    await beat(client, auth, "alice", "tab-aaaa1", versionId="v1", state={"cursor": 3})
    await beat(client, auth, "alice", "tab-aaaa1")  # no version/state: both kept
    page = await (await client.get("/v1/artifacts/doc-1/presence", headers=auth("a"))).json()
    row = page["users"][0]
    assert (row["versionId"], row["state"]) == ("v1", {"cursor": 3})
    await beat(client, auth, "alice", "tab-aaaa1", versionId="v2", state={"cursor": 9})
    page = await (await client.get("/v1/artifacts/doc-1/presence", headers=auth("a"))).json()
    row = page["users"][0]
    assert (row["versionId"], row["state"], row["sessions"]) == ("v2", {"cursor": 9}, 1)
    assert row["lastSeen"].endswith("Z")
    assert len(row["lastSeen"]) == 24


async def test_presence_list_is_one_row_per_user_in_join_order_with_pages(
    client: AppClient, auth: Auth
) -> None:
    users = [f"user-{i:02d}" for i in range(7)]
    for user in users:
        await beat(client, auth, user, f"{user}-tab1")
        await asyncio.sleep(0.003)
    await beat(client, auth, "user-02", "user-02-tab2")  # a second tab moves nobody
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        url = "/v1/artifacts/doc-1/presence?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(url, headers=auth("viewer"))).json()
        assert (page["online"], page["sessions"]) == (7, 8)
        seen += [u["userId"] for u in page["users"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == users


async def test_presence_rows_carry_names_from_the_users_directory(
    client: AppClient, auth: Auth
) -> None:
    admin = auth("root", scope="admin")
    response = await client.put(
        "/v1/users/alice",
        json={"name": "Alice A.", "avatarUrl": "https://example.org/a.png"},
        headers=admin,
    )
    assert response.status == 200
    await beat(client, auth, "alice", "tab-aaaa1")
    await beat(client, auth, "bob", "tab-bbbb1")
    page = await (await client.get("/v1/artifacts/doc-1/presence", headers=auth("x"))).json()
    by_user = {u["userId"]: u for u in page["users"]}
    assert (by_user["alice"]["name"], by_user["alice"]["avatarUrl"]) == (
        "Alice A.",
        "https://example.org/a.png",
    )
    assert (by_user["bob"]["name"], by_user["bob"]["avatarUrl"]) == (None, None)


async def test_batch_online_counts_many_artifacts_in_one_request(
    client: AppClient, auth: Auth
) -> None:
    for i in range(30):
        for tab in range(i % 3):
            await beat(client, auth, f"u{tab}", f"tab-{tab}-abcdef", f"doc-{i}")
    ids = [f"doc-{i}" for i in range(30)] + ["never-seen"]
    query = "&".join(f"artifactId={a}" for a in ids)
    response = await client.get(f"/v1/online?{query}", headers=auth("d", scope="dashboard"))
    counts = (await response.json())["counts"]
    assert counts["doc-4"] == {"online": 1, "sessions": 1, "active": 1, "away": 0}
    assert counts["doc-5"] == {"online": 2, "sessions": 2, "active": 2, "away": 0}
    assert counts["doc-3"] == {"online": 0, "sessions": 0, "active": 0, "away": 0}
    assert counts["never-seen"] == {"online": 0, "sessions": 0, "active": 0, "away": 0}
    assert len(counts) == 31


async def test_batch_online_of_a_thousand_ids_is_answered(client: AppClient, auth: Auth) -> None:
    await beat(client, auth, "alice", "tab-aaaa1", "doc-999")
    query = "&".join(f"artifactId=doc-{i}" for i in range(1000))
    response = await client.get(f"/v1/online?{query}", headers=auth("d", scope="dashboard"))
    counts = (await response.json())["counts"]
    assert len(counts) == 1000
    assert counts["doc-999"] == {"online": 1, "sessions": 1, "active": 1, "away": 0}


async def test_a_session_id_of_another_user_is_refused(client: AppClient, auth: Auth) -> None:
    await beat(client, auth, "alice", "tab-aaaa1")
    response = await client.post(
        "/v1/heartbeat",
        json={"artifactId": "doc-1", "sessionId": "tab-aaaa1"},
        headers=auth("mallory"),
    )
    assert response.status == 409
    assert response.content_type == "application/problem+json"
    response = await client.post(
        "/v1/leave",
        json={"artifactId": "doc-1", "sessionId": "tab-aaaa1"},
        headers=auth("mallory"),
    )
    assert response.status == 409
    online = await (await client.get("/v1/artifacts/doc-1/online", headers=auth("a"))).json()
    assert (online["online"], online["sessions"]) == (1, 1)


async def test_msgpack_in_and_out(client: AppClient, auth: Auth) -> None:
    body = msgspec.msgpack.encode(
        {"artifactId": "doc-1", "sessionId": "tab-aaaa1", "state": {"typing": True}}
    )
    response = await client.post(
        "/v1/heartbeat",
        data=body,
        headers={
            **auth("alice"),
            "Content-Type": "application/msgpack",
            "Accept": "application/msgpack",
        },
    )
    assert response.status == 200
    assert response.content_type == "application/msgpack"
    assert msgspec.msgpack.decode(await response.read()) == {
        "online": 1,
        "sessions": 1,
        "active": 1,
        "away": 0,
        "intervalS": 0.5,
    }


async def test_artifact_ids_with_colons_do_not_collide(client: AppClient, auth: Auth) -> None:
    await beat(client, auth, "alice", "tab-aaaa1", "a:b", versionId="c")
    await beat(client, auth, "bob", "tab-bbbb1", "a", versionId="b:c")
    one = await (await client.get("/v1/artifacts/a:b/online", headers=auth("x"))).json()
    other = await (await client.get("/v1/artifacts/a/online", headers=auth("x"))).json()
    assert (one["online"], other["online"]) == (1, 1)


async def test_a_body_that_arrives_after_its_headers_is_read_whole(
    client: AppClient, auth: Auth
) -> None:
    """Small bodies come with their headers; one sent later, in pieces, counts the same."""
    body = msgspec.json.encode({"artifactId": "doc-slow", "sessionId": "tab-slow-01"})
    head = (
        "POST /v1/heartbeat HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Authorization: {auth('alice')['Authorization']}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    url = client.make_url("/")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(head)
    await writer.drain()
    for piece in (body[:10], body[10:]):
        await asyncio.sleep(0.05)
        writer.write(piece)
        await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    status, _, payload = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200"), answer
    assert msgspec.json.decode(payload)["sessions"] == 1
