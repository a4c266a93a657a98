"""Presence garbage collection: turn timeouts into leave events, delete what is stale.

Each partition keeps an index of its artifacts by the time something on them next falls
due, so a round costs in proportion to what is due, not to what is stored. Live workers
keep themselves on a list with a short lease and split the partitions by rendezvous
hashing: each partition goes to one of them, and a dead worker's share moves to the others
within one lease. Two workers sweeping one partition for a moment while the list changes
is harmless: every sweep is one atomic script, and settling happens once per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
import zlib
from dataclasses import dataclass

from redis.exceptions import RedisError

from presence_svc import metrics
from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.scripts import Lifetimes
from presence_svc.settings import Settings

__all__ = ["SweepResult", "Sweeper", "owner_of"]

log = logging.getLogger(__name__)

BATCH = 500
MAX_BATCHES = 20
"""Batches per partition per round; what is left waits for the next round."""
MAX_STEPS = 500
"""Sweep steps of one artifact per round: a step settles or deletes at most 64 sessions
(well under a millisecond of Redis), so a room of 20 000 timing out at once takes some 320
steps; what is left stays due now and waits for the next round."""


@dataclass(frozen=True, slots=True)
class SweepResult:
    partitions: int
    artifacts: int
    sessions_deleted: int


def owner_of(tag: str, workers: list[str]) -> str | None:
    """Rendezvous hashing: the worker with the highest score for this partition."""
    if not workers:
        return None
    return max(workers, key=lambda w: (zlib.crc32(f"{w}/{tag}".encode()), w))


class Sweeper:
    def __init__(
        self, redis: RedisConnection, settings: Settings, owner: str | None = None
    ) -> None:
        self.redis = redis
        self._scripts = redis.scripts
        self.keys = Keyspace(settings.partitions)
        self.interval_s = settings.sweep_interval_s
        self.lease_ms = int(settings.sweep_interval_s * 3000)
        self._registered = False
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._times = Lifetimes.of(settings)

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            while not stopping.is_set():
                try:
                    await self.sweep_once()
                except RedisError as exc:
                    log.warning("sweep failed; retrying", extra={"error": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.interval_s)
        finally:
            await self.release()

    async def claim(self) -> list[str]:
        """Stay on the live-workers list; return the partitions that fall to this worker."""
        call = self._scripts.workers.call(self.keys.workers(), self.owner, self.lease_ms, True)
        live = await self.redis.run(call)
        self._registered = True
        workers = [w.decode() if isinstance(w, bytes) else str(w) for w in live]
        return [tag for tag in self.keys.tags if owner_of(tag, workers) == self.owner]

    async def release(self) -> None:
        """Leave the list so the others take this worker's partitions at once."""
        if not self._registered:
            return
        with contextlib.suppress(RedisError):  # else our lease lapses by itself
            call = self._scripts.workers.call(self.keys.workers(), self.owner, self.lease_ms, False)
            await self.redis.run(call)

    async def sweep_once(self, tags: list[str] | None = None) -> SweepResult:
        """One round over the partitions we hold (or ``tags``): sweep every due artifact.

        Reads each partition's due index in batches, going back for more while a batch
        came back full, so a burst of timeouts is handled in one round, not one batch per
        interval.
        """
        held = await self.claim() if tags is None else tags
        if not held:
            return SweepResult(0, 0, 0)
        artifacts = deleted = 0
        pending = list(held)
        for _ in range(MAX_BATCHES):
            due_lists = await self._due(pending)
            swept, removed = await self._sweep([m for ms in due_lists for m in ms])
            artifacts += swept
            deleted += removed
            pending = [t for t, ms in zip(pending, due_lists, strict=True) if len(ms) == BATCH]
            if not pending:
                break
        if artifacts:
            metrics.SWEPT_SESSIONS.labels("deleted").inc(deleted)
        return SweepResult(len(held), artifacts, deleted)

    async def _due(self, tags: list[str]) -> list[list[str | bytes]]:
        """Up to ``BATCH`` artifacts due now in each partition, in one round trip."""
        seconds, micros = await self.redis.client.time()
        now_ms = seconds * 1000 + micros // 1000
        pipe = self.redis.client.pipeline(transaction=False)
        for tag in tags:
            pipe.zrangebyscore(self.keys.due(tag), "-inf", now_ms, start=0, num=BATCH)
        return list(await pipe.execute())

    async def _sweep(self, members: list[str | bytes]) -> tuple[int, int]:
        """Sweep these artifacts, each in bounded steps until it has nothing left to do
        (at most ``MAX_STEPS``); returns how many were swept and sessions deleted."""
        sweep = self._scripts.sweep
        pending = [as_text(member) for member in members]
        swept = len(pending)
        deleted = 0
        for _ in range(MAX_STEPS):
            if not pending:
                break
            calls = [sweep.call(self.keys.artifact(a), self._times) for a in pending]
            more = []
            for artifact, result in zip(pending, await self.redis.run_many(calls), strict=True):
                if isinstance(result, Exception):
                    log.warning("sweeping an artifact failed", extra={"error": repr(result)})
                    continue
                deleted += int(result[2])
                if int(result[3]):
                    more.append(artifact)
            pending = more
        return swept, deleted
