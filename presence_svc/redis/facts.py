"""What ``presence-svc doctor`` needs to know about a Redis: its version, its configuration,
its persistence state and its clock; read from a running server, or, for an embedded Redis
not running now, from the binary and the configuration the service would start it with."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from presence_svc.redis.connection import as_text
from presence_svc.redis.embedded import (
    CONFIG,
    binary_version,
    built_allocator,
    jemalloc_preload,
    preloaded_allocator,
)

__all__ = ["RedisFacts", "allocator_name", "embedded_facts", "live_facts"]


def allocator_name(mem_allocator: str, pid: int, url: str) -> str:
    """``INFO``'s ``mem_allocator``, ``+jemalloc`` added for a libc build running with
    jemalloc preloaded (told from ``/proc/<pid>/maps`` where Redis runs on this machine)."""
    if mem_allocator.startswith("libc") and _this_machine(url):
        preloaded = preloaded_allocator(pid)
        if preloaded is not None:
            return f"{mem_allocator}+{preloaded}"
    return mem_allocator


def _this_machine(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "unix" or parts.hostname in ("localhost", "127.0.0.1", "::1")


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
    allocator: str | None = None
    """``jemalloc-5.3.0``, ``libc``, ``libc+jemalloc`` (preloaded); None where unknown."""

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split(".")[:3] if p.isdigit())


async def live_facts(url: str, timeout_s: float) -> RedisFacts:
    """Read from the server at ``url`` (with a Cluster: the node at the URL)."""
    client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        server = await client.info("server")
        memory = await client.info("memory")
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
        allocator=allocator_name(
            str(memory.get("mem_allocator", "")), int(server.get("process_id", 0)), url
        )
        or None,
    )


def embedded_facts(binary: str, jemalloc: bool = True) -> RedisFacts:
    """The embedded Redis as the service would start it: Redis's defaults and ``CONFIG``,
    and its allocator (``jemalloc``: ``PRESENCE_REDIS_JEMALLOC``)."""
    version = binary_version(binary)
    defaults = {"maxmemory-policy": "noeviction", "maxmemory": "0"}
    return RedisFacts(
        version=version, config={**defaults, **CONFIG}, allocator=_built_with(binary, jemalloc)
    )


def _built_with(binary: str, jemalloc: bool) -> str | None:
    built = built_allocator(binary)
    if built == "libc" and jemalloc and jemalloc_preload(binary) is not None:
        return "libc+jemalloc"
    return built
