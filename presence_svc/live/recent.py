"""Last seen: the users recently on an artifact who are offline now (``?include=recent``).

The presence writers keep them in the artifact's recently-here zset (``lua/lib/recent.lua``):
a user goes in when their last online session leaves or times out, and out when one comes
back. A page is one read-only script call: O(log n + page size).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from presence_svc.cursors import decode_cursor, encode_cursor
from presence_svc.errors import BadRequest, FieldError
from presence_svc.redis.connection import RedisConnection, as_text
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings

__all__ = ["REASONS", "RecentList", "RecentPage", "RecentRow", "is_recent_cursor"]

REASONS = {1: "left", 2: "timeout"}
"""Reason codes kept in the low bits of a score: lastSeen (ms) * 4 + code."""
_KIND = "r"


@dataclass(frozen=True, slots=True)
class RecentRow:
    user_id: str
    last_seen_ms: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class RecentPage:
    rows: list[RecentRow]
    next_cursor: str | None


def _artifact_mark(artifact_id: str) -> str:
    return f"{zlib.crc32(artifact_id.encode()):08x}"


def is_recent_cursor(cursor: str) -> bool:
    """Whether ``cursor`` is a recently-here cursor (its member holds ``/``, which a user
    id, the presence list's member, never does)."""
    return "/" in decode_cursor(cursor)[1]


class RecentList:
    def __init__(self, redis: RedisConnection, keys: Keyspace, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self._recent = settings.recent_ms

    def _after(self, artifact_id: str, cursor: str, field: str) -> tuple[int, str]:
        problem = BadRequest(
            f"{field} is not a cursor of this artifact's recently-here list",
            errors=[FieldError(field, "must be the recentNextCursor of this artifact's list")],
        )
        try:
            score, member = decode_cursor(cursor)
        except BadRequest as exc:
            raise problem from exc
        kind, _, rest = member.partition("/")
        mark, _, user = rest.partition("/")
        if kind != _KIND or mark != _artifact_mark(artifact_id) or not user:
            raise problem
        return score, user

    async def page(
        self, artifact_id: str, limit: int, cursor: str | None, field: str = "recentCursor"
    ) -> RecentPage:
        """One page, newest first; a cursor of another list or order is a 400 on ``field``."""
        after = self._after(artifact_id, cursor, field) if cursor else None
        call = self.redis.scripts.recent_page.call(
            self.keys.artifact(artifact_id), self._recent, limit, after
        )
        flat = await self.redis.run(call)
        has_more = int(flat[-1]) == 1
        rows: list[RecentRow] = []
        scores: list[int] = []
        for i in range(0, len(flat) - 1, 2):
            score = int(flat[i + 1])
            scores.append(score)
            rows.append(RecentRow(as_text(flat[i]), score // 4, REASONS.get(score % 4)))
        next_cursor = None
        if has_more and rows:
            member = f"{_KIND}/{_artifact_mark(artifact_id)}/{rows[-1].user_id}"
            next_cursor = encode_cursor(scores[-1], member)
        return RecentPage(rows, next_cursor)
