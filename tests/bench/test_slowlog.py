"""The bench's SLOWLOG probe: the slowest Redis command of a measurement, and apart from
it the slowest script call and the slowest plain command (a plain command logged about as
long as the scripts says the machine stalled Redis, not that a script ran long)."""

from __future__ import annotations

import redis

from presence_svc.bench.slowlog import FLOOR_US, SCRIPT_COMMANDS, slowest_command

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


def test_without_redis_nothing_is_claimed() -> None:
    with slowest_command("redis://127.0.0.1:1/0") as probe:
        pass
    assert probe.slowest is None
    assert probe.slowest_us is None
