"""Erasure jobs: opened by ``DELETE /v1/users/{id}``, kept in Redis on the user's slot, run
inline for a few steps and, if more is left, by a worker until complete.

A job hash holds the status, the times, the user id and tombstone (the user id only while
pending), and its position, written after each step: the NAMES of the erasers done
(``done``), of the one in progress (``eraser``) and its ``cursor``. Names, not places in the
erasers list: a job in flight at a deploy that added, removed or moved an eraser resumes
with the eraser it was in, and still runs every eraser of the new list it has not run (an
eraser added before its place too). A job written before the names (``step``: the place in
the list, which that deploy did not change) reads as the names of that place. A runner
takes a job with a lease in ``er:due``; a runner that dies leaves the lease to run out and
another takes over at the saved position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from presence_svc.privacy.copies import Copies
from presence_svc.privacy.erasure import Eraser, Erasers, NotYet, new_tombstone
from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import Keyspace

__all__ = ["ErasureJobs", "ErasureStatus", "Opened"]

log = logging.getLogger(__name__)

LEASE_MS = 30_000
"""A runner holds a job this long past its last step before another may take it."""
RETRY_MS = 2_000
"""A job whose step failed (Redis or the database out of reach, a stream too long) waits
this long before it is tried again."""
KEEP_MS = 30 * 86_400_000
"""A completed job stays readable (``GET /v1/erasures/{id}``) this long."""
INLINE_STEPS = 24
"""Steps the request itself runs: a user with little data is erased before the answer
(one step per eraser at least, and the streams a step per 16 partitions: with 64
partitions a small user takes about 16)."""


@dataclass(frozen=True, slots=True)
class ErasureStatus:
    erasure_id: str
    status: str
    requested_at_ms: int
    completed_at_ms: int | None


@dataclass(frozen=True, slots=True)
class Opened:
    erasure_id: str
    taken: bool
    """Whether this caller holds the job's lease (and may run it now)."""


def _text(job: Mapping[bytes | str, bytes | str], field: str) -> str:
    raw = job.get(field.encode(), job.get(field))
    return as_text(raw) if raw is not None else ""


class ErasureJobs:
    def __init__(
        self, redis: RedisConnection, keys: Keyspace, erasers: Erasers, copies: Copies
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.erasers = erasers
        self.copies = copies

    async def open(self, user_id: str) -> Opened:
        """A new erasure of ``user_id``, or the one of theirs still pending."""
        erasure_id = f"{self.keys.tag_of(user_id)}.{secrets.token_hex(12)}"
        call = self.redis.scripts.erasure_open.call(self.keys, user_id, erasure_id, new_tombstone())
        found, _ = await self.redis.run(call)
        erasure_id = as_text(found)
        return Opened(erasure_id, await self._take(erasure_id) is not None)

    async def _take(self, erasure_id: str = "") -> str | None:
        call = self.redis.scripts.erasure_take.call(self.keys, LEASE_MS, erasure_id)
        taken = await self.redis.run(call)
        return as_text(taken) if taken else None

    async def status(self, erasure_id: str) -> ErasureStatus | None:
        job = await self.redis.client.hgetall(Keyspace.erasure(erasure_id))
        if not job:
            return None
        completed = _text(job, "completed")
        return ErasureStatus(
            erasure_id=erasure_id,
            status=_text(job, "status"),
            requested_at_ms=int(_text(job, "requested") or 0),
            completed_at_ms=int(completed) if completed else None,
        )

    async def run(self, erasure_id: str, most_steps: int | None = None) -> bool:
        """Run a job this caller has taken, ``most_steps`` at most; returns whether it is
        complete. Short of that (steps used up, or a step failed), the job is handed back
        to the runners: at once, or after ``RETRY_MS`` if a step failed."""
        due = Keyspace.erasures_due()
        key = Keyspace.erasure(erasure_id)
        client = self.redis.client
        job = await client.hgetall(key)
        if not job or _text(job, "status") == "complete":
            await client.zrem(due, erasure_id)
            return True
        user_id, tombstone = _text(job, "user"), _text(job, "tombstone")
        finished, current, cursor = self._position(job)
        steps = 0
        eraser: Eraser | None = None
        try:
            while eraser := self._next(finished, current):
                if most_steps is not None and steps >= most_steps:
                    await client.zadd(due, {erasure_id: 0})  # a runner takes it from here
                    return False
                if eraser.name != current:  # the cursor was another eraser's (gone since)
                    current, cursor = eraser.name, ""
                following = await eraser.erase_user(user_id, tombstone, cursor)
                steps += 1
                if following is None:
                    finished.append(eraser.name)
                    current, cursor = "", ""
                else:
                    cursor = following
                names = ",".join(finished)
                pipe = client.pipeline(transaction=False)
                pipe.hset(key, mapping={"done": names, "eraser": current, "cursor": cursor})
                pipe.hdel(key, "step")  # the place in the list, as jobs before the names had it
                pipe.zadd(due, {erasure_id: _now_ms() + LEASE_MS}, xx=True)
                await pipe.execute()
        except Exception as exc:
            log.log(
                logging.INFO if isinstance(exc, NotYet) else logging.WARNING,
                "erasure step not done; retried later",
                extra={
                    "erasure_id": erasure_id,
                    "step": eraser.name if eraser else "?",
                    "error": repr(exc),
                },
            )
            await client.zadd(due, {erasure_id: _now_ms() + RETRY_MS})
            return False
        done = self.redis.scripts.erasure_done.call(self.keys, user_id, erasure_id, KEEP_MS)
        await self.redis.run(done)
        await client.zrem(due, erasure_id)
        log.info("user erased", extra={"erasure_id": erasure_id})
        await self.copies.after_erasure()
        return True

    def _position(self, job: Mapping[bytes | str, bytes | str]) -> tuple[list[str], str, str]:
        """The erasers done, the one in progress ('' for none) and its cursor. A job from
        before the names holds ``step``, its place in the erasers list: the list of the
        release that wrote it, which is this one's (the names came without changing it)."""
        cursor = _text(job, "cursor")
        if _text(job, "done") or _text(job, "eraser") or not _text(job, "step"):
            return [n for n in _text(job, "done").split(",") if n], _text(job, "eraser"), cursor
        step = int(_text(job, "step"))
        names = self.erasers.names
        return names[:step], names[step] if step < len(names) else "", cursor

    def _next(self, finished: list[str], current: str) -> Eraser | None:
        """The eraser in progress if it is still in the list, else the first not done."""
        left = [e for e in self.erasers if e.name not in finished]
        return next((e for e in left if e.name == current), left[0] if left else None)

    async def run_due(self) -> int:
        """Run every due job to its end (or its failure); returns how many ran."""
        ran = 0
        while (erasure_id := await self._take()) is not None:
            await self.run(erasure_id)
            ran += 1
        return ran

    async def serve(self, stopping: asyncio.Event, idle_s: float = 1.0) -> None:
        """The worker's loop: due jobs, then an owed AOF rewrite, every ``idle_s``."""
        while not stopping.is_set():
            try:
                await self.run_due()
                await self.copies.rewrite_if_owed()
            except Exception as exc:
                log.warning("erasure runner: redis unavailable", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), idle_s)


def _now_ms() -> int:
    """This host's clock: only ever compared against lease times it wrote itself, or
    against Redis's clock with a margin of seconds (``LEASE_MS``)."""
    return int(time.time() * 1000)
