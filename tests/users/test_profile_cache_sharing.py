"""The profile cache's shared lookups: the users missing in one loop turn are looked up in
one query, a user already being looked up is not asked for twice, and neither a caller
going away, nor an outage, nor a rename during a lookup gives anyone a wrong answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import pytest

from presence_svc.users.cache import CachedUsers
from presence_svc.users.directory import DatabaseUnavailable, Profile, UsersDirectory
from tests.conftest import opened_database


class _Counting:
    """A real directory that counts the lookups reaching it, can hold them open, and can
    fail them as an outage would."""

    def __init__(self, inner: UsersDirectory) -> None:
        self.inner = inner
        self.asked: list[list[str]] = []
        self.hold: asyncio.Event | None = None
        self.down = False
        self.arrived = asyncio.Event()
        """Set by each lookup as it arrives (cleared by the test)."""

    async def get_profiles(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        ids = list(user_ids)
        self.asked.append(ids)
        self.arrived.set()
        found = await self.inner.get_profiles(ids)
        if self.hold is not None:
            await self.hold.wait()
        if self.down:
            raise DatabaseUnavailable("the database is down")
        return found

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def _arrival(counting: _Counting) -> None:
    await asyncio.wait_for(counting.arrived.wait(), 10)
    counting.arrived.clear()


def _names(found: dict[str, Profile]) -> dict[str, str]:
    return {user: p.name for user, p in found.items()}


async def test_pages_missing_users_together_share_one_lookup(tmp_path: Path) -> None:
    async with opened_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        for user in ("ann", "bob", "cat"):
            await database.users.put_profile(user, user.title(), None)
        counting = _Counting(database.users)
        users = CachedUsers(counting, ttl_s=60)  # type: ignore[arg-type]
        pages = [["ann", "bob"], ["bob", "cat", "dan"], ["dan"], ["ann", "cat"]] * 8
        answers = await asyncio.gather(*(users.get_profiles(page) for page in pages))
        assert len(counting.asked) == 1
        assert sorted(counting.asked[0]) == ["ann", "bob", "cat", "dan"]  # each once
        for page, found in zip(pages, answers, strict=True):
            assert _names(found) == {u: u.title() for u in page if u != "dan"}


async def test_a_user_being_looked_up_is_not_asked_for_again(tmp_path: Path) -> None:
    async with opened_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        await database.users.put_profile("ann", "Ann", None)
        counting = _Counting(database.users)
        users = CachedUsers(counting, ttl_s=60)  # type: ignore[arg-type]
        held = counting.hold = asyncio.Event()
        first = asyncio.create_task(users.get_profiles(["ann"]))
        await _arrival(counting)
        later = asyncio.create_task(users.get_profiles(["ann", "bob"]))  # bob: a new lookup
        await _arrival(counting)
        assert counting.asked == [["ann"], ["bob"]]
        gone = asyncio.create_task(users.get_profiles(["ann"]))
        for _ in range(3):
            await asyncio.sleep(0)  # it waits for the first lookup now
        assert not gone.done()
        gone.cancel()  # a caller going away does not cancel the lookup the others wait for
        counting.hold = None
        held.set()
        assert _names(await first) == {"ann": "Ann"}
        assert _names(await later) == {"ann": "Ann"}
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert _names(await users.get_profiles(["ann", "bob"])) == {"ann": "Ann"}
        assert len(counting.asked) == 2  # answered from the cache since


async def test_a_rename_during_a_lookup_shows_to_callers_who_come_after_it(
    tmp_path: Path,
) -> None:
    async with opened_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        counting = _Counting(database.users)
        users = CachedUsers(counting, ttl_s=60)  # type: ignore[arg-type]
        await users.put_profile("ann", "Ann", None)
        held = counting.hold = asyncio.Event()
        before = asyncio.create_task(users.get_profiles(["ann"]))
        await _arrival(counting)
        counting.hold = None
        await users.put_profile("ann", "Annie", None)
        assert _names(await users.get_profiles(["ann"])) == {"ann": "Annie"}
        held.set()
        assert _names(await before) == {"ann": "Ann"}  # what it read, before the rename
        assert _names(await users.get_profiles(["ann"])) == {"ann": "Annie"}


async def test_an_outage_during_a_shared_lookup_reaches_every_caller(tmp_path: Path) -> None:
    async with opened_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        await database.users.put_profile("ann", "Ann", None)
        counting = _Counting(database.users)
        users = CachedUsers(counting, ttl_s=60)  # type: ignore[arg-type]
        counting.down = True
        answers = await asyncio.gather(
            *(users.get_profiles(["ann"]) for _ in range(5)), return_exceptions=True
        )
        assert len(counting.asked) == 1
        assert all(isinstance(a, DatabaseUnavailable) for a in answers)
        counting.down = False  # back: asked again (nothing was kept from the outage)
        assert _names(await users.get_profiles(["ann"])) == {"ann": "Ann"}
        assert len(counting.asked) == 2
