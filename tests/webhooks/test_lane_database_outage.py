"""A delivery held in memory fails while the database is down (its retry cannot be
written): it is not lost, and its artifact does not stall; once the database is back it
is delivered and its stream entry acknowledged."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from presence_svc.redis.keys import Keyspace
from presence_svc.webhooks.streams import GROUP
from tests.postgres import PostgresServer
from tests.webhooks.receiver import receiving, until

KEYS = Keyspace(16)


def _unacknowledged(sync_redis: redis.Redis) -> int:
    return sum(
        int(sync_redis.xpending(KEYS.outbox(t), GROUP)["pending"])
        for t in KEYS.tags
        if sync_redis.exists(KEYS.outbox(t))
    )


@pytest.mark.timeout(90)
async def test_a_failed_delivery_whose_retry_cannot_be_written_is_sent_again(
    make_hooks: Any,
    own_postgres: PostgresServer,
    sync_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks = await make_hooks(ledger_url=own_postgres.url(), webhook_timeout_s=1.0)
    async with receiving() as receiver:
        # The first attempt hangs past the sender's timeout: a failure to be filed.
        receiver.behave = lambda event_id, body, n: "hang" if n == 1 else None
        receiver.secrets.append((await hooks.create(receiver.url, ["presence.join"]))["secret"])
        with caplog.at_level(logging.WARNING, logger="presence_svc.webhooks.lane"):
            await hooks.beat("doc-db", "u1")
            await until(lambda: len(receiver.attempts) == 1, what="the first attempt")
            own_postgres.stop("immediate")
            try:
                # The attempt times out; filing its retry finds the database down.
                await until(
                    lambda: any(
                        r.name == "presence_svc.webhooks.lane" and "database" in r.getMessage()
                        for r in caplog.records
                    ),
                    timeout_s=30,
                    what="the lane finding the database down",
                )
            finally:
                own_postgres.start()
        await until(lambda: len(receiver.got) == 1, timeout_s=30, what="the join delivered")
        assert receiver.got[0].type == "presence.join"
        assert receiver.got[0].data["userId"] == "u1"
        await until(lambda: _unacknowledged(sync_redis) == 0, what="the entry acknowledged")
