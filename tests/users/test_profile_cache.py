"""The per-process profile cache (``PRESENCE_PROFILE_CACHE_S``): names joined into
presence rows without a database query per page, and never older than this process's own
writes, nor than the cache time after another process's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from presence_svc.settings import ConfigError, Settings
from presence_svc.users.cache import MAX_REFRESH, CachedUsers
from presence_svc.users.directory import Profile, UsersDirectory
from tests.conftest import AppClient, MakeClient, opened_database

Auth = Callable[..., dict[str, str]]


class _Counting:
    """A real directory that counts the lookups that reach it (and can hold one open)."""

    def __init__(self, inner: UsersDirectory) -> None:
        self.inner = inner
        self.lookups = 0
        self.hold: asyncio.Event | None = None
        self.read = asyncio.Event()

    async def get_profiles(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        self.lookups += 1
        found = await self.inner.get_profiles(user_ids)
        self.read.set()
        if self.hold is not None:
            await self.hold.wait()
        return found

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_lookups_are_cached_and_writes_show_at_once(tmp_path: Path) -> None:
    async with opened_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        counting = _Counting(database.users)
        users = CachedUsers(counting, ttl_s=60)  # type: ignore[arg-type]
        await users.put_profile("alice", "Alice", None)
        assert {p.name for p in (await users.get_profiles(["alice", "bob"])).values()} == {"Alice"}
        assert counting.lookups == 1
        # within the cache time: no query, and bob's absence is remembered too
        for _ in range(5):
            assert set(await users.get_profiles(["bob", "alice"])) == {"alice"}
        assert counting.lookups == 1
        await users.put_profile("alice", "Alicia", "https://x.org/a.png")
        assert (await users.get_profile("alice")) == await database.users.get_profile("alice")
        assert (await users.get_profile("alice")).name == "Alicia"  # type: ignore[union-attr]
        await users.put_profile("bob", "Bob", None)
        assert (await users.get_profile("bob")).name == "Bob"  # type: ignore[union-attr]
        assert await users.delete_profile("alice")
        assert await users.get_profile("alice") is None
        await users.merge_profiles([Profile("carol", "Carol", None, 1)])
        assert (await users.get_profile("carol")).name == "Carol"  # type: ignore[union-attr]


async def test_a_lookup_overlapping_a_rename_does_not_keep_the_old_name(tmp_path: Path) -> None:
    async with opened_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        counting = _Counting(database.users)
        users = CachedUsers(counting, ttl_s=60)  # type: ignore[arg-type]
        await users.put_profile("alice", "Alice", None)
        held = counting.hold = asyncio.Event()
        slow = asyncio.create_task(users.get_profiles(["alice"]))
        await counting.read.wait()  # it has read "Alice" and waits
        counting.hold = None
        await users.put_profile("alice", "Alicia", None)
        assert (await users.get_profile("alice")).name == "Alicia"  # type: ignore[union-attr]
        held.set()
        assert (await slow)["alice"].name == "Alice"  # it answers what it read...
        lookups = counting.lookups
        # ...and stored nothing over the renamed entry
        assert (await users.get_profile("alice")).name == "Alicia"  # type: ignore[union-attr]
        assert counting.lookups == lookups


async def test_the_cache_is_bounded(tmp_path: Path) -> None:
    async with opened_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        users = CachedUsers(database.users, ttl_s=60, max_entries=100)
        for n in range(10):
            await users.get_profiles(f"user-{n}-{i}" for i in range(40))
            assert len(users._entries) <= 100
        await users.put_profile("late", "Late", None)
        assert (await users.get_profile("late")).name == "Late"  # type: ignore[union-attr]


async def test_a_rename_through_another_process_shows_within_the_cache_time(
    make_client: MakeClient, auth: Auth, tmp_path: Path
) -> None:
    """Two service processes on one database (as ``serve --processes 2``): a rename through
    one shows at once there, and in the other's presence list within the cache time."""
    ledger = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    one: AppClient = await make_client(ledger_url=ledger, profile_cache_s=0.5)
    two: AppClient = await make_client(ledger_url=ledger, profile_cache_s=0.5)
    admin = auth("root", scope="admin")
    await one.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    beat = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
    assert (await one.post("/v1/heartbeat", json=beat, headers=auth("alice"))).status == 200

    async def name_in(client: AppClient) -> str | None:
        response = await client.get("/v1/artifacts/doc-1/presence", headers=auth("bob"))
        assert response.status == 200
        body = await response.json()
        assert body["namesJoined"] is True
        [row] = body["users"]
        name: str | None = row["name"]
        return name

    assert await name_in(one) == "Alice"
    assert await name_in(two) == "Alice"
    await one.put("/v1/users/alice", json={"name": "Alicia"}, headers=admin)
    assert await name_in(one) == "Alicia"
    deadline = time.monotonic() + 10
    while await name_in(two) != "Alicia":
        assert time.monotonic() < deadline, "the other process kept the old name"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"PRESENCE_PROFILE_CACHE_S": "-1"}, "PRESENCE_PROFILE_CACHE_S"),
        ({"PRESENCE_PROFILE_CACHE_S": "61"}, "PRESENCE_PROFILE_CACHE_S"),
        ({"PRESENCE_PROFILE_CACHE_S": "soon"}, "PRESENCE_PROFILE_CACHE_S"),
        ({"PRESENCE_TOKEN_CACHE_SIZE": "-5"}, "PRESENCE_TOKEN_CACHE_SIZE"),
        ({"PRESENCE_TOKEN_CACHE_SIZE": "lots"}, "PRESENCE_TOKEN_CACHE_SIZE"),
    ],
)
def test_bad_cache_settings_are_rejected_by_name(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env(env)


def test_cache_settings_are_read() -> None:
    settings = Settings.from_env(
        {"PRESENCE_PROFILE_CACHE_S": "0", "PRESENCE_TOKEN_CACHE_SIZE": "100000"}
    )
    assert (settings.profile_cache_s, settings.token_cache_size) == (0.0, 100_000)
    assert (Settings().profile_cache_s, Settings().token_cache_size) == (2.0, 65_536)


async def test_without_the_cache_every_lookup_reads_the_database(tmp_path: Path) -> None:
    """``PRESENCE_PROFILE_CACHE_S=0``: as before the cache, a rename through another
    process shows at once."""
    async with opened_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        users = CachedUsers(database.users, ttl_s=0)
        other = CachedUsers(database.users, ttl_s=0)
        await users.put_profile("alice", "Alice", None)
        assert (await users.get_profile("alice")).name == "Alice"  # type: ignore[union-attr]
        await other.put_profile("alice", "Alicia", None)
        assert (await users.get_profile("alice")).name == "Alicia"  # type: ignore[union-attr]


class _Recording(_Counting):
    """``_Counting`` that also keeps the users each lookup asked for."""

    def __init__(self, inner: UsersDirectory) -> None:
        super().__init__(inner)
        self.asked: list[set[str]] = []

    async def get_profiles(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        ids = list(user_ids)
        self.asked.append(set(ids))
        return await super().get_profiles(ids)


async def test_names_read_all_along_are_looked_up_again_before_they_expire(
    tmp_path: Path,
) -> None:
    """A room read continuously keeps its names: once half their time is up they are
    looked up again in the background, and a read meanwhile answers from the cache at once
    (it does not wait for the database); a user nobody read since is not looked up again."""
    async with opened_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        recording = _Recording(database.users)
        users = CachedUsers(recording, ttl_s=4)  # type: ignore[arg-type]
        await database.users.put_profile("alice", "Alice", None)
        assert set(await users.get_profiles(["alice", "idle"])) == {"alice"}
        assert recording.asked == [{"alice", "idle"}]
        held = recording.hold = asyncio.Event()
        recording.read.clear()
        deadline = time.monotonic() + 30
        while not recording.read.is_set():  # read alice until the background lookup holds
            assert time.monotonic() < deadline, "no lookup ahead of time"
            assert set(await users.get_profiles(["alice"])) == {"alice"}
            await asyncio.sleep(0.02)
        assert recording.asked[1] == {"alice"}  # not the idle user
        # the lookup ahead is held in the database: a read answers without waiting for it
        # (the entry is still in its time: 4 s from the first lookup, due again after 2 s)
        assert users._entries["alice"][0] > time.monotonic()
        read = users.get_profiles(["alice"])
        with pytest.raises(StopIteration) as answered:
            read.send(None)  # done at once: no await on the lookup
        assert set(answered.value.value) == {"alice"}
        held.set()


async def test_a_name_read_all_along_is_never_older_than_the_cache_time(tmp_path: Path) -> None:
    """With the lookups ahead of time, a rename through another process still shows in
    every read that starts once the cache time has passed since the rename."""
    async with opened_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        ttl = 1.0
        users = CachedUsers(database.users, ttl_s=ttl)
        other = database.users  # another process's writes reach only the database
        await other.put_profile("alice", "Alice", None)
        reads: list[tuple[float, str | None]] = []

        async def read_for(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                started = time.monotonic()
                profile = await users.get_profile("alice")
                reads.append((started, profile.name if profile else None))
                await asyncio.sleep(0.01)

        await read_for(1.7 * ttl)  # past a lookup ahead of time
        await other.put_profile("alice", "Alicia", None)
        renamed = time.monotonic()
        await read_for(2 * ttl)
        late = [name for started, name in reads if started >= renamed + ttl]
        assert late, "no read after the cache time"
        assert set(late) == {"Alicia"}


async def test_entries_are_walked_for_lookups_ahead_at_most_every_quarter_of_their_time(
    tmp_path: Path,
) -> None:
    """A cache stored into all along has entries due at every moment: it is walked for
    them at most every quarter of the time ahead, not at every read (each walk visits
    every entry in the window); the most one background lookup takes is bounded."""
    async with opened_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        recording = _Recording(database.users)
        users = CachedUsers(recording, ttl_s=2)  # type: ignore[arg-type]
        ids = [f"user-{n}" for n in range(MAX_REFRESH + 100)]
        await users.get_profiles(ids)
        await users.get_profiles(ids)  # all read since their lookup
        users._refresh_at = 0.0  # as if due now: the walk looks up the due ones again
        now = time.monotonic()
        users._refresh(now + 1.5)  # three quarters of their time gone
        assert users._refresh_at >= now + 1.5 + 0.25  # the next walk no sooner
        deadline = time.monotonic() + 30
        while len(recording.asked) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert len(recording.asked[1]) == MAX_REFRESH  # the rest at the next walk


async def test_a_closed_cache_looks_nothing_up_ahead_of_time(tmp_path: Path) -> None:
    """A kept page's names are looked up again ahead of time on a timer; once the app
    closes the cache (before its database), the timer no longer fires a lookup (one after
    the database closed would open it again)."""
    async with opened_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        counting = _Counting(database.users)
        users = CachedUsers(counting, ttl_s=0.4)  # type: ignore[arg-type]
        await database.users.put_profile("alice", "Alice", None)
        await users.get_profiles(["alice"])
        assert users.held(["alice"]) is not None  # read by a page: due again ahead of time
        await users.aclose()
        await asyncio.sleep(0.8)
        assert counting.lookups == 1
