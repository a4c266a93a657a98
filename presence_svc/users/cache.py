"""A per-process cache of the users directory, in front of the database.

Every presence page, event-stream ``sync`` and ``join`` joins names in; without a cache
each of them is a database query (on SQLite, a hop to the file's one thread), which cost
more than the rest of the page. Profiles (and the absence of one) are kept for
``PRESENCE_PROFILE_CACHE_S``. A rename or erasure through this process updates its cache
at once; another process (``serve --processes N``, another host) sees it when its entry
expires, so names there may be that many seconds old. Erasure also removes the user from
presence and view data, where the rows that would show the name come from. Once a lookup
finds the database down, lookups bypass the cache until one succeeds.

The users missing from the cache in one event-loop turn are looked up together, in one
query (on SQLite, one hop to its thread), and a user already being looked up is not asked
for again: when entries expire under load, the pages of that moment (64 of them for the
same room) share one query instead of each making its own.

Entries that were read are looked up again in the background once half their time is up
(a lookup of many users at once, chunked by the backend): a room read continuously keeps
its names without a page ever waiting for the database, and a page kept by the page cache
past its time finds its names still cached (``http/page_cache.py``). An entry is never
older than ``PRESENCE_PROFILE_CACHE_S`` (counted from when its lookup was sent); an entry
nobody read since its lookup is not looked up again, so idle users fall out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence

from presence_svc.users.directory import DatabaseUnavailable, Profile, UsersDirectory
from presence_svc.users.privacy import Privacy

__all__ = ["MAX_ENTRIES", "MAX_REFRESH", "REFRESH_AHEAD", "CachedUsers"]

MAX_ENTRIES = 65_536
"""Users kept at most (a profile is ~200 B): beyond, the oldest half is dropped."""
REFRESH_AHEAD = 0.5
"""An entry read since its lookup is looked up again once this share of its time is up."""
MAX_REFRESH = 4096
"""Users looked up again in one background lookup at most (the rest in the next one)."""


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
        self._asked: list[str] = []
        """Users missing this loop turn, looked up together at its end (``_ask``)."""
        self._batch: asyncio.Future[dict[str, Profile]] | None = None
        """The lookup ``_asked`` joins."""
        self._inflight: dict[str, asyncio.Future[dict[str, Profile]]] = {}
        """User -> the lookup that will answer for them (sent or about to be)."""
        self._sending: set[asyncio.Task[None]] = set()
        self._used: set[str] = set()
        """Users answered from the cache since their entry's lookup: looked up again ahead
        of time (``_refresh``)."""
        self._refresh_at = 0.0
        """When (``time.monotonic()``) the oldest entry is due to be looked up again."""
        self._wake: asyncio.TimerHandle | None = None
        """Walks the entries at ``_refresh_at`` while some that were ``held`` wait for it:
        nothing else may read the cache before they expire."""
        self._wake_when = 0.0
        self._closed = False
        """Set by ``aclose``: nothing is looked up ahead of time any more."""
        self._walked = 0.0
        """When ``_refresh`` last walked the entries."""

    @property
    def inner(self) -> UsersDirectory:
        return self._inner

    @property
    def generation(self) -> int:
        """Changes with every write through this process (a rename, an erasure): what was
        joined before it may be out of date."""
        return self._writes

    def held(self, user_ids: Sequence[str]) -> tuple[list[Profile | None], float] | None:
        """The cached profiles of ``user_ids`` (None: the user has none) and until when
        (``time.monotonic()``) all of them stay valid, without a lookup; None when one is
        not cached now (or no cache, or the database is down). They count as read, so
        they are looked up again ahead of time (``_refresh``): something built from them
        (a kept presence page) finds them cached again when they expire."""
        if self._ttl_s <= 0 or self._down:
            return None
        now = time.monotonic()
        entries = self._entries
        until = now + self._ttl_s
        found: list[Profile | None] = []
        for user_id in user_ids:
            entry = entries.get(user_id)
            if entry is None or entry[0] <= now:
                return None
            if entry[0] < until:
                until = entry[0]
            found.append(entry[1])
        self._used.update(user_ids)
        ahead = self._ttl_s * REFRESH_AHEAD
        # due when they are, but walked no more often than ``_refresh`` walks: one lookup
        # for the many pages coming due within a quarter of the time ahead
        due = max(until - ahead, self._walked + ahead / 4)
        if due < self._refresh_at:
            self._refresh_at = due
        if now >= self._refresh_at:
            self._refresh(now)
        else:
            self._wake_at(self._refresh_at)
        return found, until

    async def aclose(self) -> None:
        """Stop looking up ahead of time, and wait out such lookups under way: before the
        directory's database closes (a lookup after that would open it again)."""
        self._closed = True
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        sending = list(self._sending)
        for task in sending:
            task.cancel()
        await asyncio.gather(*sending, return_exceptions=True)

    def _wake_at(self, when: float) -> None:
        if self._closed:
            return
        wake = self._wake
        if wake is not None and self._wake_when <= when:
            return
        if wake is not None:
            wake.cancel()
        self._wake_when = when  # time.monotonic(), which the loop's clock need not be
        delay = max(0.0, when - time.monotonic())
        self._wake = asyncio.get_running_loop().call_later(delay, self._woken)

    def _woken(self) -> None:
        self._wake = None
        self._refresh(time.monotonic())
        if self._used:
            self._wake_at(self._refresh_at)

    async def get_profile(self, user_id: str) -> Profile | None:
        return (await self.get_profiles((user_id,))).get(user_id)

    async def get_profiles(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        if self._ttl_s <= 0:
            return await self._inner.get_profiles(user_ids)
        if self._down:
            ids, writes, sent = list(user_ids), self._writes, time.monotonic()
            answered = await self._lookup(ids)
            self._store(ids, answered, writes, sent)
            return answered
        now = time.monotonic()
        if now >= self._refresh_at:
            self._refresh(now)
        entries = self._entries
        used = self._used.add
        found: dict[str, Profile] = {}
        missing: list[str] = []
        for user_id in user_ids:
            entry = entries.get(user_id)
            if entry is not None and entry[0] > now:
                used(user_id)
                if entry[1] is not None:
                    found[user_id] = entry[1]
            else:
                missing.append(user_id)
        if missing:
            await self._wait_for(missing, found)
        return found

    async def _wait_for(self, missing: list[str], found: dict[str, Profile]) -> None:
        """Look ``missing`` up (joining lookups under way) and add what is found."""
        lookups: list[asyncio.Future[dict[str, Profile]]] = []
        for user_id in missing:
            lookup = self._inflight.get(user_id) or self._ask(user_id)
            if lookup not in lookups:  # one or two of them
                lookups.append(lookup)
        for lookup in lookups:
            # shielded: a caller going away does not cancel the others' lookup
            fetched = await asyncio.shield(lookup)
            for user_id in missing:
                profile = fetched.get(user_id)
                if profile is not None:
                    found[user_id] = profile

    def _refresh(self, now: float) -> None:
        """Look up again, in the background, the entries read since their lookup whose
        time is half up; drop the expired ones nobody read. Entries are in the order they
        were stored, so the oldest come first and the walk stops at the first not due.
        Walked at most every quarter of the time ahead (entries not read stay in the
        window, walked again): an entry read in time is still looked up before it
        expires, and a cache stored into all along is not walked at every read."""
        ahead = self._ttl_s * REFRESH_AHEAD
        due_by = now + ahead
        used, inflight = self._used, self._inflight
        again: list[str] = []
        gone: list[str] = []
        next_at = now + ahead  # nothing stored yet, or all taken below
        for user_id, (expires, _) in self._entries.items():
            if expires > due_by:
                next_at = expires - ahead
                break
            if user_id in used:
                if user_id not in inflight:
                    again.append(user_id)
                    if len(again) >= MAX_REFRESH:
                        next_at = now  # the rest at the next walk
                        break
            elif expires <= now:
                gone.append(user_id)
        self._refresh_at = max(next_at, now + ahead / 4)
        self._walked = now
        for user_id in gone:
            del self._entries[user_id]
        if again and not self._closed:
            # a batch of their own: a page waiting for a user just joined does not wait
            # for up to MAX_REFRESH lookups ahead of time as well
            loop = asyncio.get_running_loop()
            batch: asyncio.Future[dict[str, Profile]] = loop.create_future()
            batch.add_done_callback(_retrieved)
            for user_id in again:
                used.discard(user_id)
                inflight[user_id] = batch
            self._start(batch, again)

    def _ask(self, user_id: str) -> asyncio.Future[dict[str, Profile]]:
        """The lookup of this loop turn, with ``user_id`` in it."""
        batch = self._batch
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._batch = loop.create_future()
            batch.add_done_callback(_retrieved)
            loop.call_soon(self._send)
        self._asked.append(user_id)
        self._inflight[user_id] = batch
        return batch

    def _send(self) -> None:
        batch, asked = self._batch, self._asked
        self._batch, self._asked = None, []
        if batch is not None:
            self._start(batch, asked)

    def _start(self, batch: asyncio.Future[dict[str, Profile]], asked: list[str]) -> None:
        task = asyncio.get_running_loop().create_task(self._fetch(batch, asked))
        self._sending.add(task)  # a reference until it is done
        task.add_done_callback(self._sending.discard)

    async def _fetch(self, batch: asyncio.Future[dict[str, Profile]], asked: list[str]) -> None:
        writes, sent = self._writes, time.monotonic()
        try:
            fetched = await self._lookup(asked)
        except BaseException as exc:
            self._done(batch, asked)
            if not batch.done():
                batch.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._store(asked, fetched, writes, sent)
        self._done(batch, asked)
        if not batch.done():
            batch.set_result(fetched)

    def _done(self, batch: asyncio.Future[dict[str, Profile]], asked: list[str]) -> None:
        inflight = self._inflight
        for user_id in asked:
            if inflight.get(user_id) is batch:
                del inflight[user_id]

    async def _lookup(self, user_ids: list[str]) -> dict[str, Profile]:
        try:
            found = await self._inner.get_profiles(user_ids)
        except DatabaseUnavailable:
            self._down = True
            raise
        self._down = False
        return found

    def _store(
        self, user_ids: list[str], fetched: dict[str, Profile], writes: int, sent: float
    ) -> None:
        """Keep what a lookup sent at ``sent`` found (for the cache time from then, so no
        entry is older than that), unless a write of this process overlapped it. Stored
        last, in the order of their time: ``_refresh`` walks the oldest first."""
        if writes != self._writes:
            return
        self._make_room(len(user_ids))
        expires = sent + self._ttl_s
        entries = self._entries
        for user_id in user_ids:
            entries.pop(user_id, None)
            entries[user_id] = (expires, fetched.get(user_id))

    def _make_room(self, wanted: int) -> None:
        entries = self._entries
        if len(entries) + wanted <= self._max:
            return
        # Oldest stored first (dicts keep insertion order; a refresh re-inserts).
        drop = max(len(entries) // 2, len(entries) + wanted - self._max)
        for user_id in list(entries)[:drop]:
            del entries[user_id]
            self._used.discard(user_id)

    def _forget(self, user_ids: Iterable[str]) -> None:
        self._writes += 1
        for user_id in user_ids:
            self._entries.pop(user_id, None)
            self._used.discard(user_id)
            # a lookup sent before this write answers its own callers only: later ones
            # ask again, so they see the write
            self._inflight.pop(user_id, None)

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


def _retrieved(future: asyncio.Future[dict[str, Profile]]) -> None:
    """Marks a lookup's error as seen: every caller waiting for it has it raised, and one
    whose callers all went away is not an error worth a warning."""
    if not future.cancelled():
        future.exception()
