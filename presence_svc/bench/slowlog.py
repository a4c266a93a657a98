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

Which script was slowest is named (``script``: its file under ``lua/``, from the SHA the
call gave), and Redis's latency monitor is asked too (``events``, 1 ms and more): an
``aof-write`` there is Redis blocked writing its append-only file (the disk), a ``fork`` an
AOF rewrite starting, neither of them a script's work.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from presence_svc.redis.scripts import Scripts

__all__ = [
    "FLOOR_US",
    "LATENCY_FLOOR_MS",
    "SCRIPT_COMMANDS",
    "Slowest",
    "events_of",
    "script_names",
    "slowest_command",
    "slowest_of",
]

FLOOR_US = 100
LATENCY_FLOOR_MS = 1
"""Redis's latency monitor keeps events of at least this many ms (its finest)."""
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
    script: str = ""
    """The slowest script call's file under ``lua/`` (``limits/settle``); its SHA when it is
    not one of the service's, "" when no script call reached the floor."""
    events: dict[str, int] = field(default_factory=dict)
    """Redis's latency monitor: the longest event of each kind, in ms (``aof-write``,
    ``fork``, ``command``, ``fast-command``...); empty when none reached 1 ms."""


def slowest_of(entries: list[dict[str, Any]], scripts: Mapping[str, str] | None = None) -> Slowest:
    """The slowest entries of ``SLOWLOG GET``'s answer (as redis-py gives it), overall and
    by kind; ``scripts`` names the SHAs (SHA -> file under ``lua/``)."""
    us, command, script_us, plain_us, script = 0, "", 0, 0, ""
    for entry in entries:
        duration = int(entry["duration"])
        raw = entry.get("command", b"")
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        words = text.split(" ", 2)
        name = words[0].upper()
        if name in SCRIPT_COMMANDS:
            if duration > script_us or not script:
                sha = words[1] if len(words) > 1 else ""
                script = (scripts or {}).get(sha, sha) if name.startswith("EVALSHA") else name
            script_us = max(script_us, duration)
        else:
            plain_us = max(plain_us, duration)
        if duration > us:
            us, command = duration, name
    return Slowest(us, command, script_us, plain_us, script)


@functools.cache
def script_names() -> dict[str, str]:
    """The service's scripts by SHA: SHA -> file under ``lua/`` (``limits/settle``)."""
    return {script.sha: script.PATH for script in Scripts().all}


def events_of(latest: list[Any]) -> dict[str, int]:
    """``LATENCY LATEST``'s answer (event, when, latest ms, longest ms) as event -> longest."""
    out: dict[str, int] = {}
    for row in latest:
        event = row[0].decode() if isinstance(row[0], bytes) else str(row[0])
        out[event] = int(row[3])
    return out


class _Probe:
    def __init__(self) -> None:
        self.slowest_us: int | None = None
        """The longest command in microseconds; None when Redis could not be asked."""
        self.slowest: Slowest | None = None
        """The same, by kind (None when Redis could not be asked)."""


@contextlib.contextmanager
def slowest_command(url: str | None, scripts: Mapping[str, str] | None = None) -> Iterator[_Probe]:
    """Record the slowest Redis command while the block runs (``probe.slowest_us``);
    ``scripts`` names the script SHAs (SHA -> file under ``lua/``)."""
    probe = _Probe()
    if not url:
        yield probe
        return
    try:
        client = redis.Redis.from_url(url)
        old = client.config_get("slowlog-*") | client.config_get("latency-monitor-threshold")
        client.config_set("slowlog-log-slower-than", FLOOR_US)
        client.config_set("slowlog-max-len", 1024)
        client.config_set("latency-monitor-threshold", LATENCY_FLOOR_MS)
        client.slowlog_reset()
        client.latency_reset()
    except (redis.RedisError, OSError):
        yield probe
        return
    try:
        yield probe
        entries = client.slowlog_get(1024)
        events = events_of(client.latency_latest())
        names = script_names() if scripts is None else scripts
        probe.slowest = replace(slowest_of(entries, names), events=events)
        probe.slowest_us = probe.slowest.us
    except (redis.RedisError, OSError):
        pass
    finally:
        with contextlib.suppress(redis.RedisError, OSError):
            for name, value in old.items():
                client.config_set(str(name), str(value))
        client.close()
