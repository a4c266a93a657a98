"""The slowest single Redis command during a measurement, from Redis's SLOWLOG.

Redis runs one command (one script) at a time: the slowest one is how long everybody else
waited behind it. Before a measurement the log is emptied and set to keep every command of
``FLOOR_US`` or more (1 024 of them); after it, the longest entry is the answer (0: none
reached the floor). The previous settings are put back.

The longest entry alone cannot tell a slow script from a machine that stalled Redis (on
a shared machine, a plain ``HGET`` is logged at milliseconds when Redis was descheduled
meanwhile): so the slowest script call (``EVAL``/``EVALSHA``) and the slowest plain command
are given apart, with the slowest one's name. A plain command does a bounded, tiny amount
of work: when it was logged about as long as the slowest script, the time was the
machine's, not the script's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

__all__ = ["FLOOR_US", "SCRIPT_COMMANDS", "Slowest", "slowest_command", "slowest_of"]

FLOOR_US = 100
SCRIPT_COMMANDS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})


@dataclass(frozen=True, slots=True)
class Slowest:
    """What SLOWLOG kept, in microseconds (0: nothing of that kind reached the floor)."""

    us: int = 0
    command: str = ""
    """The slowest entry's command name (``EVALSHA``, ``HGET``, ...)."""
    script_us: int = 0
    """The slowest script call."""
    plain_us: int = 0
    """The slowest plain command."""


def slowest_of(entries: list[dict[str, Any]]) -> Slowest:
    """The slowest entries of ``SLOWLOG GET``'s answer (as redis-py gives it), overall and
    by kind."""
    us, command, script_us, plain_us = 0, "", 0, 0
    for entry in entries:
        duration = int(entry["duration"])
        raw = entry.get("command", b"")
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        name = text.split(" ", 1)[0].upper()
        if name in SCRIPT_COMMANDS:
            script_us = max(script_us, duration)
        else:
            plain_us = max(plain_us, duration)
        if duration > us:
            us, command = duration, name
    return Slowest(us, command, script_us, plain_us)


class _Probe:
    def __init__(self) -> None:
        self.slowest_us: int | None = None
        """The longest command in microseconds; None when Redis could not be asked."""
        self.slowest: Slowest | None = None
        """The same, by kind (None when Redis could not be asked)."""


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
        probe.slowest = slowest_of(entries)
        probe.slowest_us = probe.slowest.us
    except (redis.RedisError, OSError):
        pass
    finally:
        with contextlib.suppress(redis.RedisError, OSError):
            for name, value in old.items():
                client.config_set(str(name), str(value))
        client.close()
