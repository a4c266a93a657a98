"""Invisible presence over real HTTP and a real Redis: a user whose presence is hidden counts
in online/sessions/active/away but is not listed (pages, include=sessions, include=recent),
not announced in events (count updates only, exact and interval modes), and not in where-now
for anyone else; turning visible again brings them back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest

from tests.conftest import AppClient, MakeClient
from tests.live.heartbeats import beat
from tests.sse import EventStream

Auth = Callable[..., dict[str, str]]
LONG_LIVED = {"heartbeat_interval_s": 15.0, "online_timeout_s": 60.0, "retention_s": 120.0}
"""Sessions outlive the test: no timeout mixes with what the test does."""


@pytest.fixture
async def streams() -> AsyncIterator[list[EventStream]]:
    opened: list[EventStream] = []
    yield opened
    for stream in opened:
        await stream.close()


@pytest.fixture
async def room(make_client: MakeClient) -> AppClient:
    return await make_client(**LONG_LIVED)


async def set_presence(client: AppClient, auth: Auth, user: str, value: str) -> None:
    response = await client.put(
        f"/v1/users/{user}/privacy", json={"presence": value}, headers=auth(user)
    )
    assert response.status == 200, await response.text()


def board(auth: Auth) -> dict[str, str]:
    return auth("board", scope="dashboard")


async def page(client: AppClient, auth: Auth, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/v1/artifacts/doc-1/presence{query}", headers=board(auth))
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def listed(body: dict[str, Any]) -> list[str]:
    return [u["userId"] for u in body["users"]]


async def open_stream(
    client: AppClient, auth: Auth, streams: list[EventStream], query: str = ""
) -> EventStream:
    response = await client.get(f"/v1/artifacts/doc-1/events{query}", headers=board(auth))
    assert response.status == 200, await response.text()
    stream = EventStream(response)
    streams.append(stream)
    return stream


def names(stream: EventStream, user: str) -> list[str]:
    """The events so far whose data names ``user`` (any row or field)."""
    return [e.event for e in stream.events if f'"{user}"' in str(e.data).replace("'", '"')]


async def test_an_invisible_user_counts_but_is_not_listed(room: AppClient, auth: Auth) -> None:
    await set_presence(room, auth, "alice", "hidden")
    await beat(room, auth, "alice", "tab-alice-1", versionId="v2", state={"secret": 1})
    await beat(room, auth, "alice", "tab-alice-2", status="away")
    await beat(room, auth, "alice", "tab-alice-1")  # a refresh stays hidden
    answer = await beat(room, auth, "bob", "tab-bob-01")
    assert (answer["online"], answer["sessions"]) == (2, 3)
    online = await (await room.get("/v1/artifacts/doc-1/online", headers=auth("x"))).json()
    assert (online["online"], online["sessions"], online["active"], online["away"]) == (2, 3, 2, 0)
    batch = await (await room.get("/v1/online?artifactId=doc-1", headers=auth("x"))).json()
    assert batch["counts"]["doc-1"]["online"] == 2
    for query in ("", "?include=sessions", "?include=sessions,recent", "?limit=1"):
        body = await page(room, auth, query)
        assert listed(body) == ["bob"], query
        assert (body["online"], body["sessions"]) == (2, 3)
        assert "secret" not in str(body)
    # a client token on the artifact sees the same
    body = await (await room.get("/v1/artifacts/doc-1/presence", headers=auth("carol"))).json()
    assert listed(body) == ["bob"]


async def test_events_carry_only_the_counts_of_an_invisible_user(
    room: AppClient, auth: Auth, streams: list[EventStream]
) -> None:
    await set_presence(room, auth, "alice", "hidden")
    await beat(room, auth, "alice", "tab-alice-1")
    stream = await open_stream(room, auth, streams)
    sync = await stream.next()
    assert (sync.event, sync.data["users"], sync.data["online"]) == ("sync", [], 1)
    await beat(room, auth, "alice", "tab-alice-2", state={"typing": True})  # a second tab
    await stream.wait_until(lambda: stream.events[-1].data.get("sessions") == 2)
    await beat(room, auth, "alice", "tab-alice-1", state={"typing": False}, versionId="v3")
    await beat(room, auth, "bob", "tab-bob-01")
    join = await stream.next_of("join")
    assert join.data["userId"] == "bob"
    await room.post(
        "/v1/leave", json={"artifactId": "doc-1", "sessionId": "tab-alice-2"}, headers=auth("alice")
    )
    await room.post(
        "/v1/leave", json={"artifactId": "doc-1", "sessionId": "tab-alice-1"}, headers=auth("alice")
    )
    await stream.wait_until(
        lambda: (
            stream.events[-1].event == "count"
            and (stream.events[-1].data["online"], stream.events[-1].data["sessions"]) == (1, 1)
        )
    )
    assert names(stream, "alice") == []
    kinds = {e.event for e in stream.events}
    assert kinds <= {"sync", "count", "join"}, kinds


async def test_interval_mode_counts_an_invisible_user_and_never_lists_them(
    make_client: MakeClient, auth: Auth, streams: list[EventStream]
) -> None:
    client = await make_client(large_room_users=3, large_room_interval_s=0.3, **LONG_LIVED)
    await set_presence(client, auth, "alice", "hidden")
    await asyncio.gather(*(beat(client, auth, u, f"tab-{u}-1") for u in ("u1", "u2", "u3")))
    stream = await open_stream(client, auth, streams)
    assert (await stream.next()).event == "sync"
    await beat(client, auth, "alice", "tab-alice-1")
    await stream.wait_until(
        lambda: any(e.event == "interval" and e.data["online"] == 4 for e in stream.events)
    )
    assert names(stream, "alice") == []


async def test_recently_here_and_where_now_leave_out_an_invisible_user(
    room: AppClient, auth: Auth
) -> None:
    await set_presence(room, auth, "alice", "hidden")
    await beat(room, auth, "alice", "tab-alice-1", versionId="v1")
    mine = await (await room.get("/v1/users/alice/presence", headers=auth("alice"))).json()
    assert [w["artifactId"] for w in mine["online"]] == ["doc-1"]  # she sees her own
    for other in (board(auth), auth("root", scope="admin")):
        theirs = await (await room.get("/v1/users/alice/presence", headers=other)).json()
        assert (theirs["online"], theirs["recent"]) == ([], [])
    for user in ("alice", "bob"):
        if user == "bob":
            await beat(room, auth, "bob", "tab-bob-01")
        await room.post(
            "/v1/leave",
            json={
                "artifactId": "doc-1",
                "sessionId": f"tab-{user}-1" if user == "alice" else "tab-bob-01",
            },
            headers=auth(user),
        )
    body = await page(room, auth, "?include=recent")
    assert [r["userId"] for r in body["recent"]] == ["bob"]
    mine = await (await room.get("/v1/users/alice/presence", headers=auth("alice"))).json()
    assert [w["artifactId"] for w in mine["recent"]] == ["doc-1"]
    theirs = await (await room.get("/v1/users/alice/presence", headers=board(auth))).json()
    assert theirs["recent"] == []


async def test_turning_invisible_while_online_and_back(
    room: AppClient, auth: Auth, streams: list[EventStream]
) -> None:
    await beat(room, auth, "alice", "tab-alice-1", versionId="v1")
    await beat(room, auth, "bob", "tab-bob-01")
    stream = await open_stream(room, auth, streams)
    assert sorted(u["userId"] for u in (await stream.next()).data["users"]) == ["alice", "bob"]
    # recently here before: a visible leave on doc-2, then invisible
    await beat(room, auth, "alice", "tab-alice-9", artifact="doc-2")
    await room.post(
        "/v1/leave", json={"artifactId": "doc-2", "sessionId": "tab-alice-9"}, headers=auth("alice")
    )
    await set_presence(room, auth, "alice", "hidden")
    assert listed(await page(room, auth)) == ["bob"]  # out of the list at once
    recent = await (
        await room.get("/v1/artifacts/doc-2/presence?include=recent", headers=board(auth))
    ).json()
    assert recent["recent"] == []
    answer = await beat(room, auth, "alice", "tab-alice-1")  # her next heartbeat
    assert (answer["online"], answer["sessions"]) == (2, 2)  # still counted
    gone = await stream.next_of("leave")
    assert gone.data == {"userId": "alice", "reason": "left"}
    assert listed(await page(room, auth)) == ["bob"]
    await set_presence(room, auth, "alice", "visible")
    await beat(room, auth, "alice", "tab-alice-1")
    back = await stream.next_of("join")
    assert (back.data["userId"], back.data["versionId"]) == ("alice", "v1")
    assert sorted(listed(await page(room, auth))) == ["alice", "bob"]
    online = await (await room.get("/v1/artifacts/doc-1/online", headers=auth("x"))).json()
    assert (online["online"], online["sessions"]) == (2, 2)


async def test_a_large_room_pages_without_an_invisible_user(room: AppClient, auth: Auth) -> None:
    """Past 128 hash fields a room keeps its users in a join-order zset, which pages read:
    an invisible user never enters it, and leaves it when turning invisible."""
    await set_presence(room, auth, "alice", "hidden")
    await beat(room, auth, "alice", "tab-alice-1")
    crowd = [f"user-{i:03d}" for i in range(80)]
    await asyncio.gather(*(beat(room, auth, u, f"tab-{u}") for u in crowd))
    await beat(room, auth, "carol", "tab-carol-1")

    async def everyone() -> list[str]:
        seen: list[str] = []
        query = "?limit=50"
        while True:
            body = await page(room, auth, query)
            assert body["online"] == 82
            seen += listed(body)
            if body["nextCursor"] is None:
                return seen
            query = f"?limit=50&cursor={body['nextCursor']}"

    found = await everyone()
    assert "alice" not in found
    assert sorted(found) == sorted([*crowd, "carol"])
    await set_presence(room, auth, "carol", "hidden")
    await beat(room, auth, "carol", "tab-carol-1")
    await set_presence(room, auth, "alice", "visible")
    await beat(room, auth, "alice", "tab-alice-1")
    found = await everyone()
    assert "carol" not in found
    assert sorted(found) == sorted([*crowd, "alice"])


async def test_sessions_holding_engaged_time_are_listed_by_their_flags(
    room: AppClient, auth: Auth, sync_redis: Any
) -> None:
    """A session whose tab reports engaged time keeps an accumulator in its record (8
    elements, not 4): the presence page reads its flags just the same, whatever its state
    (none, short, over 255 bytes): away is away, hidden is not listed but counted."""
    states: dict[str, Any] = {"ann": None, "bob": {"p": 1}, "cat": {"t": "x" * 300}, "dan": None}
    for user, state in states.items():
        body: dict[str, Any] = {
            "artifactId": "doc-1",
            "versionId": "v1",
            "sessionId": f"tab-{user}01",
        }
        assert (await room.post("/v1/views", json=body, headers=auth(user))).status == 200
        if state is not None:
            body["state"] = state
        if user == "bob":
            body["status"] = "away"
        for engaged in (1_000, 1_000):
            await beat(
                room,
                auth,
                user,
                f"tab-{user}01",
                engagedMs=engaged,
                **{k: v for k, v in body.items() if k not in ("artifactId", "sessionId")},
            )
    await set_presence(room, auth, "dan", "hidden")
    records = [  # the sessions' records: packed session ids (the hash holds per-user fields too)
        msgspec.msgpack.decode(raw)
        for key in sync_redis.scan_iter("ps:*:doc-1:h")
        for field, raw in sync_redis.hgetall(key).items()
        if field.startswith(b"#")
    ]
    assert [len(r) for r in records] == [8, 8, 8, 8]

    body = await page(room, auth)
    assert listed(body) == ["ann", "bob", "cat"]
    assert {u["userId"]: u["status"] for u in body["users"]} == {
        "ann": "active",
        "bob": "away",
        "cat": "active",
    }
    assert (body["online"], body["active"], body["away"]) == (4, 3, 1)
