"""One Redis deployment, a single server or a Cluster, behind one interface.

Callers hold a ``RedisConnection`` and never ask which kind it is: scripts run through
``run``/``run_many``/``run_all``, the ledger's consumer group through ``read_group``/``ack``, live
events through ``pubsub``/``answering_pubsub``, and plain commands through ``client`` (a
redis-py client whose pipelines route by key on a Cluster too).

A command either answers or fails within about two seconds (one try plus one retry on a
fresh connection, each bounded by ``PRESENCE_REDIS_TIMEOUT_S``), so an unreachable Redis
turns into a quick 503 instead of a hang, and a restarted Redis is picked up again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from presence_svc.redis.keys import Keyspace
from presence_svc.redis.resp import Commands
from presence_svc.redis.scripts import ScriptCall, Scripts
from presence_svc.settings import Settings

__all__ = [
    "Commands",
    "RedisClient",
    "RedisConnection",
    "StreamEntry",
    "StreamRead",
    "as_text",
    "connect",
]

RedisClient: TypeAlias = "Redis | RedisCluster"
StreamEntry: TypeAlias = "tuple[bytes, list[bytes]]"
"""A stream entry as Redis sends it: its id, and its fields flat: ``[field, value, ...]``."""
StreamRead: TypeAlias = "list[StreamEntry] | ResponseError"
"""What one stream gave a group read: its new entries, or Redis's error (``NOGROUP``)."""


def as_text(value: str | bytes) -> str:
    """A reply string as text (redis-py gives bytes unless told to decode)."""
    return value.decode() if isinstance(value, bytes) else value


class RedisConnection(ABC):
    """Scripts, streams and pub/sub on one Redis deployment (see the module)."""

    def __init__(self, client: RedisClient, deadline_s: float | None) -> None:
        self.client = client
        self.scripts = Scripts()
        self.deadline_s = deadline_s
        """Bound of every script call, retries and reconnects included: a stopped (not
        dead) Redis accepts connections and never answers."""

    @abstractmethod
    async def run(self, call: ScriptCall) -> Any:
        """One script call; its error answer is raised."""

    @abstractmethod
    async def run_many(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Several script calls at once, results in order; a script error in one call is
        returned in its place, not raised, so one bad call does not hide the others."""

    async def run_all(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """A request's few calls, all of which must succeed: sent together as ``run`` sends
        one (on a single server, in this loop turn's pipeline: one round trip for all; on a
        Cluster, to each slot's node at once). Results in order; once every call has
        answered, the first failure is raised."""
        results = await self.run_many(calls)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    @abstractmethod
    async def read_commands(self, commands: Commands) -> list[Any]:
        """Plain read-only commands (one key each) sent together: one round trip on a
        single server, one per node on a Cluster; the answers in order, as Redis sent
        them, an error answer in its place. Not bound by the one-slot rule of scripts:
        each command touches its own key."""

    async def read_in_turn(self, commands: Commands) -> list[Any]:
        """``read_commands`` for a request's few commands: where script calls are
        coalesced (a single server's pipe), they join this loop turn's batch, one write
        with the other requests' calls; elsewhere the same as ``read_commands``."""
        return await self.read_commands(commands)

    @abstractmethod
    async def read_group(
        self, group: str, consumer: str, streams: Sequence[str], count: int, *, own: bool = False
    ) -> list[StreamRead]:
        """``XREADGROUP`` of what is new (``>``) on each stream, in the order given; with
        ``own``, what was delivered to ``consumer`` and not acknowledged (from ``0``), where
        an entry deleted since comes without fields (``None`` or empty)."""

    @abstractmethod
    async def ack(self, group: str, done: dict[str, list[bytes]]) -> None:
        """``XACK`` the entry ids of each stream, in one round trip where possible."""

    @abstractmethod
    async def initialize(self) -> None:
        """Learn the deployment's layout (a Cluster's nodes) before the first pub/sub."""

    @abstractmethod
    def pubsub(self) -> PubSub:
        """A pub/sub object; it connects on its first command."""

    @abstractmethod
    async def answering_pubsub(self, timeout_s: float) -> PubSub:
        """A pub/sub object on a server that answered a ``PING`` just now (on a Cluster,
        any node: ``PUBLISH`` reaches every node)."""

    async def load_scripts(self) -> None:
        for script in self.scripts.all:
            await self.client.script_load(script.source)

    async def scripts_loaded(self) -> bool:
        found = await self.client.script_exists(*(s.sha for s in self.scripts.all))
        return all(found)

    async def check_writable(self) -> None:
        """Write a short-lived key: raises what Redis answers when it refuses writes now
        (``OOM``, ``READONLY``, ``MISCONF``...), which reads alone would not show."""
        await self.client.set(Keyspace.ready_probe(), b"1", px=10_000)

    async def aclose(self) -> None:
        await self.client.aclose()


def connect(
    settings: Settings,
    url: str | None = None,
    *,
    deadline_s: float | None = None,
    pipelined: bool = False,
    timeout_s: float | None = None,
) -> RedisConnection:
    """A connection to ``url`` (default: the configured URL); connects lazily on first use.

    ``pipelined``: on a single server, script calls go out on one long-lived pipelined
    connection (what a server process wants); otherwise each batch borrows a pooled one.
    ``timeout_s``: the socket timeout instead of ``PRESENCE_REDIS_TIMEOUT_S``, for bulk
    tools (a benchmark's preload) whose pipelines are far bigger than a request's.
    """
    from presence_svc.redis.cluster import ClusterConnection
    from presence_svc.redis.single import SingleConnection

    target = url or settings.redis_url
    if target is None:
        raise ValueError("no Redis URL: start the embedded Redis first")
    timeout = settings.redis_timeout_s if timeout_s is None else timeout_s
    if settings.redis_cluster:
        cluster = RedisCluster.from_url(
            target,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        connection: RedisConnection = ClusterConnection(cluster, deadline_s)
    else:
        client = Redis.from_url(
            target,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=0,
        )
        connection = SingleConnection(client, deadline_s, pipelined=pipelined)
    if settings.otel:  # imported only then: OpenTelemetry is an optional extra
        from presence_svc.redis.tracing import TracedConnection

        return TracedConnection(connection)
    return connection
