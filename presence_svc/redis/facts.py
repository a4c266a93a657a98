"""What ``presence-svc doctor`` needs to know about a Redis: its version, its configuration,
its persistence state and its clock; read from a running server, or, for an embedded Redis
not running now, from the binary and the configuration the service would start it with."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from presence_svc.redis.connection import as_text
from presence_svc.redis.embedded import CONFIG, binary_version

__all__ = ["RedisFacts", "embedded_facts", "live_facts"]


@dataclass(frozen=True, slots=True)
class RedisFacts:
    version: str
    config: Mapping[str, str]
    """``CONFIG GET *``; empty where the server refuses ``CONFIG`` (some managed Redis)."""
    persistence: Mapping[str, str] = field(default_factory=dict)
    """``INFO persistence``; empty for an embedded Redis not running now."""
    skew_s: float | None = None
    """Redis's clock minus this machine's; None where not measured."""
    config_refused: str | None = None

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split(".")[:3] if p.isdigit())


async def live_facts(url: str, timeout_s: float) -> RedisFacts:
    """Read from the server at ``url`` (with a Cluster: the node at the URL)."""
    client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        server = await client.info("server")
        persistence = await client.info("persistence")
        refused = None
        try:
            raw = await client.config_get("*")
            config = {as_text(k or ""): as_text(v or "") for k, v in raw.items()}
        except ResponseError as exc:
            config, refused = {}, str(exc)
        before = time.time()
        seconds, micros = await client.time()
        after = time.time()
    finally:
        await client.aclose()
    return RedisFacts(
        version=str(server["redis_version"]),
        config=config,
        persistence={str(k): str(v) for k, v in persistence.items()},
        skew_s=seconds + micros / 1e6 - (before + after) / 2,
        config_refused=refused,
    )


def embedded_facts(binary: str) -> RedisFacts:
    """The embedded Redis as the service would start it: Redis's defaults and ``CONFIG``."""
    version = binary_version(binary)
    defaults = {"maxmemory-policy": "noeviction", "maxmemory": "0"}
    return RedisFacts(version=version, config={**defaults, **CONFIG})
