"""Presence pages kept per process (``PRESENCE_PAGE_CACHE_S``, http/page_cache.py): a
kept page is answered again only while the room's page mark in Redis says nothing changed,
so every change shows at once, through any process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from presence_svc.http.resources import PAGES, USERS
from presence_svc.live.store import PresencePage, PresenceStore
from presence_svc.redis.connection import RedisConnection
from presence_svc.settings import ConfigError, Settings
from presence_svc.users.cache import CachedUsers
from tests.conftest import AppClient, MakeClient
from tests.live.heartbeats import beat

Auth = Callable[..., dict[str, str]]

KEEP = {"page_cache_s": 10.0}  # longer than any test: only a change may end a kept page
LONG_LIVED = {"heartbeat_interval_s": 15.0, "online_timeout_s": 60.0, "retention_s": 120.0}
"""Sessions that outlive a slow run (the tests' default timeout is 1 s)."""


async def _page(client: AppClient, auth: Auth, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/v1/artifacts/doc-1/presence{query}", headers=auth("reader"))
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def _renamed_elsewhere(client: AppClient) -> None:
    """alice renamed Alicia through the directory, as another process would (not through
    this process's cache)."""
    users = client.app[USERS]
    assert isinstance(users, CachedUsers)
    await users.inner.put_profile("alice", "Alicia", None)


async def _until_renamed_on_the_page(client: AppClient, auth: Auth, pause_s: float) -> None:
    deadline = time.monotonic() + 10
    while (await _page(client, auth))["users"][0]["name"] != "Alicia":
        assert time.monotonic() < deadline, "the kept page kept the old name"
        await asyncio.sleep(pause_s)


def _rows(page: dict[str, Any]) -> list[tuple[str, str | None, str, int]]:
    return [(u["userId"], u["versionId"], u["status"], u["sessions"]) for u in page["users"]]


async def test_every_change_through_another_process_shows_at_once_on_a_kept_page(
    make_client: MakeClient, auth: Auth
) -> None:
    """Two processes on one Redis: one keeps the page, the other takes the writes."""
    reader = await make_client(**KEEP, **LONG_LIVED)
    writer = await make_client(**KEEP, **LONG_LIVED)
    await beat(writer, auth, "alice", "tab-aaaa1", versionId="v1")
    first = await _page(reader, auth)
    assert _rows(first) == [("alice", "v1", "active", 1)]
    assert await _page(reader, auth) == first  # nothing changed: the same page

    await beat(writer, auth, "bob", "tab-bbbb1", versionId="v1")  # a join
    assert _rows(await _page(reader, auth)) == [
        ("alice", "v1", "active", 1),
        ("bob", "v1", "active", 1),
    ]
    await beat(writer, auth, "alice", "tab-aaaa1", versionId="v2")  # a version move
    await beat(writer, auth, "bob", "tab-bbbb1", versionId="v1", status="away")  # away
    await beat(writer, auth, "alice", "tab-aaaa2", versionId="v2")  # a second tab
    page = await _page(reader, auth)
    assert _rows(page) == [("alice", "v2", "active", 2), ("bob", "v1", "away", 1)]
    assert (page["online"], page["sessions"], page["active"], page["away"]) == (2, 3, 1, 1)
    # a state change, seen with the sessions listed too
    await beat(writer, auth, "alice", "tab-aaaa2", state={"cursor": 7})
    listed = await _page(reader, auth, "?include=sessions")
    states = {s["state"]["cursor"] for s in listed["users"][0]["sessionList"] if s["state"]}
    assert states == {7}
    response = await writer.post(
        "/v1/leave",
        json={"artifactId": "doc-1", "sessionId": "tab-bbbb1"},
        headers=auth("bob"),
    )
    assert response.status == 200
    assert [row[0] for row in _rows(await _page(reader, auth))] == ["alice"]


async def test_a_user_turning_invisible_leaves_a_kept_page_in_this_process_and_others(
    make_client: MakeClient, auth: Auth
) -> None:
    """The kept page asks the privacy mirror again only when the mirror changed: through
    this process at once, through another once this one's mirror has reloaded."""
    reader = await make_client(**KEEP, **LONG_LIVED, privacy_refresh_s=0.2)
    writer = await make_client(**KEEP, **LONG_LIVED, privacy_refresh_s=0.2)
    await beat(writer, auth, "alice", "tab-aaaa1")
    await beat(writer, auth, "bob", "tab-bbbb1")
    await beat(writer, auth, "carol", "tab-cccc1")
    assert [r[0] for r in _rows(await _page(reader, auth))] == ["alice", "bob", "carol"]
    assert [r[0] for r in _rows(await _page(reader, auth))] == ["alice", "bob", "carol"]

    async def hide(client: AppClient, user: str) -> None:
        response = await client.put(
            f"/v1/users/{user}/privacy", json={"presence": "hidden"}, headers=auth(user)
        )
        assert response.status == 200, await response.text()

    await hide(reader, "bob")  # through the reader: out of its very next page
    assert [r[0] for r in _rows(await _page(reader, auth))] == ["alice", "carol"]
    await hide(writer, "carol")  # through the other process: once the reader reloads
    deadline = time.monotonic() + 10
    while [r[0] for r in _rows(await _page(reader, auth))] != ["alice"]:
        assert time.monotonic() < deadline, "the kept page still lists carol"
        await asyncio.sleep(0.05)
    assert (await _page(reader, auth))["online"] == 3  # counted still


async def test_a_kept_page_loses_the_sessions_that_timed_out_with_no_write_since(
    make_client: MakeClient, auth: Auth
) -> None:
    """Nobody writes after the page is kept (no heartbeat, no sweep): the sessions' timeout
    (2 s) alone takes them off the next page, as without the cache, well before the kept
    page's own 10 s are up."""
    client = await make_client(**KEEP, online_timeout_s=2.0, retention_s=4.0)
    await beat(client, auth, "alice", "tab-aaaa1")
    await beat(client, auth, "bob", "tab-bbbb1")
    last_write = time.monotonic()
    assert [r[0] for r in _rows(await _page(client, auth))] == ["alice", "bob"]
    while True:
        page = await _page(client, auth)
        if (page["users"], page["online"], page["sessions"]) == ([], 0, 0):
            break
        assert time.monotonic() - last_write < 8.0, "the kept page outlived its sessions"
        await asyncio.sleep(0.1)


async def test_many_readers_at_once_get_the_page_and_then_the_change(
    make_client: MakeClient, auth: Auth
) -> None:
    """Readers of one room at the same moment share the build; each gets the whole page,
    and the readers after a join all see it."""
    client = await make_client(**KEEP, **LONG_LIVED)
    for n in range(12):
        await beat(client, auth, f"user-{n:02d}", f"tab-{n:05d}")
    pages = await asyncio.gather(*(_page(client, auth, "?limit=5") for _ in range(40)))
    expected = [f"user-{n:02d}" for n in range(5)]
    assert all([r[0] for r in _rows(p)] == expected for p in pages)
    assert all(p["online"] == 12 and p["nextCursor"] for p in pages)
    # the second page by its cursor, kept apart from the first
    second = await _page(client, auth, f"?limit=5&cursor={pages[0]['nextCursor']}")
    assert [r[0] for r in _rows(second)] == [f"user-{n:02d}" for n in range(5, 10)]
    await beat(client, auth, "user-12", "tab-00012")
    pages = await asyncio.gather(*(_page(client, auth) for _ in range(40)))
    assert all(p["online"] == 13 and len(p["users"]) == 13 for p in pages)


async def test_last_seen_catches_up_within_the_cache_time(
    make_client: MakeClient, auth: Auth
) -> None:
    """A heartbeat that changes nothing (the fast path) writes no new mark: a kept page may
    show the earlier lastSeen, never for longer than ``PRESENCE_PAGE_CACHE_S``."""
    client = await make_client(page_cache_s=0.3, **LONG_LIVED)
    await beat(client, auth, "alice", "tab-aaaa1")
    await beat(client, auth, "bob", "tab-bbbb1")
    first = (await _page(client, auth))["users"][0]["lastSeen"]
    await asyncio.sleep(0.05)
    await beat(client, auth, "alice", "tab-aaaa1")  # a refresh
    deadline = time.monotonic() + 10
    while (await _page(client, auth))["users"][0]["lastSeen"] == first:
        assert time.monotonic() < deadline, "lastSeen never moved on"
        await asyncio.sleep(0.05)


async def test_the_page_script_answers_empty_while_a_kept_mark_holds(
    redis_conn: RedisConnection, settings: Settings
) -> None:
    """The store's side: ``page_unless`` is None for the mark a page was built at, until a
    write (here a join) changes the mark; a room with no mark yet never matches one."""
    store = PresenceStore(redis_conn, settings.replace(online_timeout_s=30.0, retention_s=60.0))
    assert (await store.page("doc-1", 10, None)).mark == ""  # no room: nothing to keep
    await store.heartbeat("doc-1", "tab-aaaa1", "alice", None, None)
    page = await store.page("doc-1", 10, None)
    assert page.mark
    assert [r.user_id for r in page.rows] == ["alice"]
    assert await store.page_unless("doc-1", 10, None, page.mark) is None
    await store.heartbeat("doc-1", "tab-aaaa1", "alice", None, None)  # a refresh: the same mark
    assert await store.page_unless("doc-1", 10, None, page.mark) is None
    await store.heartbeat("doc-1", "tab-bbbb1", "bob", None, None)
    again = await store.page_unless("doc-1", 10, None, page.mark)
    assert again is not None
    assert again.mark != page.mark
    assert [r.user_id for r in again.rows] == ["alice", "bob"]
    assert await store.page_unless("doc-1", 10, None, "not-a-mark") is not None


@pytest.mark.every_redis
async def test_a_kept_page_holds_by_its_mark_until_its_first_deadline(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis
) -> None:
    """``page_holds``, the check of a kept page with no script: True while the page mark
    holds and Redis's clock is before the first deadline the page was built with (a
    refresh moves deadlines later only, and keeps the mark); False once a write moved the
    mark; None once that deadline passed, and then the page script finds who timed out."""
    store = PresenceStore(redis_conn, settings.replace(online_timeout_s=3.0, retention_s=6.0))
    empty = await store.page("doc-1", 10, None)
    assert await store.page_holds("doc-1", empty) is False  # no room, no mark: build
    await store.heartbeat("doc-1", "tab-bbbb1", "bob", None, None)
    await store.heartbeat("doc-1", "tab-aaaa1", "alice", None, None)
    page = await store.page("doc-1", 10, None)
    k = store.keys.artifact("doc-1")
    ((_, first),) = sync_redis.zrange(k.sessions, 0, 0, withscores=True)
    assert page.holds_until == int(first)
    assert await store.page_holds("doc-1", page) is True
    await asyncio.sleep(1.0)
    # a refresh (the fast path: the room is not due yet) keeps the mark
    await store.heartbeat("doc-1", "tab-aaaa1", "alice", None, None)
    assert await store.page_holds("doc-1", page) is True
    # nobody writes: past bob's deadline the mark alone cannot tell
    deadline = time.monotonic() + 10
    while (found := await store.page_holds("doc-1", page)) is True:
        assert time.monotonic() < deadline, "the page held past its first deadline"
        await asyncio.sleep(0.02)
    assert found is None
    # (``CLOCK_MARGIN_MS`` before it, already: the page script, asked from then on, keeps
    # the page until bob's deadline has passed)
    while (again := await store.page_unless("doc-1", 10, None, page.mark)) is None:
        assert time.monotonic() < deadline, "bob never timed out"
        await asyncio.sleep(0.02)
    assert [r.user_id for r in again.rows] == ["alice"]
    assert again.holds_until > page.holds_until
    assert await store.page_holds("doc-1", again) is True
    await store.heartbeat("doc-1", "tab-cccc1", "carol", None, None)  # a join: a new mark
    assert await store.page_holds("doc-1", again) is False


@pytest.mark.parametrize("raw", ["-1", "11", "soon"])
def test_a_bad_page_cache_time_is_refused_by_name(raw: str) -> None:
    with pytest.raises(ConfigError, match="PRESENCE_PAGE_CACHE_S"):
        Settings.from_env({"PRESENCE_PAGE_CACHE_S": raw})


def test_the_page_cache_time_is_read() -> None:
    assert Settings.from_env({"PRESENCE_PAGE_CACHE_S": "0"}).page_cache_s == 0.0
    assert Settings.from_env({"PRESENCE_PAGE_CACHE_S": "2.5"}).page_cache_s == 2.5
    assert Settings().page_cache_s == 2.0


async def test_with_the_cache_off_pages_are_built_every_time(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(page_cache_s=0.0, **LONG_LIVED)
    await beat(client, auth, "alice", "tab-aaaa1")
    assert [r[0] for r in _rows(await _page(client, auth))] == ["alice"]
    await beat(client, auth, "bob", "tab-bbbb1")
    assert [r[0] for r in _rows(await _page(client, auth))] == ["alice", "bob"]


async def test_a_plain_heartbeat_of_a_users_other_tab_shows_its_state_on_a_kept_page(
    make_client: MakeClient, auth: Auth
) -> None:
    """A user's row shows their latest session's version and state: a refreshing
    heartbeat (nothing new in it) of another of their tabs makes that tab the latest."""
    reader = await make_client(**KEEP, **LONG_LIVED)
    writer = await make_client(**KEEP, **LONG_LIVED)
    await beat(writer, auth, "alice", "tab-aaaa1", versionId="v1")
    await asyncio.sleep(0.01)
    await beat(writer, auth, "alice", "tab-aaaa2", versionId="v2", state={"page": 3})
    page = await _page(reader, auth)
    assert [(u["versionId"], u["state"]) for u in page["users"]] == [("v2", {"page": 3})]
    await asyncio.sleep(0.01)
    await beat(writer, auth, "alice", "tab-aaaa1")  # a refresh: the fast path
    page = await _page(reader, auth)
    assert [(u["versionId"], u["state"]) for u in page["users"]] == [("v1", None)]


@pytest.mark.every_redis
async def test_the_page_script_says_whether_anyone_beat_since_a_kept_page(
    redis_conn: RedisConnection, settings: Settings
) -> None:
    """``page_since``: True while nothing at all happened on the room since the kept page
    was built (its lastSeen times hold too), False once a refresh moved a lastSeen (the
    mark holds), a new page once a write changed the mark."""
    store = PresenceStore(redis_conn, settings.replace(online_timeout_s=30.0, retention_s=60.0))
    await store.heartbeat("doc-1", "tab-aaaa1", "alice", None, None)
    # (a page built in the same ms as a heartbeat is never told beaten-past: the script
    # cannot tell which came first, and answers False)
    await asyncio.sleep(0.01)
    page = await store.page("doc-1", 10, None)
    assert page.built > 0
    assert await store.page_since("doc-1", 10, None, page) is True
    await asyncio.sleep(0.01)  # lastSeen is in ms: the refresh moves it
    await store.heartbeat("doc-1", "tab-aaaa1", "alice", None, None)  # the fast path
    assert await store.page_since("doc-1", 10, None, page) is False
    await asyncio.sleep(0.01)
    again = await store.page("doc-1", 10, None)
    assert again.mark == page.mark
    assert again.built > page.built
    assert again.rows[0].last_seen_ms > page.rows[0].last_seen_ms
    assert await store.page_since("doc-1", 10, None, again) is True
    await store.heartbeat("doc-1", "tab-bbbb1", "bob", None, None)
    found = await store.page_since("doc-1", 10, None, again)
    assert isinstance(found, PresencePage)
    assert [r.user_id for r in found.rows] == ["alice", "bob"]


async def test_a_kept_page_past_its_time_in_a_quiet_room_comes_back_with_fresh_names(
    make_client: MakeClient, auth: Auth
) -> None:
    """Nobody beat since the page was built: past its time it is not read again from
    Redis, but the names are joined again (a rename through the directory shows)."""
    client = await make_client(page_cache_s=0.2, profile_cache_s=0.2, **LONG_LIVED)
    admin = auth("root", scope="admin")
    await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    await beat(client, auth, "alice", "tab-aaaa1")
    first = await _page(client, auth)
    assert first["users"][0]["name"] == "Alice"
    await asyncio.sleep(0.3)  # past the page's and the profile's time: the same page
    assert await _page(client, auth) == first
    await _renamed_elsewhere(client)
    await _until_renamed_on_the_page(client, auth, 0.05)


async def test_the_cache_counts_only_the_bytes_of_the_pages_it_holds(
    make_client: MakeClient, auth: Auth
) -> None:
    """A reader still encoding a page that a newer one replaced (the room changed while
    it waited on Redis) must not add to the cache's bytes: they would never be taken off
    again, and over a long uptime the cache would keep ever fewer pages."""
    client = await make_client(**KEEP, **LONG_LIVED)
    cache = client.app[PAGES]
    await beat(client, auth, "user-01", "tab-00001")
    await _page(client, auth)  # kept, its JSON encoded
    ((key, kept),) = cache._kept.items()
    cache._drop(key)  # replaced meanwhile, as a join's rebuild does
    cache._body(kept, True)  # the late reader asks for msgpack
    await _page(client, auth)  # built and kept again
    held = sum(len(b) for page in cache._kept.values() for b in page.bodies.values())
    assert cache._bytes == held


async def test_a_rename_shows_on_a_page_read_all_along_within_the_profile_cache_time(
    make_client: MakeClient, auth: Auth
) -> None:
    """A room read continuously: its names are looked up again ahead of time in the
    background (the page never waits for the directory), yet a rename through another
    process shows in every page read that starts once ``PRESENCE_PROFILE_CACHE_S`` has
    passed since it; the page stays kept meanwhile (a page's time ends with its names')."""
    ttl = 0.5
    client = await make_client(page_cache_s=2.0, profile_cache_s=ttl, **LONG_LIVED)
    admin = auth("root", scope="admin")
    await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    await beat(client, auth, "alice", "tab-aaaa1")
    reads: list[tuple[float, str | None]] = []

    async def read_for(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            started = time.monotonic()
            page = await _page(client, auth)
            assert page["namesJoined"] is True
            reads.append((started, page["users"][0]["name"]))
            await asyncio.sleep(0.01)

    await read_for(3 * ttl)  # names looked up ahead of time, pages kept and checked
    assert {name for _, name in reads} == {"Alice"}
    await _renamed_elsewhere(client)
    renamed = time.monotonic()
    await read_for(3 * ttl)
    late = [name for started, name in reads if started >= renamed + ttl]
    assert late, "no read after the cache time"
    assert set(late) == {"Alicia"}


async def test_a_page_built_while_its_names_are_looked_up_again_is_kept_no_longer_than_they(
    make_client: MakeClient, auth: Auth
) -> None:
    """A page joins the names cached when it is built; a lookup it waits for (a user who
    just joined) may store fresher entries for the others meanwhile. The page is kept no
    longer than the names it holds, so a rename through another process still shows once
    ``PRESENCE_PROFILE_CACHE_S`` has passed."""
    ttl = 6.0
    client = await make_client(page_cache_s=10.0, profile_cache_s=ttl, **LONG_LIVED)
    admin = auth("root", scope="admin")
    await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    await client.put("/v1/users/carol", json={"name": "Carol"}, headers=admin)
    start = time.monotonic()  # alice's lookup starts after this
    await beat(client, auth, "alice", "tab-aaaa1")
    assert (await _page(client, auth))["users"][0]["name"] == "Alice"  # looked up, kept
    # another page of the room joins alice's cached name: read since her lookup, she is
    # looked up again ahead of time
    assert (await _page(client, auth, "?include=recent"))["users"][0]["name"] == "Alice"
    await _renamed_elsewhere(client)
    renamed = time.monotonic()
    # alice due for a lookup ahead of time (half her time up), still cached
    await asyncio.sleep(max(0.0, start + ttl / 2 + 0.3 - time.monotonic()))
    await beat(client, auth, "carol", "tab-cccc1")  # carol is not cached: the page waits
    await _page(client, auth)  # for one lookup, with alice's lookup ahead of time in it
    await asyncio.sleep(max(0.0, renamed + ttl + 0.3 - time.monotonic()))
    names = {u["userId"]: u["name"] for u in (await _page(client, auth))["users"]}
    assert names["alice"] == "Alicia"


async def test_a_page_read_all_along_outlives_its_names_time_while_they_stay_the_same(
    make_client: MakeClient, auth: Auth
) -> None:
    """Past the time of the profiles a kept page joined, the page is checked against the
    profiles cache (looked up again ahead of time meanwhile): the same names keep the page
    as it is, not built nor joined again; another name is joined in at once."""
    # the lookup ahead of time starts half the time before the names expire: a loop
    # stalled longer than that (a loaded machine) would join them again, rightly
    ttl = 1.0
    client = await make_client(page_cache_s=10.0, profile_cache_s=ttl, **LONG_LIVED)
    admin = auth("root", scope="admin")
    await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    await beat(client, auth, "alice", "tab-aaaa1")
    first = await _page(client, auth)
    cache = client.app[PAGES]
    (kept,) = cache._kept.values()
    until = time.monotonic() + 2.5 * ttl  # past the names' time twice
    while time.monotonic() < until:
        assert await _page(client, auth) == first
        await asyncio.sleep(0.02)
    assert list(cache._kept.values()) == [kept]  # the same page all along
    await _renamed_elsewhere(client)
    await _until_renamed_on_the_page(client, auth, 0.02)
