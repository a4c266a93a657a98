"""The bench's SLOWLOG probe: the slowest Redis command of a measurement, and apart from
it the slowest script call and the slowest plain command (a plain command logged about as
long as the scripts says the machine stalled Redis, not that a script ran long)."""

from __future__ import annotations

import redis

from presence_svc.bench.slowlog import (
    FLOOR_US,
    SCRIPT_COMMANDS,
    script_names,
    slowest_command,
    slowest_of,
)
from presence_svc.redis.scripts import Scripts

BUSY = "local i = 0 while i < 3000000 do i = i + 1 end return i"
"""A script that keeps Redis busy for milliseconds."""


def test_the_slowest_script_and_plain_command_are_told_apart(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    before = sync_redis.config_get("slowlog-log-slower-than")
    with slowest_command(redis_url) as probe:
        assert sync_redis.eval(BUSY, 0) == 3_000_000
        sync_redis.set("plain", "1")
        assert sync_redis.get("plain") == b"1"
    slowest = probe.slowest
    assert slowest is not None
    assert slowest.script_us >= 1_000  # three million Lua steps: milliseconds
    assert probe.slowest_us == slowest.us == max(slowest.script_us, slowest.plain_us)
    # the plain commands took microseconds: logged (>= the floor) only if Redis stalled
    assert slowest.plain_us == 0 or slowest.plain_us >= FLOOR_US
    if slowest.script_us >= slowest.plain_us:
        assert slowest.command in SCRIPT_COMMANDS
    else:
        assert slowest.command in {"SET", "GET"}
    # the log's settings are put back
    assert sync_redis.config_get("slowlog-log-slower-than") == before


def test_the_slowest_script_is_named_and_redis_latency_events_are_kept(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    """Which script held Redis, by its file, and Redis's own latency monitor: what a
    bench row needs to tell a long script from a stalled Redis."""
    busy = sync_redis.script_load(BUSY)
    quick = sync_redis.script_load("return 1")
    before = sync_redis.config_get("latency-monitor-threshold")
    with slowest_command(redis_url, {busy: "test/busy", quick: "test/quick"}) as probe:
        assert sync_redis.evalsha(quick, 0) == 1
        assert sync_redis.evalsha(busy, 0) == 3_000_000
        assert sync_redis.evalsha(quick, 0) == 1
    slowest = probe.slowest
    assert slowest is not None
    assert slowest.script == "test/busy"
    assert slowest.events.get("command", 0) >= 1  # milliseconds of Lua, as Redis saw them
    assert sync_redis.config_get("latency-monitor-threshold") == before


def test_a_service_script_is_named_by_its_file() -> None:
    settle = Scripts().settle_tokens
    entries = [
        {"duration": 150, "command": b"GET k"},
        {"duration": 420, "command": f"EVALSHA {settle.sha} 1 rl:{{a}}:u/view 5 20 1".encode()},
        {"duration": 130, "command": b"EVAL return 1 0"},
    ]
    slowest = slowest_of(entries, script_names())
    assert (slowest.script, slowest.script_us, slowest.plain_us) == ("limits/settle", 420, 150)
    assert slowest_of(entries[:1] + entries[2:]).script == "EVAL"


def test_without_redis_nothing_is_claimed() -> None:
    with slowest_command("redis://127.0.0.1:1/0") as probe:
        pass
    assert probe.slowest is None
    assert probe.slowest_us is None
