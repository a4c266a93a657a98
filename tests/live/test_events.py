"""GET /v1/artifacts/{id}/events over real HTTP against a real Redis: what a dashboard or
the browser SDK sees as people arrive, change state and leave."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis

from presence_svc.http.resources import PRESENCE
from presence_svc.live.events import COUNT_WINDOW_S
from presence_svc.ratelimits import RateLimits
from tests.conftest import AppClient, MakeClient
from tests.live.heartbeats import beat
from tests.sse import EventStream

Auth = Callable[..., dict[str, str]]


@pytest.fixture
async def streams() -> AsyncIterator[list[EventStream]]:
    opened: list[EventStream] = []
    yield opened
    for stream in opened:
        await stream.close()


async def open_stream(
    client: AppClient,
    streams: list[EventStream],
    artifact: str = "doc-1",
    headers: dict[str, str] | None = None,
    query: str = "",
) -> EventStream:
    response = await client.get(f"/v1/artifacts/{artifact}/events{query}", headers=headers or {})
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    stream = EventStream(response)
    streams.append(stream)
    return stream


async def leave(client: AppClient, auth: Auth, user: str, session: str, artifact: str = "doc-1"):  # type: ignore[no-untyped-def]
    response = await client.post(
        "/v1/leave", json={"artifactId": artifact, "sessionId": session}, headers=auth(user)
    )
    assert response.status == 200, await response.text()


def board(auth: Auth) -> dict[str, str]:
    return auth("board", scope="dashboard")


@pytest.mark.every_redis
async def test_sync_on_connect_lists_who_is_here_with_names(
    client: AppClient, auth: Auth, streams: list[EventStream]
) -> None:
    response = await client.put(
        "/v1/users/alice",
        json={"name": "Alice", "avatarUrl": "https://example.org/a.png"},
        headers=auth("root", scope="admin"),
    )
    assert response.status == 200
    await beat(client, auth, "alice", "tab-alice-1", versionId="v2", state={"page": 3})
    await beat(client, auth, "bob", "tab-bob-0001")
    stream = await open_stream(client, streams, headers=board(auth))
    sync = await stream.next()
    assert sync.event == "sync"
    assert sync.id is not None
    assert (sync.data["online"], sync.data["sessions"]) == (2, 2)
    rows = {u["userId"]: u for u in sync.data["users"]}
    # the same rows as the presence list
    listed = await (await client.get("/v1/artifacts/doc-1/presence", headers=board(auth))).json()
    assert sync.data["users"] == listed["users"]
    assert rows["alice"]["name"] == "Alice"
    assert rows["alice"]["avatarUrl"] == "https://example.org/a.png"
    assert rows["alice"]["versionId"] == "v2"
    assert rows["alice"]["state"] == {"page": 3}
    assert rows["bob"]["name"] is None


@pytest.mark.every_redis
async def test_join_state_count_and_leave_as_they_happen(
    client: AppClient, auth: Auth, streams: list[EventStream]
) -> None:
    await client.put("/v1/users/bob", json={"name": "Bob"}, headers=auth("root", scope="admin"))
    stream = await open_stream(client, streams, headers=board(auth))
    assert (await stream.next()).data["users"] == []

    await beat(client, auth, "bob", "tab-bob-0001", versionId="v1", state={"typing": False})
    join = await stream.next()
    assert join.event == "join"
    assert join.data["userId"] == "bob"
    assert join.data["name"] == "Bob"
    assert join.data["versionId"] == "v1"
    assert join.data["state"] == {"typing": False}
    assert join.data["sessions"] == 1
    assert (await stream.next_of("count")).data == {
        "online": 1,
        "sessions": 1,
        "active": 1,
        "away": 0,
    }

    await beat(client, auth, "bob", "tab-bob-0001", state={"typing": True})
    state = await stream.next()
    assert (state.event, state.data) == (
        "state",
        {"userId": "bob", "versionId": "v1", "state": {"typing": True}, "status": "active"},
    )

    await beat(client, auth, "bob", "tab-bob-0002")  # a second tab: no join
    second = await stream.next()
    assert (second.event, second.data) == ("sessions", {"userId": "bob", "sessions": 2})
    assert (await stream.next_of("count")).data == {
        "online": 1,
        "sessions": 2,
        "active": 1,
        "away": 0,
    }
    await leave(client, auth, "bob", "tab-bob-0002")
    closed = await stream.next()
    assert (closed.event, closed.data) == ("sessions", {"userId": "bob", "sessions": 1})
    assert (await stream.next_of("count")).data == {
        "online": 1,
        "sessions": 1,
        "active": 1,
        "away": 0,
    }
    await leave(client, auth, "bob", "tab-bob-0001")
    gone = await stream.next()
    assert (gone.event, gone.data) == ("leave", {"userId": "bob", "reason": "left"})
    assert (await stream.next()).data == {"online": 0, "sessions": 0, "active": 0, "away": 0}
    ids = [e.id for e in stream.events]
    assert all(ids)
    seqs = [int(str(i).rsplit("-", 1)[1]) for i in ids]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


async def test_a_heartbeat_that_only_refreshes_sends_nothing(
    client: AppClient, auth: Auth, streams: list[EventStream]
) -> None:
    await beat(client, auth, "alice", "tab-alice-1", state={"a": 1})
    stream = await open_stream(client, streams, headers=board(auth))
    await stream.next_of("sync")
    for _ in range(10):
        await beat(client, auth, "alice", "tab-alice-1", state={"a": 1})
    await beat(client, auth, "carol", "tab-carol-1")  # a marker that does send events
    marker = await stream.next()
    assert (marker.event, marker.data["userId"]) == ("join", "carol")


async def test_keep_alive_comments_while_nothing_happens(
    make_client: MakeClient, auth: Auth, streams: list[EventStream]
) -> None:
    client = await make_client(events_keepalive_s=0.2)
    stream = await open_stream(client, streams, headers=board(auth))
    await stream.next_of("sync")
    await stream.wait_until(lambda: len(stream.comments) >= 2)
    assert set(stream.comments) == {"keep-alive"}


@pytest.mark.every_redis
async def test_a_timeout_becomes_one_leave_from_the_sweeper(
    make_client: MakeClient, auth: Auth, streams: list[EventStream]
) -> None:
    client = await make_client(run_worker=True)
    await beat(client, auth, "dave", "tab-dave-01")
    stream = await open_stream(client, streams, headers=board(auth))
    assert [u["userId"] for u in (await stream.next()).data["users"]] == ["dave"]
    gone = await stream.next_of("leave")
    assert gone.data == {"userId": "dave", "reason": "timeout"}
    assert (await stream.next_of("count")).data == {
        "online": 0,
        "sessions": 0,
        "active": 0,
        "away": 0,
    }
    await asyncio.sleep(0.5)
    assert [e.event for e in stream.pending()] == []


@pytest.mark.every_redis
@pytest.mark.parametrize("route", ["/v1/heartbeat", "/v1/leave"])
async def test_a_timeout_settled_by_a_refused_write_is_still_announced(
    make_client: MakeClient, auth: Auth, streams: list[EventStream], route: str
) -> None:
    """A heartbeat or leave that names another user's session is refused (409), but the
    run settled the sessions that timed out meanwhile: listeners hear them leave, and the
    counts move, though no sweeper runs here."""
    client = await make_client(online_timeout_s=2.0)
    await beat(client, auth, "dave", "tab-dave-01")
    stream = await open_stream(client, streams, headers=board(auth))
    await stream.next_of("sync")
    await asyncio.sleep(1.0)
    await beat(client, auth, "alice", "tab-alice-1")  # online 2 s more: outlives dave
    await asyncio.sleep(1.2)  # dave's deadline has passed, alice's has not
    response = await client.post(
        route, json={"artifactId": "doc-1", "sessionId": "tab-alice-1"}, headers=auth("mallory")
    )
    assert response.status == 409
    gone = await stream.next_of("leave", within_s=3.0)
    assert gone.data == {"userId": "dave", "reason": "timeout"}
    assert (await stream.next_of("count", within_s=3.0)).data["online"] == 1


async def test_a_reload_inside_a_long_grace_is_not_a_leave_later(
    make_client: MakeClient, auth: Auth, streams: list[EventStream]
) -> None:
    """pagehide sends a grace leave, the reloaded page beats at once: when that tab later
    vanishes, it timed out; it did not leave. (The grace here is longer than a third of the
    timeout, so the reload's heartbeat finds the artifact's sweep far away.)"""
    client = await make_client(run_worker=True, leave_grace_s=0.5, online_timeout_s=1.0)
    await beat(client, auth, "erin", "tab-erin-01")
    stream = await open_stream(client, streams, headers=board(auth))
    await stream.next_of("sync")
    response = await client.post(
        "/v1/leave",
        json={"artifactId": "doc-1", "sessionId": "tab-erin-01", "grace": True},
        headers=auth("erin"),
    )
    assert response.status == 200
    await beat(client, auth, "erin", "tab-erin-01")  # the reload
    gone = await stream.next_of("leave")  # then nothing more from the tab
    assert gone.data == {"userId": "erin", "reason": "timeout"}


async def test_counts_are_coalesced_under_a_burst_of_heartbeats(
    make_client: MakeClient, auth: Auth, streams: list[EventStream]
) -> None:
    # 300 tabs of one user at once: over the heartbeat limit, which is not tested here; a
    # timeout longer than the burst takes on a loaded machine (with the tests' 1 s, the
    # first tabs timed out before the last had joined).
    client = await make_client(
        rate_limits=RateLimits(buckets=()), online_timeout_s=30.0, retention_s=60.0
    )
    stream = await open_stream(client, streams, headers=board(auth))
    await stream.next_of("sync")
    started = time.monotonic()
    tabs = 300  # each new tab changes the counts and publishes
    for batch in range(0, tabs, 50):
        await asyncio.gather(
            *(beat(client, auth, "erin", f"tab-erin-{i:04d}") for i in range(batch, batch + 50))
        )
    await stream.wait_until(
        lambda: any(
            e.data == {"online": 1, "sessions": tabs, "active": 1, "away": 0} for e in stream.events
        )
    )
    elapsed = time.monotonic() - started
    counts = [e for e in stream.events if e.event == "count"]
    assert [e.event for e in stream.events].count("join") == 1
    assert len(counts) <= elapsed / COUNT_WINDOW_S + 2
    assert len(counts) < tabs / 5
    assert counts[-1].data == {"online": 1, "sessions": tabs, "active": 1, "away": 0}


async def test_tokens_apply_as_for_the_presence_list(
    client: AppClient, auth: Auth, tokens: Any, streams: list[EventStream]
) -> None:
    token = tokens.issue("alice", artifacts=["doc-1"])
    stream = await open_stream(client, streams, query=f"?access_token={token}")
    assert (await stream.next()).event == "sync"
    await open_stream(client, streams, headers=auth("alice", artifacts=["doc-1"]))

    for query, headers in (
        ("", {}),
        ("?access_token=not-a-token", {}),
        (f"?access_token={tokens.issue('alice', ttl_s=-60)}", {}),
        ("", {"Authorization": "Bearer nope"}),
    ):
        response = await client.get(f"/v1/artifacts/doc-1/events{query}", headers=headers)
        assert response.status == 401, query
        assert response.content_type == "application/problem+json"
    response = await client.get(f"/v1/artifacts/doc-2/events?access_token={token}")
    assert response.status == 403
    response = await client.get("/v1/artifacts/bad%20id/events", headers=board(auth))
    assert response.status == 400
    # the query token is for this endpoint only
    response = await client.get(f"/v1/artifacts/doc-1/presence?access_token={token}")
    assert response.status == 401


async def test_reconnecting_with_last_event_id_resumes_or_resyncs(
    client: AppClient, auth: Auth, streams: list[EventStream]
) -> None:
    keeper = await open_stream(client, streams, headers=board(auth))  # keeps the artifact live
    await keeper.next_of("sync")
    first = await open_stream(client, streams, headers=board(auth))
    await first.next_of("sync")
    await beat(client, auth, "frank", "tab-frank-1")
    join = await first.next_of("join")
    await first.close()

    await beat(client, auth, "frank", "tab-frank-1", state={"x": 1})
    await leave(client, auth, "frank", "tab-frank-1")
    await keeper.next_of("leave")

    resumed = await open_stream(
        client, streams, headers={**board(auth), "Last-Event-ID": str(join.id)}
    )
    await resumed.wait_until(lambda: any(e.id is None for e in resumed.events))
    missed = [e for e in resumed.events if e.event != "count"]
    assert [(e.event, e.data["userId"]) for e in missed] == [("state", "frank"), ("leave", "frank")]
    assert all(
        int(str(e.id).rsplit("-", 1)[1]) > int(str(join.id).rsplit("-", 1)[1]) for e in missed
    )
    now = resumed.events[-1]  # then the current counts, without an id
    assert (now.event, now.id, now.data) == (
        "count",
        None,
        {"online": 0, "sessions": 0, "active": 0, "away": 0},
    )

    unknown = await open_stream(
        client, streams, headers={**board(auth), "Last-Event-ID": "0000-99"}
    )
    assert (await unknown.next()).event == "sync"


async def test_one_subscription_per_artifact_dropped_with_the_last_listener(
    client: AppClient, auth: Auth, streams: list[EventStream], sync_redis: redis.Redis
) -> None:
    channel = client.app[PRESENCE].keys.artifact("doc-1").channel
    other = client.app[PRESENCE].keys.artifact("doc-2").channel
    opened = [await open_stream(client, streams, headers=board(auth)) for _ in range(3)]
    opened.append(await open_stream(client, streams, "doc-2", headers=board(auth)))
    for stream in opened:
        await stream.next_of("sync")

    def numsub(name: str) -> int:
        return int(dict(sync_redis.pubsub_numsub(name))[name.encode()])

    assert numsub(channel) == 1
    assert numsub(other) == 1
    await beat(client, auth, "gina", "tab-gina-01")
    for stream in opened[:3]:
        assert (await stream.next_of("join")).data["userId"] == "gina"

    for stream in opened[:2]:
        await stream.close()
    await asyncio.sleep(0.2)
    assert numsub(channel) == 1
    await opened[2].close()
    deadline = time.monotonic() + 10
    while numsub(channel):
        assert time.monotonic() < deadline, "the subscription outlived its last listener"
        await asyncio.sleep(0.05)
    assert numsub(other) == 1


async def test_streams_survive_a_redis_restart_with_a_fresh_sync(
    make_client: MakeClient, auth: Auth, streams: list[EventStream], tmp_path: Any
) -> None:
    from presence_svc.redis.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "own-redis")
    url = server.start()
    try:
        # hank stays online through the restart however long it takes (with the tests'
        # 1 s timeout he timed out during it on a loaded machine)
        client = await make_client(redis_url=url, online_timeout_s=30.0, retention_s=60.0)
        await beat(client, auth, "hank", "tab-hank-01")
        stream = await open_stream(client, streams, headers=board(auth))
        first = await stream.next_of("sync")
        server.stop()
        server.start()
        resync = await stream.next_of("sync", within_s=20)
        assert resync.id != first.id
        # presence kept by the AOF; the stream goes on with the new subscription
        assert [u["userId"] for u in resync.data["users"]] == ["hank"]
        await beat(client, auth, "iris", "tab-iris-01")
        assert (await stream.next_of("join")).data["userId"] == "iris"
    finally:
        server.stop()


@pytest.mark.timeout(90)
async def test_open_streams_end_when_the_server_stops(tmp_path: Any) -> None:
    import signal

    import aiohttp

    from tests.cli.test_cli import Server, _wait_ready
    from tests.conftest import free_port

    server = Server(tmp_path / "data", free_port())
    try:
        await _wait_ready(server)
        token = server.token("--user", "board", "--scope", "dashboard")
        async with aiohttp.ClientSession() as http:
            responses = [
                await http.get(
                    f"{server.base}/v1/artifacts/doc-{i % 2}/events?access_token={token}"
                )
                for i in range(3)
            ]
            opened = [EventStream(r) for r in responses]
            for stream in opened:
                assert (await stream.next()).event == "sync"
            stopping = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            for stream in opened:
                await asyncio.wait_for(stream.ended.wait(), 10)
            assert server.process.wait(10) == 0
            # well inside the 10 s graceful-shutdown budget: streams do not hold it up
            assert time.monotonic() - stopping < 8
            for stream in opened:
                await stream.close()
        stderr = server.process.stderr.read().decode()  # type: ignore[union-attr]
        assert "Traceback" not in stderr
    finally:
        server.reap()
