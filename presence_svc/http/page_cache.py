"""Presence pages kept per process, so the readers of one room share one build.

A page (``GET /v1/artifacts/{id}/presence``, without ``include=recent``) costs a script
reading the room, its rows built, the names joined and the answer encoded: in a room of
20 000 readers all ask for the same first page. A built page is kept, encoded, with the
artifact's page mark it was built at (``lua/lib/pagemark.lua``: every presence writer run
that may change a page changes the mark) and the first deadline of its sessions. The next
reader still asks Redis, after it arrived: the mark and Redis's clock (two plain commands
in the loop turn's batch, ``PresenceStore.page_holds``). While the mark holds no deadline
moves earlier, so before that first deadline the kept bytes are sent again; a moved mark
builds the page again; past that deadline the page script is asked with the kept mark (it
answers an empty string if no session timed out, else a new page). So a write answered
before a read shows in it at once, on any process (processes that disagree on the online
timeouts could move a deadline earlier under one mark: such a timeout then shows once the
page's time is up). Only ``lastSeen`` times can lag (fast-path heartbeats move them
without a new mark), by ``PRESENCE_PAGE_CACHE_S`` at most. Past that time the script is
asked, with the time the page was built, whether any session beat since: if none did,
the page holds, lastSeen times included, and only the names are joined again (a quiet
room's page, read every few seconds, is not read from Redis and decoded again each time).

A page's names are checked against the profiles cache once the profiles it joined expire
(``CachedUsers.held``, which also has them looked up again in the background ahead of
time): the same names keep the page, other or uncached ones join the names again (its
Redis part, and when that is checked, unchanged). A page is not kept past a write through
this process's directory (``CachedUsers.generation``), so names are as fresh as without
it; a user who turned invisible since is left out by building again; a page without
names (the directory down) is not kept, nor one the privacy mirror took a user out of
(they may turn visible again without a write in Redis). While one page is being built,
other readers of it wait for that build and then check its mark, instead of each building
their own.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from presence_svc.http.wire import JSON, MSGPACK, encode_body
from presence_svc.live.privacy import PrivacyMirror
from presence_svc.live.rows import presence_out, without_hidden
from presence_svc.live.store import PresencePage, PresenceStore
from presence_svc.schemas import PresenceOut
from presence_svc.users.cache import CachedUsers
from presence_svc.users.directory import Profile, UsersDirectory

__all__ = ["MAX_BYTES", "MAX_PAGES", "PageCache"]

MAX_PAGES = 4096
"""Pages kept at most per process: beyond, the expired ones and then the oldest half are
dropped."""
MAX_BYTES = 32 * 1024 * 1024
"""Encoded answers kept at most per process (a page of 100 rows is ~18 KB as JSON, one of
500 some 90 KB), dropped the same way: with the decoded rows kept beside them twice (the
answer's, to encode the other format, and the page's, to join names again), a process
holds some 150 MB of pages at worst."""

_SPREAD = 0.2
"""A kept page's time is drawn between (1 - this) and 1 of ``PRESENCE_PAGE_CACHE_S``."""
_Key = tuple[str, int, str | None, bool]
"""artifact id, limit, cursor, sessions listed."""


@dataclass(slots=True)
class _Kept:
    mark: str
    expires: float
    """Until when (``time.monotonic()``) its Redis part is answered from the mark alone
    (``page_holds``); past it ``page_since`` is asked."""
    names_until: float
    """Until when the profiles it joined stay cached; past it ``CachedUsers.held`` tells
    whether joining again would show the same names."""
    names: list[tuple[str | None, str | None]]
    """Each row's name and avatar as shown."""
    generation: int
    privacy: int
    """The privacy mirror's ``changes`` when it was built (none of its users was hidden)."""
    user_ids: tuple[str, ...]
    page: PresencePage
    """What it was built from (``page_since`` asks whether it still holds)."""
    out: PresenceOut
    bodies: dict[bool, bytes] = field(default_factory=dict)
    """Encoded answer, by ``wants_msgpack``."""
    held: bool = False
    """In the cache now: its bodies count towards the cache's bytes only while it is (a
    reader may still encode one after it was replaced or dropped)."""


class PageCache:
    """Built presence pages by artifact, limit, cursor and listing, for ``ttl_s`` at most."""

    def __init__(
        self, ttl_s: float, max_pages: int = MAX_PAGES, max_bytes: int = MAX_BYTES
    ) -> None:
        self._ttl_s = ttl_s
        self._max = max_pages
        self._max_bytes = max_bytes
        self._bytes = 0
        self._kept: dict[_Key, _Kept] = {}
        self._building: dict[_Key, asyncio.Future[None]] = {}

    async def answer(
        self,
        as_msgpack: bool,
        store: PresenceStore,
        users: UsersDirectory,
        privacy: PrivacyMirror,
        artifact_id: str,
        limit: int,
        cursor: str | None,
        listing: bool,
    ) -> tuple[bytes, str]:
        """The presence page's answer (its body and media type), from a kept page while its
        mark holds."""
        if self._ttl_s <= 0 or not isinstance(users, CachedUsers):
            built = await store.page(artifact_id, limit, cursor, sessions=listing)
            out = await presence_out(users, without_hidden(built, privacy.presence_hidden))
            return _response(encode_body(out, as_msgpack), as_msgpack)
        key = (artifact_id, limit, cursor, listing)
        building = self._building.get(key)
        if building is not None:
            # a reader of the same page is building it: wait, then check its mark
            await asyncio.shield(building)
        kept = self._valid(key, users.generation)
        if kept is not None:
            # past the names' time, other names or uncached ones (``names_until`` 0) are
            # joined again, its Redis part checked as ever
            _check_names(users, kept)
        page: PresencePage | None = None
        expires = 0.0
        same: _Kept | None = None
        """A kept page past its time that still holds, lastSeen times included: only the
        names are joined again."""
        if kept is not None:
            found = await self._check(store, privacy, kept, artifact_id, limit, cursor, listing)
            names_hold = kept.names_until > 0
            if found is True and names_hold:
                return _response(self._body(kept, as_msgpack), as_msgpack)
            if found is True:
                same, expires = kept, kept.expires  # its Redis part holds as before
            elif isinstance(found, PresencePage):
                page = found
            elif found is kept and names_hold and kept.generation == users.generation:
                # its names hold too: kept as it is, its Redis part checked now
                kept.expires = self._expiry()
                return _response(self._body(kept, as_msgpack), as_msgpack)
            elif found is kept:
                same = kept
                expires = self._expiry()  # checked now: lastSeen too
        done = None
        if key not in self._building:
            done = self._building[key] = asyncio.get_running_loop().create_future()
        try:
            args = (artifact_id, limit, cursor, listing)
            body = await self._build(
                key, store, users, privacy, args, as_msgpack, page, same, expires
            )
            return _response(body, as_msgpack)
        finally:
            if done is not None:
                del self._building[key]
                done.set_result(None)

    async def _build(
        self,
        key: _Key,
        store: PresenceStore,
        users: CachedUsers,
        privacy: PrivacyMirror,
        args: tuple[str, int, str | None, bool],
        as_msgpack: bool,
        page: PresencePage | None,
        same: _Kept | None,
        expires: float,
    ) -> bytes:
        """The answer's body from ``page`` (None: read it now), or from ``same`` with its
        names joined again (its Redis part held until ``expires``); kept when it may be."""
        artifact_id, limit, cursor, listing = args
        if same is not None:
            page = same.page
        elif page is None:
            page = await store.page(artifact_id, limit, cursor, sessions=listing)
        generation, privacy_changes = users.generation, privacy.changes
        shown = without_hidden(page, privacy.presence_hidden)
        ids = tuple(row.user_id for row in shown.rows)
        if same is None:
            expires = self._expiry()
        out = await presence_out(users, shown)
        if same is not None and out == same.out:
            body = self._body(same, as_msgpack)  # the same names: the same bytes
        else:
            body = encode_body(out, as_msgpack)
        # not kept: a page the mirror took users out of (one of them may turn visible
        # again with no write in Redis) or without names
        if shown.mark and shown is page and out.names_joined:
            # what the cache holds now may be fresher than what the join read: the page
            # keeps those names only if they are the ones it shows
            names = [(user.name, user.avatar_url) for user in out.users]
            names_until = _held_until(users, ids, names)
            if generation == users.generation and names_until > 0:
                bodies = {as_msgpack: body}
                kept = _Kept(
                    shown.mark,
                    expires,
                    names_until,
                    names,
                    generation,
                    privacy_changes,
                    ids,
                    shown,
                    out,
                    bodies,
                )
                self._keep(key, kept)
        return body

    async def _check(
        self,
        store: PresenceStore,
        privacy: PrivacyMirror,
        kept: _Kept,
        artifact_id: str,
        limit: int,
        cursor: str | None,
        listing: bool,
    ) -> PresencePage | _Kept | bool:
        """Whether ``kept`` still holds: True (send it), a new page, ``kept`` itself (past
        its time, it holds lastSeen times included: join the names again), or False
        (build it again)."""
        if kept.expires > time.monotonic():
            holds = await store.page_holds(artifact_id, kept.page)
            if holds is False:
                return False
            if holds is None:  # past its first deadline: the script looks at the sessions
                page = await store.page_unless(
                    artifact_id, limit, cursor, kept.mark, sessions=listing
                )
                if page is not None:
                    return page
            return not _hides_any(privacy, kept)
        found = await store.page_since(artifact_id, limit, cursor, kept.page, sessions=listing)
        if isinstance(found, PresencePage):
            return found
        return kept if found and not _hides_any(privacy, kept) else False

    def _expiry(self) -> float:
        """When a page built or checked now is checked again: 0.8 to 1 of the cache time,
        drawn, so the pages of a burst of first reads (a room of readers, a restart) do
        not all come due together again every time (each a script call at once: a step
        in the tail), and drift apart instead."""
        return time.monotonic() + self._ttl_s * (1.0 - _SPREAD * random.random())

    def _body(self, kept: _Kept, as_msgpack: bool) -> bytes:
        body = kept.bodies.get(as_msgpack)
        if body is None:
            body = kept.bodies[as_msgpack] = encode_body(kept.out, as_msgpack)
            if kept.held:
                self._bytes += len(body)
        return body

    def _valid(self, key: _Key, generation: int) -> _Kept | None:
        """The page kept for ``key``, past its time too (``page_since`` tells whether it
        still holds), unless a write through this process's directory came since."""
        kept = self._kept.get(key)
        if kept is None:
            return None
        if kept.generation != generation:
            self._drop(key)
            return None
        return kept

    def _keep(self, key: _Key, kept: _Kept) -> None:
        pages = self._kept
        self._drop(key)  # re-inserted last: the oldest stay first
        size = sum(map(len, kept.bodies.values()))
        if len(pages) >= self._max or self._bytes + size > self._max_bytes:
            now = time.monotonic()
            for old in [k for k, v in pages.items() if v.expires <= now]:
                self._drop(old)
            if len(pages) >= self._max or self._bytes + size > self._max_bytes:
                for old in list(pages)[: len(pages) // 2 + 1]:
                    self._drop(old)
        pages[key] = kept
        kept.held = True
        self._bytes += size

    def _drop(self, key: _Key) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            kept.held = False
            self._bytes -= sum(map(len, kept.bodies.values()))


def _check_names(users: CachedUsers, kept: _Kept) -> None:
    """Past the time of the profiles ``kept`` joined, asks the cache (no lookup) whether a
    join would show the same names now: ``names_until`` moves on if so, else is 0."""
    if kept.names_until <= time.monotonic():
        kept.names_until = _held_until(users, kept.user_ids, kept.names)


def _held_until(
    users: CachedUsers, ids: tuple[str, ...], names: list[tuple[str | None, str | None]]
) -> float:
    """Until when the cache holds exactly ``names`` (name, avatar) for ``ids``; 0 when it
    holds other ones or not all of them."""
    held = users.held(ids)
    return 0.0 if held is None or _shown(held[0]) != names else held[1]


def _shown(profiles: list[Profile | None]) -> list[tuple[str | None, str | None]]:
    return [(None, None) if p is None else (p.name, p.avatar_url) for p in profiles]


def _hides_any(privacy: PrivacyMirror, kept: _Kept) -> bool:
    """Whether a user of ``kept`` turned invisible since it was built (none was then): not
    asked user by user while this process's privacy mirror has not changed since."""
    return privacy.changes != kept.privacy and any(map(privacy.presence_hidden, kept.user_ids))


def _response(body: bytes, as_msgpack: bool) -> tuple[bytes, str]:
    """A page's body and media type, as ``wire.encoded`` gives them."""
    return body, MSGPACK if as_msgpack else JSON
