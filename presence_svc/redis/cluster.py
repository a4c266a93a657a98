"""A Redis Cluster: every call routed to its slot's node by redis-py.

redis-py refuses ``EVALSHA`` in cluster pipelines, so calls that a single server would
pipeline go out concurrently instead, each to its own node.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError

from presence_svc import metrics
from presence_svc.redis.connection import RedisConnection, StreamEntry, StreamRead
from presence_svc.redis.resp import Commands
from presence_svc.redis.scripts import ScriptCall

__all__ = ["ClusterConnection"]

log = logging.getLogger(__name__)


def _raised_by_redis_py(exc: BaseException) -> bool:
    """Whether the innermost frame ``exc`` went through is redis-py's (not this service's
    code between its calls)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return module == "redis" or module.startswith("redis.")


@asynccontextmanager
async def _client_failure_is_unreachable() -> AsyncIterator[None]:
    """What redis-py's Cluster client raises from its own code besides Redis' errors is the
    client failing mid-call (an ``AttributeError`` from its connection code was seen on a
    loaded machine): Redis is as unusable as if unreachable, so it is an outage (503 with
    ``Retry-After``), logged with its traceback, never a 500. An error of this service's
    own code stays what it is."""
    try:
        yield
    except (RedisError, RedisClusterException, OSError, TimeoutError, asyncio.CancelledError):
        raise  # Redis' own errors and redis-py's cluster errors (refusal.py reads them)
    except Exception as exc:
        if not _raised_by_redis_py(exc):
            raise
        log.exception("the Redis Cluster client failed", extra={"error": type(exc).__name__})
        raise RedisConnectionError(f"the Redis Cluster client failed: {exc!r}") from exc


class ClusterConnection(RedisConnection):
    client: RedisCluster

    async def run(self, call: ScriptCall) -> Any:
        async with _client_failure_is_unreachable(), asyncio.timeout(self.deadline_s):
            return await self._run(call)

    async def run_many(self, calls: Sequence[ScriptCall]) -> list[Any]:
        if not calls:
            return []
        async with asyncio.timeout(self.deadline_s):  # one timer per batch
            return list(
                await asyncio.gather(
                    *(self._guarded(call) for call in calls), return_exceptions=True
                )
            )

    async def read_commands(self, commands: Commands) -> list[Any]:
        """A cluster pipeline: redis-py groups the commands by node, one round trip each."""
        if not commands.count:
            return []
        async with _client_failure_is_unreachable(), asyncio.timeout(self.deadline_s):
            pipe = self.client.pipeline(transaction=False)
            for command in commands.tuples():
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    async def _guarded(self, call: ScriptCall) -> Any:
        async with _client_failure_is_unreachable():
            return await self._run(call)

    async def _run(self, call: ScriptCall) -> Any:
        script = call.script
        started = time.perf_counter()
        try:
            try:
                return await self.client.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
            except NoScriptError:
                await self.client.script_load(script.source)
                return await self.client.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
        finally:
            metrics.observe_script(script.name, time.perf_counter() - started)

    async def read_group(
        self, group: str, consumer: str, streams: Sequence[str], count: int, *, own: bool = False
    ) -> list[StreamRead]:
        pipe = self.client.pipeline(transaction=False)
        for stream in streams:
            pipe.xreadgroup(group, consumer, {stream: "0" if own else ">"}, count=count)
        out: list[StreamRead] = []
        for reply in await pipe.execute(raise_on_error=False):
            if isinstance(reply, ResponseError):
                out.append(reply)
            elif isinstance(reply, Exception):
                raise reply
            else:  # redis-py parsed each entry's fields into a dict: flat again
                pairs = reply.items() if isinstance(reply, dict) else (reply or ())
                entries: list[StreamEntry] = [
                    (entry_id, [item for pair in (fields or {}).items() for item in pair])
                    for _, stream_entries in pairs
                    for entry_id, fields in stream_entries
                ]
                out.append(entries)
        return out

    async def ack(self, group: str, done: dict[str, list[bytes]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in done.items():
            pipe.xack(stream, group, *ids)
        await pipe.execute()

    async def initialize(self) -> None:
        await self.client.initialize()

    def pubsub(self) -> PubSub:
        return self.client.pubsub()

    async def answering_pubsub(self, timeout_s: float) -> PubSub:
        nodes = self.client.get_nodes()
        random.shuffle(nodes)
        for node in nodes:
            try:
                await asyncio.wait_for(
                    self.client.execute_command("PING", target_nodes=node), timeout_s
                )
            except (RedisError, OSError, TimeoutError):
                continue
            return self.client.pubsub(node=node)
        raise ConnectionError("no Redis Cluster node answers")
