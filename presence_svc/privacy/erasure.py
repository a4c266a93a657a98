"""The erasers: one per place a user's data lives, each erasing in bounded, idempotent steps.

An erasure job (``privacy.jobs``) calls the erasers of an ``Erasers`` list in order. Each
call does one bounded step and returns a cursor for the next one, or None when that place
holds nothing more of the user; the job keeps the step and cursor in Redis, so a restart
resumes where it stopped (a step may run twice: each must be idempotent). More places
join by ``Erasers.add`` (an ``Eraser``) or ``Erasers.add_simple`` (one call, no cursor).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from presence_svc.ledger.store import LedgerStore
from presence_svc.live.store import PresenceStore
from presence_svc.ratelimits import RouteClass
from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import Keyspace
from presence_svc.users.directory import UsersDirectory
from presence_svc.webhooks.streams import GROUP as WEBHOOKS_GROUP

__all__ = [
    "Eraser",
    "Erasers",
    "LedgerEraser",
    "NotYet",
    "PresenceEraser",
    "PrivacyMirrorEraser",
    "ProfileEraser",
    "StreamsEraser",
    "UserKeysEraser",
    "ViewsEraser",
    "new_tombstone",
]

TOMBSTONE_PREFIX = "~erased-"
"""``~`` is not allowed in ids, so a tombstone never names a real user."""


def new_tombstone() -> str:
    """A random stand-in for one erasure's user id: nothing leads back to the user."""
    return TOMBSTONE_PREFIX + secrets.token_hex(12)


class NotYet(Exception):
    """A step cannot run now (e.g. a views stream is still long): the job retries later."""


class Eraser(Protocol):
    name: str

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        """One bounded step from ``cursor`` ('' at first): the next cursor, None when done.
        ``tombstone`` replaces the user id wherever a row or member must stay (counts)."""
        ...


class _Simple:
    """An eraser of one step around ``erase(user_id, tombstone)``."""

    def __init__(self, name: str, erase: Callable[[str, str], Awaitable[object]]) -> None:
        self.name = name
        self._erase = erase

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        await self._erase(user_id, tombstone)
        return None


class Erasers:
    """The ordered list of erasers an erasure walks (a job remembers its position in it)."""

    def __init__(self, erasers: list[Eraser] | None = None) -> None:
        self._erasers: list[Eraser] = []
        for eraser in erasers or []:
            self.add(eraser)

    def add(self, eraser: Eraser) -> None:
        """Names are how a job remembers its place: unique, and without ``,`` (a job
        joins the names of the erasers it has done with it)."""
        if "," in eraser.name or not eraser.name or eraser.name in self.names:
            raise ValueError(f"an eraser's name must be unique, without ',': {eraser.name!r}")
        self._erasers.append(eraser)

    def add_simple(self, name: str, erase: Callable[[str, str], Awaitable[object]]) -> None:
        """``erase(user_id, tombstone)`` as one step; it must be bounded and idempotent."""
        self.add(_Simple(name, erase))

    def __len__(self) -> int:
        return len(self._erasers)

    def __getitem__(self, step: int) -> Eraser:
        return self._erasers[step]

    def __iter__(self) -> Iterator[Eraser]:
        return iter(self._erasers)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self._erasers]


class ViewsEraser:
    """The user's view records (version viewers entries, viewers by time, artifact viewers
    membership, debounce keys), found through their views index, ``BATCH`` at a time."""

    name = "views"
    BATCH = 250

    def __init__(self, redis: RedisConnection, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        index = self.keys.user_views_index(user_id)
        members = await self.redis.client.srandmember(index, self.BATCH)
        if not members:
            return None
        erase = self.redis.scripts.erase_views
        calls = []
        for member in members:
            assert isinstance(member, str | bytes)
            artifact_id, _, version_id = as_text(member).partition("/")
            calls.append(erase.call(self.keys, artifact_id, version_id, user_id, tombstone))
        for result in await self.redis.run_many(calls):
            if isinstance(result, Exception):
                raise result
        await self.redis.client.srem(index, *members)  # done: not visited again
        return "more"


class PrivacyMirrorEraser:
    """The user's entry in the hidden-users mirror every API process keeps a copy of (their
    privacy row goes with the profile)."""

    name = "privacy-mirror"

    def __init__(self, redis: RedisConnection) -> None:
        self.redis = redis

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        await self.redis.run(
            self.redis.scripts.privacy_set.call(Keyspace.hidden_users(), user_id, 0)
        )
        return None


class PresenceEraser:
    """Sessions and their state on every artifact, recently-here entries, where-now."""

    name = "presence"

    def __init__(self, presence: PresenceStore) -> None:
        self.presence = presence

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        await self.presence.erase_user(user_id)
        return None


class UserKeysEraser:
    """The keys named after the user on their slot: recently viewed, views index, where-now,
    rate-limit buckets."""

    name = "user-keys"

    def __init__(self, redis: RedisConnection, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        k = self.keys
        names = [
            k.user_recent(user_id),
            k.user_recent_versions(user_id),
            k.user_views_index(user_id),
            k.where_now(user_id),
            k.where_now_generation(user_id),
            *(k.rate_bucket(user_id, route_class) for route_class in RouteClass),
        ]
        await self.redis.client.delete(*names)
        return None


class StreamsEraser:
    """The user's views still in the partitions' views streams (and dead letters), not yet
    in the ledger, and their presence changes in the webhook outboxes: rewritten under the
    tombstone, ``PARTITIONS_PER_STEP`` partitions at a time.

    A view of the user that a drain had read but not yet written may still reach the
    ledger under the user's id: when there was one, the step ends only ``settle_s`` later
    (the drain's reclaim idle time), so the ledger eraser, next, finds it written."""

    name = "views-streams"
    PARTITIONS_PER_STEP = 16
    MOST_ENTRIES = 20_000
    """More owed to the ledger (the ledger is behind) waits: the step is retried later."""

    def __init__(
        self,
        redis: RedisConnection,
        keys: Keyspace,
        settle_s: float,
        webhook_settle_s: float = 0.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.settle_ms = int(settle_s * 1000)
        self.webhook_settle_ms = max(self.settle_ms, int(webhook_settle_s * 1000))
        """The wait when the webhooks group holds the user's entries: a worker may hold
        their deliveries in memory longer than a drain holds a batch."""

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        start_text, _, until_text = cursor.partition("|")
        start, until = int(start_text or 0), int(until_text or 0)
        tags = self.keys.tags[start : start + self.PARTITIONS_PER_STEP]
        if not tags:
            if time.time() * 1000 < until:
                raise NotYet("a drain may still be writing the user's views")
            return None
        scrub = self.redis.scripts.scrub_stream
        calls = [
            scrub.call(stream, user_id, tombstone, self.MOST_ENTRIES, WEBHOOKS_GROUP)
            for tag in tags
            for stream in (
                self.keys.views_stream(tag),
                self.keys.dead_letters(tag),
                self.keys.outbox(tag),  # webhooks' presence changes (only while it exists)
            )
        ]
        for result in await self.redis.run_many(calls):
            if isinstance(result, Exception):
                raise result
            rewritten, in_flight, held_by_webhooks = (int(n) for n in result)
            if rewritten < 0:
                raise NotYet("a views stream owes too much to the ledger to rewrite it now")
            if in_flight:
                wait = self.webhook_settle_ms if held_by_webhooks else self.settle_ms
                until = max(until, int(time.time() * 1000) + wait)
        end = start + len(tags)
        if end >= len(self.keys.tags) and not until:
            return None
        return f"{end}|{until}"


class LedgerEraser:
    """The user's ledger rows: the tombstone for the user id, no session id; rows stay."""

    name = "ledger"
    BATCH = 2000

    def __init__(self, ledger: LedgerStore) -> None:
        self.ledger = ledger

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        changed = await self.ledger.erase_user(user_id, tombstone, self.BATCH)
        return "more" if changed >= self.BATCH else None


class ProfileEraser:
    """The profile in the users directory."""

    name = "profile"

    def __init__(self, users: UsersDirectory) -> None:
        self.users = users

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        await self.users.delete_profile(user_id)
        return None
