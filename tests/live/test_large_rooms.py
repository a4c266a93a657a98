"""Large rooms (issue 13): pages that cost the page in a stable order, bounded script runs
in a room of 20 000, away sessions, status events, every session of a user, bad input."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis

from presence_svc.cursors import encode_scoped
from presence_svc.live.store import PresenceStore, pack_session_id
from presence_svc.live.sweeper import Sweeper
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.scripts import Lifetimes, ScriptCall
from presence_svc.settings import Settings
from tests.conftest import AppClient, MakeClient
from tests.live.heartbeats import beat
from tests.sse import EventStream

Auth = Callable[..., dict[str, str]]
ROOM = 20_000
SLOW_US = 20_000
"""SLOWLOG threshold of the room tests: 20 ms, far above a bounded step (under 1 ms) and
far below what reading the whole room took before issue 13 (50+ ms for 5 000 sessions,
200+ ms for 20 000: every page and sweep of this room would be logged). SLOWLOG times
include Redis being descheduled, and a machine under heavy load has shown single commands
(a plain HMGET, a ZADD) taking 5-450 ms: the tests allow a few such entries among hundreds
of runs, and assert the work each run does, which load cannot change."""


@pytest.fixture
async def streams() -> AsyncIterator[list[EventStream]]:
    opened: list[EventStream] = []
    yield opened
    for stream in opened:
        await stream.close()


async def _stream(client: AppClient, auth: Auth, streams: list[EventStream]) -> EventStream:
    response = await client.get(
        "/v1/artifacts/doc-1/events", headers=auth("board", scope="dashboard")
    )
    assert response.status == 200, await response.text()
    stream = EventStream(response)
    streams.append(stream)
    return stream


async def _page(client: AppClient, auth: Auth, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/v1/artifacts/doc-1/presence{query}", headers=auth("viewer"))
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def _leave(client: AppClient, auth: Auth, user: str, session: str) -> None:
    response = await client.post(
        "/v1/leave", json={"artifactId": "doc-1", "sessionId": session}, headers=auth(user)
    )
    assert response.status == 200, await response.text()


# Pagination under churn ----------------------------------------------------------------


@pytest.mark.every_redis
async def test_pages_neither_skip_nor_repeat_anyone_while_others_come_and_go(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(online_timeout_s=30.0, retention_s=60.0)
    rng = random.Random(13)
    stayers = [f"stay-{i:03d}" for i in range(40)]
    for n, user in enumerate(stayers):
        await beat(client, auth, user, f"tab-{user}")
        if n % 3 == 0:  # some come and go among them from the start
            await beat(client, auth, f"churn-{n:03d}", f"tab-churn-{n:03d}")
    seen: list[str] = []
    cursor = None
    churned = 0
    while True:
        query = "?limit=6" + (f"&cursor={cursor}" if cursor else "")
        page = await _page(client, auth, query)
        seen += [u["userId"] for u in page["users"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
        # between pages: newcomers, leavers, heartbeats (which move lastSeen), status flips
        churned += 1
        await beat(client, auth, f"new-{churned:03d}", f"tab-new-{churned:03d}")
        for n in range(0, 40, 3):
            if rng.random() < 0.5:
                await _leave(client, auth, f"churn-{n:03d}", f"tab-churn-{n:03d}")
            else:
                await beat(client, auth, f"churn-{n:03d}", f"tab-churn-{n:03d}")
        for user in rng.sample(stayers, 8):
            status = rng.choice(["active", "away"])
            await beat(client, auth, user, f"tab-{user}", state={"t": churned}, status=status)
    assert churned >= 6
    stayed = [u for u in seen if u.startswith("stay-")]
    assert sorted(stayed) == stayers  # every one of them, exactly once
    # (a churner who left and came back is a new presence, later in the order: listed
    # again if the pages had not reached that point yet, as it should be)


# A room of 20 000 ----------------------------------------------------------------------


async def _fill_room(store: PresenceStore, times: Lifetimes, users: int) -> None:
    """``users`` users with one session each on doc-1, through the real heartbeat script."""
    heartbeat = store.redis.scripts.heartbeat
    k = store.keys.artifact("doc-1")
    calls: list[ScriptCall] = [
        heartbeat.call(k, times, pack_session_id(f"tab-{u:08d}"), f"user-{u:05d}", "v1", b"")
        for u in range(users)
    ]
    for start in range(0, len(calls), 2000):
        results = await store.redis.run_many(calls[start : start + 2000])
        assert not any(isinstance(r, Exception) for r in results)


def _few_slow(sync_redis: redis.Redis, runs: int) -> bool:
    """At most one script run in 20 (and 3) was logged over ``SLOW_US``: a stall of the
    machine, not a script that reads the room (which would be logged every time)."""
    slow = [
        e
        for e in sync_redis.slowlog_get(128)
        if e["duration"] >= SLOW_US and e["command"].startswith(b"EVALSHA")
    ]
    return len(slow) <= max(3, runs // 20)


@pytest.fixture
def slowlog(sync_redis: redis.Redis) -> Any:
    old = sync_redis.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    sync_redis.config_set("slowlog-log-slower-than", SLOW_US)
    sync_redis.slowlog_reset()
    yield sync_redis
    sync_redis.config_set("slowlog-log-slower-than", old)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_room_of_20000_is_paged_and_swept_in_bounded_steps(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis, slowlog: Any
) -> None:
    settings = settings.replace(online_timeout_s=60.0, retention_s=120.0)
    store = PresenceStore(redis_conn, settings)
    times = Lifetimes(60_000, 120_000, 600_000)
    await _fill_room(store, times, ROOM)
    sync_redis.slowlog_reset()  # the fill is not what is measured

    # a page of 100 reads the page: a handful of commands, whatever the room size
    sync_redis.config_resetstat()
    first = await store.page("doc-1", 100, None)
    calls = {
        k.removeprefix("cmdstat_"): v["calls"] for k, v in sync_redis.info("commandstats").items()
    }
    assert [r.user_id for r in first.rows] == [f"user-{u:05d}" for u in range(100)]
    assert (first.counts.online, first.counts.sessions, first.counts.active) == (ROOM, ROOM, ROOM)
    assert first.next_cursor is not None
    assert calls["evalsha"] == 1
    assert sum(calls.values()) < 20, calls
    # and every page after it, to the end: each user once, each page a few commands
    seen = [r.user_id for r in first.rows]
    cursor = first.next_cursor
    sync_redis.config_resetstat()
    pages = 0
    while cursor is not None:
        page = await store.page("doc-1", 250, cursor)
        seen += [r.user_id for r in page.rows]
        cursor = page.next_cursor
        pages += 1
    assert len(seen) == ROOM == len(set(seen))
    stats = sync_redis.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == pages
    assert sum(v["calls"] for v in stats.values()) / pages < 20

    # the whole room times out at once: the sweeper settles it in steps of ~200 sessions
    now_ms = int(sync_redis.time()[0]) * 1000
    k = store.keys.artifact("doc-1")
    members = sync_redis.zrange(k.sessions, 0, -1)
    # deadlines all within the last millisecond, distinct as the heartbeats that set them
    deadlines = {m: now_ms - 5 - n / 8192 for n, m in enumerate(members)}
    sync_redis.zadd(k.sessions, deadlines, xx=True)
    sync_redis.zadd(k.due, {"doc-1": now_ms - 5})
    sync_redis.slowlog_reset()  # (that ZADD of 20 000 is the test's, not the service's)
    sync_redis.config_resetstat()
    sweeper = Sweeper(redis_conn, settings)
    await sweeper.sweep_once(list(store.keys.tags))
    await sweeper.release()
    stats = sync_redis.info("commandstats")
    steps = stats["cmdstat_evalsha"]["calls"]
    assert steps >= ROOM // 100  # many bounded steps, not one long one
    commands = sum(v["calls"] for v in stats.values())
    assert commands / steps < 1000  # each step a bounded amount of work
    counts = (await store.online(["doc-1"]))["doc-1"]
    assert (counts.online, counts.sessions, counts.active, counts.away) == (0, 0, 0, 0)
    assert (await store.page("doc-1", 100, None)).rows == []
    assert sync_redis.zcard(k.users) == 0
    # no script ran long: nothing in SLOWLOG at 50 ms (reading the room took 200+ ms)
    assert _few_slow(sync_redis, steps)

    # erasing a user from a big room is bounded steps as well
    await _fill_room(store, times, 3000)
    sync_redis.slowlog_reset()
    sync_redis.config_resetstat()
    assert await store.erase_user("user-00007") == 1
    stats = sync_redis.info("commandstats")
    steps = stats["cmdstat_evalsha"]["calls"]
    assert steps >= ROOM // 100  # a scan in steps
    assert sum(v["calls"] for v in stats.values()) / steps < 100
    assert [r.user_id for r in (await store.page("doc-1", 10, None)).rows][:8] == [
        f"user-{u:05d}" for u in (0, 1, 2, 3, 4, 5, 6, 8)
    ]
    assert _few_slow(sync_redis, steps)


# Away ---------------------------------------------------------------------------------


async def test_an_away_tab_survives_minute_long_heartbeats_an_active_one_does_not(
    make_client: MakeClient, auth: Auth
) -> None:
    """Time scaled down 60x: heartbeats every 60 s (1 s here) for 3 minutes (3 s), an
    online timeout of 45 s (0.75 s), an away timeout of 10 min (10 s)."""
    client = await make_client(heartbeat_interval_s=0.5, online_timeout_s=0.75, away_timeout_s=10)
    answer = await beat(client, auth, "alice", "tab-alice-hidden", status="away")
    assert (answer["online"], answer["active"], answer["away"]) == (1, 0, 1)
    await beat(client, auth, "bob", "tab-bob-visible")
    for _ in range(3):
        await asyncio.sleep(1.0)  # a throttled background tab's minute
        page = await _page(client, auth)
        assert [u["userId"] for u in page["users"]] == ["alice"]  # bob's 45 s are over
        assert page["users"][0]["status"] == "away"
        assert (page["online"], page["active"], page["away"]) == (1, 0, 1)
        await beat(client, auth, "alice", "tab-alice-hidden", status="away")
        await beat(client, auth, "bob", "tab-bob-visible")  # back for a moment, each time
    # the tab is shown again: active, and the online timeout applies again
    await beat(client, auth, "alice", "tab-alice-hidden")
    shown = time.monotonic()
    for _ in range(100):
        if (await _page(client, auth))["online"] == 0:
            break
        await asyncio.sleep(0.1)
    assert (await _page(client, auth))["online"] == 0
    assert time.monotonic() - shown < 5  # gone after 0.75 s, not after the away 10 s


@pytest.mark.every_redis
async def test_status_changes_are_state_events_and_counts_say_active_and_away(
    make_client: MakeClient, auth: Auth, streams: list[EventStream]
) -> None:
    client = await make_client(run_worker=True, away_timeout_s=30)
    stream = await _stream(client, auth, streams)
    assert (await stream.next()).event == "sync"
    await beat(client, auth, "carol", "tab-carol-1", versionId="v1")
    join = await stream.next_of("join")
    assert join.data["status"] == "active"
    assert (await stream.next_of("count")).data == {
        "online": 1,
        "sessions": 1,
        "active": 1,
        "away": 0,
    }
    await beat(client, auth, "carol", "tab-carol-1", status="away")
    state = await stream.next_of("state")
    assert state.data == {"userId": "carol", "versionId": "v1", "state": None, "status": "away"}
    await stream.wait_until(
        lambda: any(e.event == "count" and e.data["away"] == 1 for e in stream.events)
    )
    # a second tab, active: carol is active again (one state event)
    await beat(client, auth, "carol", "tab-carol-2", versionId="v1")
    await stream.wait_until(
        lambda: any(e.event == "state" and e.data["status"] == "active" for e in stream.events)
    )
    page = await _page(client, auth)
    assert (page["users"][0]["status"], page["active"], page["away"]) == ("active", 1, 0)
    # the active tab times out (1 s), the away one stays: carol is away again, not gone
    await stream.wait_until(
        lambda: [e.data["status"] for e in stream.events if e.event == "state"][-1] == "away"
    )
    assert not any(e.event == "leave" for e in stream.events)
    sync = await _page(client, auth)
    assert (sync["online"], sync["active"], sync["away"]) == (1, 0, 1)


# Every session -------------------------------------------------------------------------


@pytest.mark.every_redis
async def test_include_sessions_lists_each_session_without_its_id(
    client: AppClient, auth: Auth
) -> None:
    await beat(client, auth, "dan", "tab-dan-one-0001", versionId="v1", state={"page": 1})
    await beat(client, auth, "dan", "tab-dan-two-0002", versionId="v2", status="away")
    await beat(client, auth, "eve", "tab-eve-one-0001", versionId="v1")
    plain = await _page(client, auth)
    assert all("sessionList" not in u for u in plain["users"])
    response = await client.get(
        "/v1/artifacts/doc-1/presence?include=sessions", headers=auth("viewer")
    )
    text = await response.text()
    assert "tab-dan" not in text
    assert "tab-eve" not in text
    rows = {u["userId"]: u for u in (await response.json())["users"]}
    dan = rows["dan"]
    assert (dan["sessions"], dan["status"]) == (2, "active")
    metas = dan["sessionList"]
    assert [(m["versionId"], m["state"], m["status"]) for m in metas] == [
        ("v1", {"page": 1}, "active"),
        ("v2", None, "away"),
    ]
    assert all(m["lastSeen"].endswith("Z") for m in metas)
    assert set(metas[0]) == {"versionId", "state", "lastSeen", "status"}
    assert [m["versionId"] for m in rows["eve"]["sessionList"]] == ["v1"]


# Bad input -----------------------------------------------------------------------------


async def _problem(response: Any, field: str) -> None:
    assert response.status == 400, await response.text()
    body = await response.json()
    assert field in [e["field"] for e in body["errors"]], body


@pytest.mark.parametrize("status", ["busy", "", "AWAY", 1, None])
async def test_an_unknown_status_is_a_400_naming_it(
    client: AppClient, auth: Auth, sync_redis: redis.Redis, status: Any
) -> None:
    response = await client.post(
        "/v1/heartbeat",
        json={"artifactId": "doc-1", "sessionId": "tab-aaaa1", "status": status},
        headers=auth("alice"),
    )
    await _problem(response, "status")
    assert sync_redis.keys("ps:*") == []


@pytest.mark.parametrize("include", ["recent-ish", "sessions,foo", "SESSIONS"])
async def test_an_unknown_include_is_a_400_naming_it(
    client: AppClient, auth: Auth, include: str
) -> None:
    response = await client.get(
        f"/v1/artifacts/doc-1/presence?include={include}", headers=auth("viewer")
    )
    await _problem(response, "include")


async def test_a_cursor_of_another_artifact_or_order_is_a_400_naming_it(
    client: AppClient, auth: Auth
) -> None:
    for user in ("u1", "u2", "u3"):
        await beat(client, auth, user, f"tab-{user}-01", "doc-2")
    response = await client.get("/v1/artifacts/doc-2/presence?limit=1", headers=auth("viewer"))
    other = (await response.json())["nextCursor"]
    assert other
    for cursor in (other, encode_scoped("recent", "doc-1", 1), "not-a-cursor", "AAAA"):
        response = await client.get(
            f"/v1/artifacts/doc-1/presence?cursor={cursor}", headers=auth("viewer")
        )
        await _problem(response, "cursor")
    # the cursor still works where it belongs
    response = await client.get(
        f"/v1/artifacts/doc-2/presence?cursor={other}", headers=auth("viewer")
    )
    assert [u["userId"] for u in (await response.json())["users"]] == ["u2", "u3"]


async def test_a_room_keeps_its_order_as_it_grows_large_and_shrinks_small(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis
) -> None:
    """Past 128 hash fields a room gets its users index and per-user session lists; under
    64 it drops them again. Pages, counts and every session list stay right across both."""
    store = PresenceStore(redis_conn, settings.replace(online_timeout_s=30.0, retention_s=60.0))
    k = store.keys.artifact("doc-1")

    async def users() -> list[str]:
        out: list[str] = []
        cursor = None
        while True:
            page = await store.page("doc-1", 7, cursor, sessions=True)
            out += [r.user_id for r in page.rows]
            assert all(r.metas is not None and len(r.metas) == r.sessions for r in page.rows)
            cursor = page.next_cursor
            if cursor is None:
                return out

    names = [f"u-{n:03d}" for n in range(80)]
    for name in names:
        await store.heartbeat("doc-1", f"tab-{name}-a", name, "v1", None)
        if name.endswith("0"):
            await store.heartbeat("doc-1", f"tab-{name}-b", name, "v2", None, away=True)
    assert sync_redis.hexists(k.info, "~L")  # 80 users, 88 sessions: large
    assert sync_redis.zcard(k.users) == 80
    assert await users() == names
    for name in names[:70]:  # most leave: small again
        await store.leave("doc-1", f"tab-{name}-a", name)
    assert not sync_redis.hexists(k.info, "~L")
    assert not sync_redis.exists(k.users)
    left = names[70:]
    assert await users() == [n for n in names[:70] if n.endswith("0")] + left
    counts = (await store.online(["doc-1"]))["doc-1"]
    assert (counts.online, counts.active, counts.away) == (17, 10, 7)
    for name in names[:10]:  # and large again, the order kept
        await store.heartbeat("doc-1", f"tab-{name}-c", f"{name}-again", "v1", None)
    for name in names[10:70]:
        await store.heartbeat("doc-1", f"tab-{name}-a", name, "v1", None)
    assert sync_redis.hexists(k.info, "~L")
    page = await users()
    assert page[:17] == [n for n in names[:70] if n.endswith("0")] + left
    assert len(page) == len(set(page)) == 17 + 10 + 54  # 6 of the 60 never left
