"""No copies behind: after an erasure, the database's own files and the embedded Redis's
append-only file lose the erased bytes.

SQLite zeroes what it deletes (``secure_delete``, set on every connection) and its WAL is
checkpointed and truncated here. The embedded Redis rewrites its AOF (``BGREWRITEAOF``),
at most once per ``PRESENCE_ERASURE_REWRITE_S`` for every process together: an erasure
marks a rewrite as owed, and a worker starts one when the window allows. A Redis of the
operator's own (``PRESENCE_REDIS_URL``) is left alone: the README says what to do there.
"""

from __future__ import annotations

import logging

from redis.exceptions import ResponseError

from presence_svc.database import Database
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings

__all__ = ["Copies", "is_embedded"]

log = logging.getLogger(__name__)


def is_embedded(settings: Settings) -> bool:
    """Whether the Redis is the data dir's own (``serve`` passes its socket's URL on)."""
    if settings.embedded_redis:
        return True
    return settings.redis_url == EmbeddedRedis(settings.data_dir).url


class Copies:
    def __init__(self, redis: RedisConnection, database: Database, settings: Settings) -> None:
        self.redis = redis
        self.database = database
        self.embedded = is_embedded(settings)
        self.window_ms = int(settings.erasure_rewrite_s * 1000)

    async def after_erasure(self) -> None:
        """Best effort, the erasure itself is complete: a failure here is logged, and the
        next erasure (or the next window) tries again."""
        try:
            await self.database.scrub()
        except Exception as exc:
            log.warning("database not scrubbed after an erasure", extra={"error": repr(exc)})
        if self.embedded:
            await self.redis.client.set(Keyspace.erasure_rewrite(), "1")

    async def rewrite_if_owed(self) -> bool:
        """Start the AOF rewrite an erasure asked for, if none started within the window;
        returns whether one started."""
        if not self.embedded:
            return False
        client = self.redis.client
        if not await client.exists(Keyspace.erasure_rewrite()):
            return False
        if not await client.set(Keyspace.erasure_rewrite_window(), "1", nx=True, px=self.window_ms):
            return False
        # Cleared before the rewrite forks: an erasure finishing later marks it owed again.
        await client.delete(Keyspace.erasure_rewrite())
        try:
            await client.execute_command("BGREWRITEAOF")
        except ResponseError as exc:  # one is running already: ours comes next window
            await client.set(Keyspace.erasure_rewrite(), "1")
            log.info("AOF rewrite postponed", extra={"error": str(exc)})
            return False
        log.info("AOF rewrite started after an erasure")
        return True
