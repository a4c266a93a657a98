"""Connecting to Redis (one server or a cluster) with bounded timeouts.

A command either answers or fails within about two seconds (one try plus one retry on a
fresh connection, each bounded by ``PRESENCE_REDIS_TIMEOUT_S``), so an unreachable Redis
turns into a quick 503 instead of a hang, and a restarted Redis is picked up again.
"""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from presence_svc.settings import Settings

__all__ = ["RedisClient", "connect"]

RedisClient: TypeAlias = "Redis | RedisCluster"


def connect(settings: Settings, url: str | None = None) -> RedisClient:
    """A client for ``url`` (default: the configured URL); connects lazily on first use."""
    target = url or settings.redis_url
    if target is None:
        raise ValueError("no Redis URL: start the embedded Redis first")
    timeout = settings.redis_timeout_s
    if settings.redis_cluster:
        return RedisCluster.from_url(
            target,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
    return Redis.from_url(
        target,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=0,
    )
