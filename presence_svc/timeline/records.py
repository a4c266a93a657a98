"""The timeline's Redis side: reading minute records (``lua/live/timeline_read.lua``), and
for the worker the artifacts due for rollup and marking hours rolled up."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import Keyspace
from presence_svc.timeline.series import Counts, MinuteRecord

__all__ = ["MinuteRecords", "TimelineRecords"]

_RECORD = msgspec.msgpack.Decoder(tuple[int, int, int, int, int, int])


@dataclass(frozen=True, slots=True)
class MinuteRecords:
    pending_hour: int | None
    """The artifact's oldest hour not rolled up into the database yet; None: none."""
    first: int
    """The first minute read (ms / 60 000)."""
    carry: Counts | None
    """The values at ``first`` (None: Redis does not know them)."""
    records: dict[int, MinuteRecord]
    """Minute -> its record, for the minutes read that saw a change."""


class TimelineRecords:
    def __init__(self, redis: RedisConnection, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys

    async def minutes(
        self, artifact_id: str, first: int, end: int, *, unrolled_only: bool = False
    ) -> MinuteRecords:
        """Records of minutes ``first`` .. ``end - 1``; with ``unrolled_only``, from the
        oldest hour not rolled up yet on (nothing when all are)."""
        scripts = self.redis.scripts
        mode = "p" if unrolled_only else ""
        call = scripts.timeline_read.call(self.keys.artifact(artifact_id), first, end, mode)
        raw = await self.redis.run(call)
        pending, users, sessions, first_read = (int(v) for v in raw[:4])
        decode = _RECORD.decode
        records = {int(raw[i]): MinuteRecord(*decode(raw[i + 1])) for i in range(4, len(raw), 2)}
        return MinuteRecords(
            pending if pending >= 0 else None,
            first_read,
            Counts(users, sessions) if users >= 0 else None,
            records,
        )

    async def due(self, tag: str, before_hour: int, limit: int) -> list[tuple[str, int]]:
        """Artifacts of partition ``tag`` with an hour before ``before_hour`` not rolled
        up, and their oldest such hour."""
        call = self.redis.scripts.timeline_due.call(
            self.keys.timeline_index(tag), before_hour, limit
        )
        raw = await self.redis.run(call)
        return [(as_text(raw[i]), int(float(raw[i + 1]))) for i in range(0, len(raw), 2)]

    async def done(self, artifact_id: str, from_hour: int, to_hour: int, keep_ms: int) -> int:
        """Hours ``from_hour`` .. ``to_hour - 1`` are in the database; returns the minutes
        pruned for being older than ``keep_ms``."""
        call = self.redis.scripts.timeline_done.call(
            self.keys.artifact(artifact_id), from_hour, to_hour, keep_ms
        )
        return int(await self.redis.run(call))
