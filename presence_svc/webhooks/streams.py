"""The streams webhooks read, present only while endpoints want them: each partition's
outbox (the presence writers append to it only while it exists) and a ``webhooks``
consumer group on each views stream (``trim_stream.lua`` keeps what any group has not
acknowledged, so the ledger's trimming waits for this group too, by at most
``PRESENCE_WEBHOOK_MAX_LAG`` entries: past it this group's oldest are given up).

``ensure`` is idempotent: the API calls it when an endpoint is created or enabled (events
from then on are kept), the dispatcher on every refresh (which also recreates them after
a Redis restart lost them).
"""

from __future__ import annotations

from redis.exceptions import ResponseError

from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.keys import Keyspace

__all__ = ["GROUP", "WebhookStreams"]

GROUP = "webhooks"


class WebhookStreams:
    def __init__(self, redis: RedisConnection, keys: Keyspace) -> None:
        self.redis = redis
        self.outboxes = [keys.outbox(tag) for tag in keys.tags]
        self.views = [keys.views_stream(tag) for tag in keys.tags]

    async def ensure(
        self, *, presence: bool, views: bool, drop: frozenset[str] = frozenset()
    ) -> None:
        """Create the outboxes (``presence``) and the views group (``views``) if missing,
        and drop those named in ``drop`` (``presence``, ``views``: the dispatcher's, once
        no endpoint has wanted them for a while)."""
        pipe = self.redis.client.pipeline(transaction=False)
        for stream in self.outboxes:
            if presence:
                pipe.xgroup_create(stream, GROUP, id="$", mkstream=True)
            elif "presence" in drop:
                pipe.delete(stream)
        for stream in self.views:
            if views:
                pipe.xgroup_create(stream, GROUP, id="$", mkstream=True)
            elif "views" in drop:
                pipe.xgroup_destroy(stream, GROUP)
        if not len(pipe):
            return
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError):
                text = str(result)
                if "BUSYGROUP" not in text and "requires the key to exist" not in text:
                    raise result
