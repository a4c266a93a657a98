"""Presence garbage collection: turn timeouts into leave events, delete what is stale.

Each partition keeps an index of its artifacts by the time something on them next falls
due, so a round costs in proportion to what is due, not to what is stored. A partition is
swept by one worker at a time, under a lease that lapses within seconds if that worker
dies, so several workers share the partitions and take over from each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass

from redis.exceptions import RedisError

from presence_svc import metrics
from presence_svc.keys import Keyspace
from presence_svc.scripts import Call, Scripts
from presence_svc.settings import Settings

__all__ = ["SweepResult", "Sweeper"]

log = logging.getLogger(__name__)

BATCH = 500


@dataclass(frozen=True, slots=True)
class SweepResult:
    partitions: int
    artifacts: int
    sessions_deleted: int


class Sweeper:
    def __init__(self, scripts: Scripts, settings: Settings) -> None:
        self.scripts = scripts
        self.keys = Keyspace(settings.partitions)
        self.interval_s = settings.sweep_interval_s
        self.lease_ms = int(settings.sweep_interval_s * 3000)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._timeout = settings.online_timeout_ms
        self._retention = settings.retention_ms

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
        """The partitions this worker holds a lease on now."""
        calls: list[Call] = [
            (self.scripts.claim, [self.keys.sweep_lock(tag)], [self.owner, self.lease_ms])
            for tag in self.keys.tags
        ]
        results = await self.scripts.run_many(calls)
        return [tag for tag, held in zip(self.keys.tags, results, strict=True) if held == 1]

    async def release(self) -> None:
        calls: list[Call] = [
            (self.scripts.release, [self.keys.sweep_lock(tag)], [self.owner])
            for tag in self.keys.tags
        ]
        with contextlib.suppress(RedisError):  # else the leases lapse by themselves
            await self.scripts.run_many(calls)

    async def sweep_once(self, tags: list[str] | None = None) -> SweepResult:
        """One round over the partitions we hold (or ``tags``): sweep every due artifact."""
        held = await self.claim() if tags is None else tags
        if not held:
            return SweepResult(0, 0, 0)
        seconds, micros = await self.scripts.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        pipe = self.scripts.redis.pipeline(transaction=False)
        for tag in held:
            pipe.zrangebyscore(self.keys.due(tag), "-inf", now_ms, start=0, num=BATCH)
        due_lists = await pipe.execute()
        calls: list[Call] = []
        for members in due_lists:
            for member in members:
                artifact_id = member.decode() if isinstance(member, bytes) else member
                k = self.keys.artifact(artifact_id)
                calls.append(
                    (
                        self.scripts.sweep,
                        [k.sessions, k.info, k.users, k.due],
                        [artifact_id, k.channel, self._timeout, self._retention],
                    )
                )
        deleted = 0
        for result in await self.scripts.run_many(calls):
            if isinstance(result, Exception):
                log.warning("sweeping an artifact failed", extra={"error": repr(result)})
                continue
            deleted += int(result[2])
        if calls:
            metrics.SWEPT_SESSIONS.labels("deleted").inc(deleted)
        return SweepResult(len(held), len(calls), deleted)
