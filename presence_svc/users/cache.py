"""A per-process cache of the users directory, in front of the database.

Every presence page, event-stream ``sync`` and ``join`` joins names in; without a cache
each of them is a database query (on SQLite, a hop to the file's one thread), which cost
more than the rest of the page. Profiles (and the absence of one) are kept for
``PRESENCE_PROFILE_CACHE_S``. A rename or erasure through this process updates its cache
at once; another process (``serve --processes N``, another host) sees it when its entry
expires, so names there may be that many seconds old. Erasure also removes the user from
presence and view data, where the rows that would show the name come from. Once a lookup
finds the database down, lookups bypass the cache until one succeeds.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence

from presence_svc.users.directory import DatabaseUnavailable, Profile, UsersDirectory
from presence_svc.users.privacy import Privacy

__all__ = ["MAX_ENTRIES", "CachedUsers"]

MAX_ENTRIES = 65_536
"""Users kept at most (a profile is ~200 B): beyond, the oldest half is dropped."""


class CachedUsers:
    """``UsersDirectory`` with ``get_profiles`` answered from memory for ``ttl_s``."""

    def __init__(self, inner: UsersDirectory, ttl_s: float, max_entries: int = MAX_ENTRIES) -> None:
        self._inner = inner
        self._ttl_s = ttl_s
        self._max = max_entries
        self._entries: dict[str, tuple[float, Profile | None]] = {}
        self._down = False
        """Set by a lookup the database refused, cleared by one it answered: meanwhile
        every lookup asks the database, so an outage shows (``namesJoined: false``) as it
        did without a cache, not only for the users who happen not to be cached."""
        self._writes = 0
        """Counts this process's writes: a lookup that overlapped one stores nothing, so an
        answer read before a rename cannot overwrite the renamed entry."""

    @property
    def inner(self) -> UsersDirectory:
        return self._inner

    async def get_profile(self, user_id: str) -> Profile | None:
        return (await self.get_profiles((user_id,))).get(user_id)

    async def get_profiles(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        if self._ttl_s <= 0:
            return await self._inner.get_profiles(user_ids)
        if self._down:
            ids, writes = list(user_ids), self._writes
            answered = await self._lookup(ids)
            self._store(ids, answered, writes)
            return answered
        now = time.monotonic()
        entries = self._entries
        found: dict[str, Profile] = {}
        missing: list[str] = []
        for user_id in user_ids:
            entry = entries.get(user_id)
            if entry is not None and entry[0] > now:
                if entry[1] is not None:
                    found[user_id] = entry[1]
            else:
                missing.append(user_id)
        if not missing:
            return found
        writes = self._writes
        fetched = await self._lookup(missing)
        found.update(fetched)
        self._store(missing, fetched, writes)
        return found

    async def _lookup(self, user_ids: list[str]) -> dict[str, Profile]:
        try:
            found = await self._inner.get_profiles(user_ids)
        except DatabaseUnavailable:
            self._down = True
            raise
        self._down = False
        return found

    def _store(self, user_ids: list[str], fetched: dict[str, Profile], writes: int) -> None:
        """Keep what a lookup found, unless a write of this process overlapped it."""
        if writes != self._writes:
            return
        self._make_room(len(user_ids))
        expires = time.monotonic() + self._ttl_s
        entries = self._entries
        for user_id in user_ids:
            entries[user_id] = (expires, fetched.get(user_id))

    def _make_room(self, wanted: int) -> None:
        entries = self._entries
        if len(entries) + wanted <= self._max:
            return
        # Oldest stored first (dicts keep insertion order; a refresh re-inserts).
        drop = max(len(entries) // 2, len(entries) + wanted - self._max)
        for user_id in list(entries)[:drop]:
            del entries[user_id]

    def _forget(self, user_ids: Iterable[str]) -> None:
        self._writes += 1
        for user_id in user_ids:
            self._entries.pop(user_id, None)

    async def put_profile(self, user_id: str, name: str, avatar_url: str | None) -> Profile:
        self._forget((user_id,))
        try:
            return await self._inner.put_profile(user_id, name, avatar_url)
        finally:
            self._forget((user_id,))

    async def delete_profile(self, user_id: str) -> bool:
        self._forget((user_id,))
        try:
            return await self._inner.delete_profile(user_id)
        finally:
            self._forget((user_id,))

    def iter_profiles(self, batch: int = 1000) -> AsyncIterator[Profile]:
        return self._inner.iter_profiles(batch)

    async def merge_profiles(self, profiles: Sequence[Profile]) -> int:
        self._forget(p.user_id for p in profiles)
        try:
            return await self._inner.merge_profiles(profiles)
        finally:
            self._forget(p.user_id for p in profiles)

    # Privacy settings are not cached here: the privacy mirror (live/privacy.py) is their
    # per-process copy.
    async def get_privacy(self, user_id: str) -> Privacy:
        return await self._inner.get_privacy(user_id)

    async def update_privacy(
        self, user_id: str, view_history: str | None, presence: str | None, at_ms: int
    ) -> Privacy:
        return await self._inner.update_privacy(user_id, view_history, presence, at_ms)

    async def hidden_privacy(self) -> list[Privacy]:
        return await self._inner.hidden_privacy()
