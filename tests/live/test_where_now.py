"""Where now (``GET /v1/users/{id}/presence``) and last seen (``?include=recent``), over
real HTTP on the real Redis: joins, timeouts, leaves, erasure and who may ask."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import redis

from presence_svc.http.resources import PRESENCE
from presence_svc.live import where_now
from presence_svc.live.where_now import QUIET_MS
from presence_svc.redis.keys import Keyspace
from tests.conftest import AppClient, MakeClient
from tests.live.heartbeats import beat

Auth = Callable[..., dict[str, str]]


async def where(client: AppClient, auth: Auth, user: str, **headers_of: Any) -> dict[str, Any]:
    response = await client.get(f"/v1/users/{user}/presence", headers=auth(user, **headers_of))
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def leave(client: AppClient, auth: Auth, user: str, session: str, artifact: str) -> None:
    response = await client.post(
        "/v1/leave", json={"artifactId": artifact, "sessionId": session}, headers=auth(user)
    )
    assert response.status == 200, await response.text()


async def recent_page(
    client: AppClient, auth: Auth, artifact: str, query: str = ""
) -> dict[str, Any]:
    response = await client.get(
        f"/v1/artifacts/{artifact}/presence?include=recent{query}", headers=auth("viewer")
    )
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def poll(check: Callable[[], Any], seconds: float = 10.0) -> Any:
    """Call ``check`` (a coroutine function) until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


@pytest.mark.every_redis
async def test_where_now_lists_the_artifacts_a_user_is_online_on(
    client: AppClient, auth: Auth
) -> None:
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1", versionId="v3")
    await beat(client, auth, "alice", "tab-aaaa2", "doc-1")
    await asyncio.sleep(0.005)  # lastSeen is in ms: doc-2 comes strictly later
    await beat(client, auth, "alice", "tab-aaaa1", "doc-2")
    await beat(client, auth, "bob", "tab-bbbb1", "doc-3")
    body = await where(client, auth, "alice")
    assert body["userId"] == "alice"
    assert body["recent"] == []
    online = {o["artifactId"]: o for o in body["online"]}
    assert set(online) == {"doc-1", "doc-2"}
    assert online["doc-1"]["sessions"] == 2
    assert online["doc-1"]["status"] == "active"
    assert online["doc-2"]["versionId"] is None
    assert online["doc-1"]["lastSeen"].endswith("Z")
    # most recent first
    assert [o["artifactId"] for o in body["online"]] == ["doc-2", "doc-1"]


async def test_where_now_after_a_timeout_says_when_the_user_was_last_seen(
    client: AppClient, auth: Auth
) -> None:
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    await beat(client, auth, "alice", "tab-aaaa1", "doc-2")
    started = time.monotonic()
    while time.monotonic() - started < 1.3:  # doc-2 keeps beating, doc-1 times out (1 s)
        await asyncio.sleep(0.25)
        await beat(client, auth, "alice", "tab-aaaa1", "doc-2")
    body = await where(client, auth, "alice")
    assert [o["artifactId"] for o in body["online"]] == ["doc-2"]
    # not settled yet: the stale session itself says when and why
    assert [(r["artifactId"], r["reason"]) for r in body["recent"]] == [("doc-1", "timeout")]
    first_seen = body["recent"][0]["lastSeen"]
    # settled (bob's heartbeat on doc-1 settles it): the same answer, now from the recent list
    await beat(client, auth, "bob", "tab-bbbb1", "doc-1")
    body = await where(client, auth, "alice")
    assert [(r["artifactId"], r["reason"], r["lastSeen"]) for r in body["recent"]] == [
        ("doc-1", "timeout", first_seen)
    ]
    page = await recent_page(client, auth, "doc-1")
    assert [(u["userId"], u["reason"], u["lastSeen"]) for u in page["recent"]] == [
        ("alice", "timeout", first_seen)
    ]
    assert [u["userId"] for u in page["users"]] == ["bob"]
    # back online: out of the recent list, online again in where-now
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    assert (await recent_page(client, auth, "doc-1"))["recent"] == []
    body = await where(client, auth, "alice")
    assert sorted(o["artifactId"] for o in body["online"]) == ["doc-1", "doc-2"]
    assert body["recent"] == []


async def test_where_now_after_a_leave_and_a_grace_leave(client: AppClient, auth: Auth) -> None:
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    await beat(client, auth, "alice", "tab-aaaa2", "doc-1")
    await beat(client, auth, "alice", "tab-aaaa1", "doc-2")
    await leave(client, auth, "alice", "tab-aaaa1", "doc-1")
    body = await where(client, auth, "alice")  # one tab of two left: still online there
    online = {o["artifactId"]: o["sessions"] for o in body["online"]}
    assert online == {"doc-1": 1, "doc-2": 1}
    await leave(client, auth, "alice", "tab-aaaa2", "doc-1")
    body = await where(client, auth, "alice")
    assert [o["artifactId"] for o in body["online"]] == ["doc-2"]
    assert [(r["artifactId"], r["reason"]) for r in body["recent"]] == [("doc-1", "left")]
    page = await recent_page(client, auth, "doc-1")
    assert [(u["userId"], u["reason"]) for u in page["recent"]] == [("alice", "left")]
    assert page["online"] == 0
    # a grace leave (page close) that runs out is a 'left' too
    response = await client.post(
        "/v1/leave",
        json={"artifactId": "doc-2", "sessionId": "tab-aaaa1", "grace": True},
        headers=auth("alice"),
    )
    assert response.status == 200

    async def both_left() -> dict[str, Any] | None:
        found = await where(client, auth, "alice")
        return found if not found["online"] else None

    body = await poll(both_left)
    assert sorted((r["artifactId"], r["reason"]) for r in body["recent"]) == [
        ("doc-1", "left"),
        ("doc-2", "left"),
    ]


@pytest.mark.every_redis
async def test_old_and_fresh_index_entries_give_the_same_answer(
    client: AppClient, auth: Auth, sync_redis: redis.Redis, settings: Any
) -> None:
    """A read asks an artifact's recently-here list at once only for entries written long
    ago (a fresh one is likely an online session's); a fresh entry that left, an old one
    that left, and an old one whose session is still online all answer right."""
    index = Keyspace(settings.partitions).where_now("alice")
    for artifact in ("doc-1", "doc-2", "doc-3", "doc-4"):
        await beat(client, auth, "alice", "tab-aaaa1", artifact)
    await leave(client, auth, "alice", "tab-aaaa1", "doc-1")
    await asyncio.sleep(0.01)  # lastSeen is in ms: two leaves in one ms tie in the order
    await leave(client, auth, "alice", "tab-aaaa1", "doc-2")
    fresh = await where(client, auth, "alice")  # every entry fresh: a second round trip
    assert [(r["artifactId"], r["reason"]) for r in fresh["recent"]] == [
        ("doc-2", "left"),
        ("doc-1", "left"),
    ]
    # doc-2's and doc-3's entries as if written a day ago (doc-3's session beats on)
    day_ago = int(time.time() * 1000) - 86_400_000
    for member, _ in sync_redis.zrange(index, 0, -1, withscores=True):
        if member.startswith((b"doc-2/", b"doc-3/")):
            sync_redis.zadd(index, {member: day_ago}, xx=True)
    aged = await where(client, auth, "alice")
    assert aged == fresh
    assert sorted(o["artifactId"] for o in aged["online"]) == ["doc-3", "doc-4"]
    assert sync_redis.zcard(index) == 4  # nothing pruned: each entry leads somewhere
    await leave(client, auth, "alice", "tab-aaaa1", "doc-3")  # the old entry's session left
    body = await where(client, auth, "alice")
    assert [o["artifactId"] for o in body["online"]] == ["doc-4"]
    assert [r["artifactId"] for r in body["recent"]] == ["doc-3", "doc-2", "doc-1"]


@pytest.mark.every_redis
async def test_erasure_empties_where_now_and_the_recent_lists(
    client: AppClient, auth: Auth, sync_redis: redis.Redis, settings: Any
) -> None:
    keys = Keyspace(settings.partitions)
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    await beat(client, auth, "alice", "tab-aaaa1", "doc-2")
    await beat(client, auth, "bob", "tab-bbbb1", "doc-1")
    # alice alone on doc-2 leaves: doc-2 has no session (no key but its recent list) left
    await leave(client, auth, "alice", "tab-aaaa1", "doc-2")
    assert not sync_redis.exists(keys.artifact("doc-2").sessions)
    assert sync_redis.zscore(keys.artifact("doc-2").recent, "alice") is not None
    body = await where(client, auth, "alice")
    assert ([o["artifactId"] for o in body["online"]], len(body["recent"])) == (["doc-1"], 1)

    response = await client.delete("/v1/users/alice", headers=auth("root", scope="admin"))
    assert response.status == 204
    assert await where(client, auth, "alice") == {"userId": "alice", "online": [], "recent": []}
    assert (await recent_page(client, auth, "doc-2"))["recent"] == []
    page = await recent_page(client, auth, "doc-1")
    assert ([u["userId"] for u in page["users"]], page["recent"]) == (["bob"], [])
    assert not sync_redis.exists(keys.where_now("alice"))
    assert sync_redis.zscore(keys.artifact("doc-2").recent, "alice") is None
    # bob is untouched
    assert [o["artifactId"] for o in (await where(client, auth, "bob"))["online"]] == ["doc-1"]


async def test_who_may_ask_where_a_user_is(client: AppClient, auth: Auth) -> None:
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    own = await client.get("/v1/users/alice/presence", headers=auth("alice"))
    assert own.status == 200
    other = await client.get("/v1/users/alice/presence", headers=auth("bob"))
    assert other.status == 403
    assert (await other.json())["type"].endswith(":forbidden")
    for scope in ("dashboard", "admin"):
        response = await client.get("/v1/users/alice/presence", headers=auth("d", scope=scope))
        assert response.status == 200
        assert [o["artifactId"] for o in (await response.json())["online"]] == ["doc-1"]
    assert (await client.get("/v1/users/alice/presence")).status == 401
    bad = await client.get("/v1/users/al%20ice/presence", headers=auth("d", scope="dashboard"))
    assert bad.status == 400
    assert (await bad.json())["errors"][0]["field"] == "userId"


@pytest.mark.every_redis
async def test_stale_index_entries_are_dropped_when_read(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Any
) -> None:
    # Sessions live 3 s, and leaves stay "recent" for 3 s (two leaves and a read
    # inside the tests' usual 1 s did not always fit on a loaded machine).
    client = await make_client(
        recent_s=3.0, online_timeout_s=3.0, away_timeout_s=60.0, retention_s=120.0
    )
    index = Keyspace(settings.partitions).where_now("alice")
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    await beat(client, auth, "alice", "tab-aaaa2", "doc-1")
    await beat(client, auth, "alice", "tab-aaaa1", "doc-2")
    assert sync_redis.zcard(index) == 3
    await leave(client, auth, "alice", "tab-aaaa1", "doc-1")
    await where(client, auth, "alice")  # doc-1's left tab goes, the other is online
    assert sync_redis.zcard(index) == 2
    await leave(client, auth, "alice", "tab-aaaa2", "doc-1")
    await leave(client, auth, "alice", "tab-aaaa1", "doc-2")
    body = await where(client, auth, "alice")
    assert len(body["recent"]) == 2  # both left within PRESENCE_RECENT_S (3 s here)
    await asyncio.sleep(3.1)
    assert await where(client, auth, "alice") == {"userId": "alice", "online": [], "recent": []}
    assert sync_redis.zcard(index) == 0  # nothing left to follow
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")  # and a new join is noted again
    assert [o["artifactId"] for o in (await where(client, auth, "alice"))["online"]] == ["doc-1"]


async def test_recent_list_is_newest_first_paged_and_capped(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(recent_max=4)
    users = [f"user-{i}" for i in range(6)]
    for user in users:
        await beat(client, auth, user, f"tab-{user}-0001", "doc-1")
    await beat(client, auth, "zoe", "tab-zoe-01", "doc-1")
    for user in users:  # leave one by one, each a few ms after the last
        await asyncio.sleep(0.005)
        await leave(client, auth, user, f"tab-{user}-0001", "doc-1")
    page = await recent_page(client, auth, "doc-1")
    # the cap keeps the 4 most recently gone, newest first; zoe is online, not recent
    assert [u["userId"] for u in page["recent"]] == users[::-1][:4]
    assert page["recentNextCursor"] is None
    assert [u["userId"] for u in page["users"]] == ["zoe"]
    seen: list[str] = []
    cursor = ""
    for _ in range(3):
        body = await recent_page(client, auth, "doc-1", f"&recentLimit=3{cursor}")
        seen += [u["userId"] for u in body["recent"]]
        if body["recentNextCursor"] is None:
            break
        cursor = f"&recentCursor={body['recentNextCursor']}"
    assert seen == users[::-1][:4]  # no row skipped or repeated across pages
    # the plain list has no recent fields
    plain = await (await client.get("/v1/artifacts/doc-1/presence", headers=auth("v"))).json()
    assert "recent" not in plain
    assert "recentNextCursor" not in plain


async def test_rows_of_the_recent_list_carry_names(client: AppClient, auth: Auth) -> None:
    admin = auth("root", scope="admin")
    response = await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    assert response.status == 200
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    await leave(client, auth, "alice", "tab-aaaa1", "doc-1")
    row = (await recent_page(client, auth, "doc-1"))["recent"][0]
    assert (row["userId"], row["name"], row["avatarUrl"]) == ("alice", "Alice", None)


async def test_bad_include_cursor_and_limit_are_400s_naming_the_field(
    client: AppClient, auth: Auth
) -> None:
    for user in ("alice", "bob", "carol"):
        await beat(client, auth, user, f"tab-{user}-0001", "doc-1")
        await beat(client, auth, user, f"tab-{user}-0001", "doc-2")
    await leave(client, auth, "alice", "tab-alice-0001", "doc-1")
    await leave(client, auth, "bob", "tab-bob-0001", "doc-1")
    await leave(client, auth, "alice", "tab-alice-0001", "doc-2")
    await leave(client, auth, "bob", "tab-bob-0001", "doc-2")
    base = "/v1/artifacts/doc-1/presence"
    recent_cursor = (await recent_page(client, auth, "doc-1", "&recentLimit=1"))["recentNextCursor"]
    other_cursor = (await recent_page(client, auth, "doc-2", "&recentLimit=1"))["recentNextCursor"]
    await beat(client, auth, "dave", "tab-dave-0001", "doc-1")
    online_cursor = (await (await client.get(f"{base}?limit=1", headers=auth("v"))).json())[
        "nextCursor"
    ]
    assert all((recent_cursor, other_cursor, online_cursor))
    cases = {
        "include=bogus": "include",
        "include=recent,sessionz": "include",
        f"cursor={recent_cursor}": "cursor",
        "cursor=%21%21not-a-cursor": "cursor",
        f"include=recent&recentCursor={online_cursor}": "recentCursor",
        f"include=recent&recentCursor={other_cursor}": "recentCursor",
        "include=recent&recentCursor=zz": "recentCursor",
        "include=recent&recentLimit=0": "recentLimit",
        "include=recent&recentLimit=501": "recentLimit",
        "include=recent&recentLimit=x": "recentLimit",
    }
    for query, field in cases.items():
        response = await client.get(f"{base}?{query}", headers=auth("v"))
        assert response.status == 400, query
        assert response.content_type == "application/problem+json"
        assert [e["field"] for e in (await response.json())["errors"]] == [field], query
    # repeated and comma-separated values, and the good cursors, are fine
    for query in ("include=recent&include=recent", "include=,recent,", "include="):
        assert (await client.get(f"{base}?{query}", headers=auth("v"))).status == 200, query
    good = await client.get(
        f"{base}?include=recent&recentCursor={recent_cursor}&cursor={online_cursor}",
        headers=auth("v"),
    )
    assert good.status == 200


async def test_where_now_survives_redis_forgetting_its_scripts(
    client: AppClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    for i in range(12):
        await beat(client, auth, "alice", "tab-aaaa1", f"doc-{i}")
    sync_redis.script_flush()  # as after a Redis restart or failover
    body = await where(client, auth, "alice")
    assert sorted(o["artifactId"] for o in body["online"]) == sorted(f"doc-{i}" for i in range(12))


@pytest.mark.every_redis
async def test_recent_pages_split_rows_with_the_same_time_without_loss(
    client: AppClient, auth: Auth, sync_redis: redis.Redis, settings: Any
) -> None:
    """Users who left in the same millisecond (a mass timeout) page by user id."""
    await beat(client, auth, "zoe", "tab-zoe-0001", "doc-1")
    k = Keyspace(settings.partitions).artifact("doc-1")
    seconds, micros = sync_redis.time()
    score = (seconds * 1000 + micros // 1000 - 5_000) * 4 + 2  # 5 s ago, a timeout
    users = [f"user-{i}" for i in range(7)]
    sync_redis.zadd(k.recent, dict.fromkeys(users, score))
    sync_redis.zadd(k.recent, {"early": score - 400})
    seen: list[str] = []
    cursor = ""
    for _ in range(6):
        body = await recent_page(client, auth, "doc-1", f"&recentLimit=3{cursor}")
        seen += [u["userId"] for u in body["recent"]]
        assert all(u["reason"] == "timeout" for u in body["recent"])
        if body["recentNextCursor"] is None:
            break
        cursor = f"&recentCursor={body['recentNextCursor']}"
    assert seen == [*sorted(users, reverse=True), "early"]


async def test_an_unreachable_index_never_fails_the_heartbeat_it_follows(
    settings: Any, caplog: Any
) -> None:
    """The index is best effort: a heartbeat already counted answers 200 even when the
    user's index (on another Cluster node) cannot be written; the next heartbeat retries."""
    from presence_svc.live.store import pack_session_id
    from presence_svc.live.where_now import WhereNowIndex
    from presence_svc.redis.connection import connect
    from tests.conftest import free_port

    down = connect(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}"), deadline_s=1.0)
    index = WhereNowIndex(down, Keyspace(settings.partitions), settings, pack_session_id)
    try:
        await index.noted("alice", "doc-1", "tab-aaaa1", joined=True)  # does not raise
        assert "where-now index not updated" in caplog.text
        # nothing remembered as written: the next heartbeat of the session tries again
        caplog.clear()
        await index.noted("alice", "doc-1", "tab-aaaa1", joined=False)
        assert "where-now index not updated" in caplog.text
    finally:
        await down.aclose()


@pytest.mark.every_redis
async def test_an_answer_read_again_unchanged_still_sees_a_timeout_and_a_new_version(
    client: AppClient, auth: Auth
) -> None:
    """The same user read again with nothing written in between (a poll) gets the same
    answer; a session timing out in between, with no write anywhere, and a heartbeat with
    a new version show in the next answer."""
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1", versionId="v1")
    await beat(client, auth, "alice", "tab-aaaa2", "doc-2", versionId="v1")
    first = await where(client, auth, "alice")
    assert await where(client, auth, "alice") == first
    assert {o["artifactId"] for o in first["online"]} == {"doc-1", "doc-2"}
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1", versionId="v2")
    body = await where(client, auth, "alice")
    assert {o["artifactId"]: o["versionId"] for o in body["online"]} == {
        "doc-1": "v2",
        "doc-2": "v1",
    }
    started = time.monotonic()
    while time.monotonic() - started < 1.3:  # doc-1 keeps beating, doc-2 times out (1 s)
        await asyncio.sleep(0.25)
        await beat(client, auth, "alice", "tab-aaaa1", "doc-1", versionId="v2")
    body = await where(client, auth, "alice")
    assert [o["artifactId"] for o in body["online"]] == ["doc-1"]
    assert [(r["artifactId"], r["reason"]) for r in body["recent"]] == [("doc-2", "timeout")]


@pytest.mark.every_redis
async def test_a_poll_between_heartbeats_sees_a_silent_timeout(
    client: AppClient, auth: Auth
) -> None:
    """Read, then nothing at all happens until the session's timeout: the next read finds
    Redis answering exactly as before, and must still say the user left."""
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    assert [o["artifactId"] for o in (await where(client, auth, "alice"))["online"]] == ["doc-1"]
    assert [o["artifactId"] for o in (await where(client, auth, "alice"))["online"]] == ["doc-1"]
    await asyncio.sleep(1.3)  # past the 1 s timeout; nothing settles it
    body = await where(client, auth, "alice")
    assert body["online"] == []
    assert [(r["artifactId"], r["reason"]) for r in body["recent"]] == [("doc-1", "timeout")]


def _calls(r: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = r.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_quiet_poll_is_confirmed_by_deadlines_and_still_sees_every_change(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    """Read again with nothing written since, a user whose sessions are all active and beat
    a moment before an earlier read gets the same answer from one ``ZMSCORE`` per artifact
    (no session info read, in JSON and msgpack alike); a new version, an away tab and a
    leave written since each show in the next answer."""
    client = await make_client(online_timeout_s=30.0, away_timeout_s=60.0, retention_s=120.0)
    for doc in ("doc-1", "doc-2", "doc-3"):
        await beat(client, auth, "alice", "tab-aaaa1", doc, versionId="v1")
    first = await where(client, auth, "alice")  # read in full: kept, beaten too lately
    assert {o["versionId"] for o in first["online"]} == {"v1"}
    await asyncio.sleep(QUIET_MS / 1000 + 0.05)  # the heartbeats age past the margin
    assert await where(client, auth, "alice") == first  # in full: the deadlines may do now
    zmscore, hmget = _calls(sync_redis, "zmscore"), _calls(sync_redis, "hmget")
    assert await where(client, auth, "alice") == first
    assert _calls(sync_redis, "zmscore") - zmscore == 3  # one per artifact
    assert _calls(sync_redis, "hmget") == hmget  # no session info read
    packed = await client.get(
        "/v1/users/alice/presence", headers={**auth("alice"), "Accept": "application/msgpack"}
    )
    assert packed.status == 200
    assert msgspec.msgpack.decode(await packed.read()) == first

    await beat(client, auth, "alice", "tab-aaaa1", "doc-2", versionId="v2")
    versions = {
        o["artifactId"]: o["versionId"] for o in (await where(client, auth, "alice"))["online"]
    }
    assert versions == {"doc-1": "v1", "doc-2": "v2", "doc-3": "v1"}

    await beat(client, auth, "alice", "tab-aaaa1", "doc-3", status="away")
    await asyncio.sleep(QUIET_MS / 1000 + 0.05)
    for _ in range(2):  # read in full, then again: an away tab is never confirmed so
        statuses = {
            o["artifactId"]: o["status"] for o in (await where(client, auth, "alice"))["online"]
        }
        assert statuses == {"doc-1": "active", "doc-2": "active", "doc-3": "away"}

    await leave(client, auth, "alice", "tab-aaaa1", "doc-1")
    body = await where(client, auth, "alice")
    assert sorted(o["artifactId"] for o in body["online"]) == ["doc-2", "doc-3"]
    assert [(r["artifactId"], r["reason"]) for r in body["recent"]] == [("doc-1", "left")]


async def test_a_quiet_poll_still_sees_a_silent_timeout(client: AppClient, auth: Auth) -> None:
    """Kept with its deadlines, an answer still ends at the first of them: a session that
    times out with nothing written shows as left on time (the tests' timeout is 1 s)."""
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    await asyncio.sleep(QUIET_MS / 1000 + 0.05)
    for _ in range(2):
        online = (await where(client, auth, "alice"))["online"]
        assert [o["artifactId"] for o in online] == ["doc-1"]

    async def gone() -> dict[str, Any] | None:
        body = await where(client, auth, "alice")
        return body if not body["online"] else None

    body = await poll(gone, seconds=5.0)
    assert [(r["artifactId"], r["reason"]) for r in body["recent"]] == [("doc-1", "timeout")]


async def test_a_poll_with_no_join_or_prune_since_is_not_sent_the_index_again(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Any
) -> None:
    """The index's members are read once per generation: polls with nothing joined, left
    the index or come into it since get only Redis's clock from the user's slot; a join
    (a new artifact, or a tab back on one it left) and a prune each show in the next
    answer. The generation goes with the index on erasure."""
    client = await make_client(online_timeout_s=30.0, away_timeout_s=60.0, retention_s=120.0)
    keys = Keyspace(settings.partitions)
    for doc in ("doc-1", "doc-2"):
        await beat(client, auth, "alice", "tab-aaaa1", doc)
    first = await where(client, auth, "alice")
    zrevrange = _calls(sync_redis, "zrevrange")
    for _ in range(3):
        assert await where(client, auth, "alice") == first
    assert _calls(sync_redis, "zrevrange") == zrevrange  # the members: not sent again

    await beat(client, auth, "alice", "tab-aaaa1", "doc-3")  # joins a third artifact
    online = (await where(client, auth, "alice"))["online"]
    assert sorted(o["artifactId"] for o in online) == ["doc-1", "doc-2", "doc-3"]
    assert _calls(sync_redis, "zrevrange") == zrevrange + 1

    await leave(client, auth, "alice", "tab-aaaa1", "doc-2")
    for _ in range(2):  # read again unchanged: doc-2 is now asked as an artifact left
        body = await where(client, auth, "alice")
        assert sorted(o["artifactId"] for o in body["online"]) == ["doc-1", "doc-3"]
        assert [r["artifactId"] for r in body["recent"]] == ["doc-2"]
    await beat(client, auth, "alice", "tab-aaaa1", "doc-2")  # the same tab comes back
    body = await where(client, auth, "alice")
    assert sorted(o["artifactId"] for o in body["online"]) == ["doc-1", "doc-2", "doc-3"]
    assert body["recent"] == []

    response = await client.delete("/v1/users/alice", headers=auth("root", scope="admin"))
    assert response.status == 204
    assert not sync_redis.exists(keys.where_now("alice"), keys.where_now_generation("alice"))
    assert await where(client, auth, "alice") == {"userId": "alice", "online": [], "recent": []}


async def test_a_generation_a_failover_lost_is_never_handed_out_again(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Any
) -> None:
    """A replica promoted before the last bump of a user's generation reached it holds the
    value before that bump: the next change must not give the generation the value the
    service already read other members at, or a poll would be told nothing changed and
    miss the artifact just joined."""
    client = await make_client(online_timeout_s=30.0, away_timeout_s=60.0, retention_s=120.0)
    generation = Keyspace(settings.partitions).where_now_generation("alice")
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    before = sync_redis.get(generation)
    await beat(client, auth, "alice", "tab-aaaa1", "doc-2")
    online = (await where(client, auth, "alice"))["online"]
    assert sorted(o["artifactId"] for o in online) == ["doc-1", "doc-2"]  # read at this one

    sync_redis.set(generation, before, keepttl=True)  # the failover lost the bump for doc-2
    sync_redis.zrem(
        Keyspace(settings.partitions).where_now("alice"),
        *[
            m
            for m in sync_redis.zrange(Keyspace(settings.partitions).where_now("alice"), 0, -1)
            if m.startswith(b"doc-2/")
        ],
    )  # and doc-2's entry with it
    await beat(client, auth, "alice", "tab-aaaa1", "doc-3")  # a change after the failover
    online = (await where(client, auth, "alice"))["online"]
    assert sorted(o["artifactId"] for o in online) == ["doc-1", "doc-3"]


async def test_a_user_polled_often_stays_remembered_among_more_users_than_the_room(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, monkeypatch: Any
) -> None:
    """A process remembers the indexes of the users it was last asked about: one asked
    about between each of more others than it has room for is not sent its index again
    (starting over at the bound made every user miss once per round of them)."""
    monkeypatch.setattr(where_now, "_PLANS_KEPT", 2)
    client = await make_client(online_timeout_s=30.0, away_timeout_s=60.0, retention_s=120.0)
    others = ["bob", "carol", "dave", "erin"]
    for user in ["alice", *others]:
        await beat(client, auth, user, "tab-aaaa1", f"doc-{user}")
    first = await where(client, auth, "alice")
    zrevrange = _calls(sync_redis, "zrevrange")
    for other in others:
        assert [o["artifactId"] for o in (await where(client, auth, other))["online"]] == [
            f"doc-{other}"
        ]
        assert await where(client, auth, "alice") == first
    # each other user's index once; alice's not again
    assert _calls(sync_redis, "zrevrange") == zrevrange + len(others)


async def test_past_their_bytes_the_caches_let_the_least_recent_users_go(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, monkeypatch: Any
) -> None:
    """The caches are bounded by bytes as well as by users: a few users on many artifacts
    cannot make a process hold their plans and answers past ``_CACHE_BYTES``, however far
    under the number of users the caches have room for. Answers stay exact."""
    monkeypatch.setattr(where_now, "_CACHE_BYTES", 1)  # room for the last one only
    client = await make_client(online_timeout_s=30.0, away_timeout_s=60.0, retention_s=120.0)
    for n in range(12):
        await beat(client, auth, "alice", f"tab-aaa{n:02d}", f"doc-{n:02d}")
    await beat(client, auth, "bob", "tab-bbbb1", "doc-bob")
    first = await where(client, auth, "alice")
    assert len(first["online"]) == 12
    cache = client.app[PRESENCE].where_now
    assert len(cache._plans) == 1
    zrevrange = _calls(sync_redis, "zrevrange")
    assert await where(client, auth, "alice") == first  # remembered: not read again
    assert _calls(sync_redis, "zrevrange") == zrevrange
    assert [o["artifactId"] for o in (await where(client, auth, "bob"))["online"]] == ["doc-bob"]
    assert (len(cache._plans), len(cache._kept)) == (1, 1)  # alice's went, far under 1 024
    assert cache._plans.weight > 1
    assert await where(client, auth, "alice") == first
    assert _calls(sync_redis, "zrevrange") == zrevrange + 2  # bob's, then alice's again
