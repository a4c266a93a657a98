"""Who hides what, as every API process sees it: the hot paths (heartbeat, view, lists)
ask a dict in the process, never Redis and never the database.

The users directory keeps the settings durably (``users/privacy.py``); Redis keeps a
mirror of the users with something hidden in one small hash (``Keyspace.hidden_users``:
user id -> flags, and ``~g`` its generation, bumped by every change). Each process polls
the generation every ``PRESENCE_PRIVACY_REFRESH_S`` (one ``HGET``) and reloads the hash
when it moved, so a change made on any process or host takes effect everywhere within
that interval, and at once on the process that made it. A hash that is gone (Redis lost
its data) is seeded again from the directory.

Every process holds the whole set: a few dozen bytes per hidden user (a million hidden
users would be ~100 MB per process, and a reload per change; see README, Privacy).
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import Keyspace
from presence_svc.users.directory import DatabaseUnavailable, UsersDirectory
from presence_svc.users.privacy import Privacy

__all__ = ["PrivacyMirror"]

log = logging.getLogger(__name__)

_VIEWS, _PRESENCE = 1, 2
_GENERATION = "~g"
_SCAN = 1000


class PrivacyMirror:
    def __init__(self, redis: RedisConnection, users: UsersDirectory, refresh_s: float) -> None:
        self._redis = redis
        self._users = users
        self._key = Keyspace.hidden_users()
        self._refresh_s = refresh_s
        self._flags: dict[str, int] = {}
        self._changes = 0
        self._generation: int | None = None
        self._loaded = False
        self._hash_exists = False
        """Whether the hash was there (seen or written): its loss then means Redis lost it."""

    def views_hidden(self, user_id: str) -> bool:
        """The user's view history is hidden: counted, not listed to others."""
        return bool(self._flags.get(user_id, 0) & _VIEWS)

    def presence_hidden(self, user_id: str) -> bool:
        """The user's presence is invisible: counted, not listed or announced."""
        return bool(self._flags.get(user_id, 0) & _PRESENCE)

    @property
    def changes(self) -> int:
        """Moves with every change of this process's mirror: users none of whom was hidden
        when it had a value are still not while it has it (a kept presence page need not
        ask again for each of its users)."""
        return self._changes

    def _set(self, user_id: str, flags: int) -> None:
        self._changes += 1
        if flags:
            self._flags[user_id] = flags
        else:
            self._flags.pop(user_id, None)

    async def put(self, privacy: Privacy) -> None:
        """Mirror a setting the directory has stored; this process sees it at once."""
        call = self._redis.scripts.privacy_set.call(self._key, privacy.user_id, privacy.flags)
        await self._redis.run(call)
        self._set(privacy.user_id, privacy.flags)
        self._hash_exists = True

    async def refresh(self) -> None:
        """Reload the mirror if its generation moved. No hash at all means nobody hides
        anything, or Redis lost it: the directory is asked at the first load and whenever
        a hash seen before is gone, so Redis holds no key while nothing is hidden."""
        client = self._redis.client
        raw = await client.hget(self._key, _GENERATION)
        if raw is None:
            if self._hash_exists or not self._loaded:
                await self._seed()
            return
        self._hash_exists = True
        generation = int(raw)
        if generation == self._generation:
            return
        flags: dict[str, int] = {}
        cursor = 0
        while True:
            cursor, page = await client.hscan(self._key, cursor, count=_SCAN)
            pairs = (
                page.items() if isinstance(page, dict) else zip(page[::2], page[1::2], strict=False)
            )
            for field, value in pairs:
                user = as_text(field)
                if user != _GENERATION:
                    flags[user] = int(value)
            if int(cursor) == 0:
                break
        # A change landing during the scan bumped the generation past ours: the next poll
        # reloads again, so nothing is missed for longer than one interval.
        self._flags, self._generation = flags, generation
        self._changes += 1

    async def _seed(self) -> None:
        hidden = await self._users.hidden_privacy()
        for privacy in hidden:
            await self.put(privacy)
        self._flags = {p.user_id: p.flags for p in hidden}
        self._changes += 1
        self._generation = None  # the next poll loads the hash the puts made, if any
        self._hash_exists = bool(hidden)
        self._loaded = True
        if hidden:
            log.info("privacy mirror seeded from the directory", extra={"users": len(hidden)})

    async def run(self) -> None:
        """Poll until cancelled; an outage is logged and retried at the next interval."""
        while True:
            try:
                await self.refresh()
            except (RedisError, DatabaseUnavailable, OSError) as exc:
                log.warning("privacy mirror not refreshed", extra={"error": repr(exc)})
            await asyncio.sleep(self._refresh_s)
