"""The slowest single Redis command during a measurement, from Redis's SLOWLOG.

Redis runs one command (one script) at a time: the slowest one is how long everybody else
waited behind it. Before a measurement the log is emptied and set to keep every command of
``FLOOR_US`` or more (1 024 of them); after it, the longest entry is the answer (0: none
reached the floor). The previous settings are put back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

__all__ = ["FLOOR_US", "slowest_command"]

FLOOR_US = 100


class _Probe:
    def __init__(self) -> None:
        self.slowest_us: int | None = None
        """The longest command in microseconds; None when Redis could not be asked."""


@contextlib.contextmanager
def slowest_command(url: str | None) -> Iterator[_Probe]:
    """Record the slowest Redis command while the block runs (``probe.slowest_us``)."""
    probe = _Probe()
    if not url:
        yield probe
        return
    try:
        client = redis.Redis.from_url(url)
        old = client.config_get("slowlog-*")
        client.config_set("slowlog-log-slower-than", FLOOR_US)
        client.config_set("slowlog-max-len", 1024)
        client.slowlog_reset()
    except (redis.RedisError, OSError):
        yield probe
        return
    try:
        yield probe
        entries = client.slowlog_get(1024)
        probe.slowest_us = max((int(e["duration"]) for e in entries), default=0)
    except (redis.RedisError, OSError):
        pass
    finally:
        with contextlib.suppress(redis.RedisError, OSError):
            for name, value in old.items():
                client.config_set(str(name), str(value))
        client.close()
