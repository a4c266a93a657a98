"""Where Redis keeps an artifact's minutes (lib/timeline.lua): packed in its info hash's
``~t`` while it has keys and they fit, in the timeline hash (and the rollup index)
otherwise; a read, the rollup and the next minute give the same either way, and a timeline
an earlier version wrote (every minute in the timeline hash) reads and goes on as before."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest
import redis

from presence_svc.database import open_database
from presence_svc.http.app import create_app
from presence_svc.live.sweeper import Sweeper
from presence_svc.redis.connection import connect
from presence_svc.redis.keys import ArtifactKeys, Keyspace
from presence_svc.settings import Settings
from presence_svc.timefmt import to_iso
from presence_svc.timeline.rollup import TimelineRollup
from presence_svc.timeline.store import timeline_store
from tests.timeline.conftest import Clock
from tests.timeline.test_timeline import (
    DOC,
    HOUR,
    MINUTE,
    T0,
    AppClient,
    Auth,
    Crowd,
    _expect,
    _points,
    _read,
    _settings,
)

KEYS: ArtifactKeys = Keyspace(4).artifact(DOC)


@pytest.fixture
async def app(
    clock: Clock, tmp_path: Path, aiohttp_client: Callable[..., Awaitable[AppClient]]
) -> AppClient:
    return await aiohttp_client(create_app(_settings(clock.url, tmp_path)))


def _minutes_in(r: redis.Redis) -> tuple[bool, list[bytes], bool]:
    """Whether the info hash packs minutes, the timeline hash's minute fields, and whether
    the artifact is in the rollup index."""
    packed = r.hget(KEYS.info, "~t") is not None
    fields = sorted(f for f in r.hkeys(KEYS.timeline) if f.isdigit())
    return packed, fields, r.zscore(KEYS.timeline_index, DOC) is not None


async def _roll_up(settings: Settings, clock: Clock, at: int) -> int:
    """The worker's rollup with Redis's clock at ``at``: the hour rows it wrote."""
    clock.set(at)
    database = open_database(settings.resolved_ledger_url)
    await database.open()
    redis_conn = connect(settings)
    await redis_conn.load_scripts()
    try:
        rollup = TimelineRollup(redis_conn, timeline_store(database.connection), settings)
        return await rollup.run_once(at)
    finally:
        await redis_conn.aclose()
        await database.close()


async def test_a_live_artifacts_minutes_stay_in_its_info_hash_until_the_rollup(
    app: AppClient, auth: Auth, clock: Clock, tmp_path: Path
) -> None:
    crowd = Crowd(app, auth, clock)
    await crowd.at(0, 5, ("join", "alice", "t1"), ("join", "bob", "t1"))
    await crowd.at(1, 10, ("join", "carol", "t1"), ("join", "alice", "t2"), ("leave", "bob", "t1"))
    await crowd.at(4, 20, ("leave", "carol", "t1"))  # alice stays, with two tabs
    minutes = [(0, 0), (2, 2), (3, 4), (2, 3), (2, 3), (2, 3), (1, 2), (1, 2)]
    since, until = to_iso(T0 - MINUTE), to_iso(T0 + 7 * MINUTE)
    with redis.Redis.from_url(clock.url) as r:
        assert _minutes_in(r) == (True, [], False)
        assert not r.exists(KEYS.timeline, KEYS.timeline_index)
        assert r.object("encoding", KEYS.info) in (b"ziplist", b"listpack")
    status, body = await _read(app, auth, since=since, until=until)
    assert status == 200, body
    assert _points(body) == _expect(T0 - MINUTE, MINUTE, minutes)
    hourly = await _read(app, auth, since=to_iso(T0), until=to_iso(T0 + HOUR), step="1h")
    assert _points(hourly[1]) == [(to_iso(T0), 3, 4)]

    await crowd.at(55, 0, ("join", "alice", "t1"), ("join", "alice", "t2"))  # refreshes
    # The hour ends: the worker finds the artifact by the sweep index, writes its row and
    # keeps the hour as one record, as for minutes in the timeline hash.
    settings = _settings(clock.url, tmp_path)
    assert await _roll_up(settings, clock, T0 + HOUR + MINUTE) == 1
    assert await _roll_up(settings, clock, T0 + HOUR + MINUTE) == 0
    with redis.Redis.from_url(clock.url) as r:
        assert _minutes_in(r) == (False, [], False)
        fields = sorted(r.hkeys(KEYS.timeline))
        assert fields == sorted([f"h{T0 // HOUR}".encode(), b"~", b"~c", b"~p", b"~r"])
        assert r.pttl(KEYS.timeline) > 0
    database = open_database(settings.resolved_ledger_url)
    await database.open()
    try:
        _, rows = await timeline_store(database.connection).hours(DOC, T0, T0 + HOUR)
    finally:
        await database.close()
    assert [(hour, tuple(values)) for hour, values in rows] == [(T0, (3, 4, 1, 2))]
    status, body = await _read(app, auth, since=since, until=until)
    assert _points(body) == _expect(T0 - MINUTE, MINUTE, minutes)

    # A minute of the next hour starts from the hour's record, in the info hash again.
    await crowd.at(65, 0, ("join", "carol", "t1"))
    with redis.Redis.from_url(clock.url) as r:
        assert _minutes_in(r) == (True, [], False)
    since = T0 + 64 * MINUTE
    status, body = await _read(app, auth, since=to_iso(since), until=to_iso(since + 3 * MINUTE))
    assert _points(body) == _expect(since, MINUTE, [(1, 2), (2, 3), (2, 3)])


async def test_minutes_that_outgrow_the_info_hash_move_to_the_timeline_hash(
    app: AppClient, auth: Auth, clock: Clock
) -> None:
    crowd = Crowd(app, auth, clock)
    await crowd.at(0, 5, ("join", "alice", "t1"))
    moved_at = None
    for minute in range(1, 21):  # bob comes and goes: a change every minute
        await crowd.at(minute, 0, ("join" if minute % 2 else "leave", "bob", "t1"))
        with redis.Redis.from_url(clock.url) as r:
            packed = r.hget(KEYS.info, "~t")
            assert packed is None or len(packed) <= 64
            if packed is None and moved_at is None:
                moved_at = minute
            assert r.object("encoding", KEYS.info) in (b"ziplist", b"listpack")
    assert moved_at is not None
    assert moved_at > 5
    with redis.Redis.from_url(clock.url) as r:
        packed, fields, indexed = _minutes_in(r)
    # every minute in the timeline hash from then on, and the artifact in the index
    assert (packed, indexed) == (False, True)
    assert fields == sorted(str(T0 // MINUTE + m).encode() for m in range(21))
    minutes = [(0, 0), (1, 1)] + [(2, 2)] * 20 + [(1, 1)]
    since, until = to_iso(T0 - MINUTE), to_iso(T0 + 22 * MINUTE)
    status, body = await _read(app, auth, since=since, until=until)
    assert status == 200, body
    assert _points(body) == _expect(T0 - MINUTE, MINUTE, minutes)


async def test_the_last_sessions_deletion_moves_the_minutes_to_the_timeline_hash(
    clock: Clock, tmp_path: Path, auth: Auth, aiohttp_client: Callable[..., Awaitable[AppClient]]
) -> None:
    settings = replace(_settings(clock.url, tmp_path), online_timeout_s=60, retention_s=120)
    client = await aiohttp_client(create_app(settings))
    await Crowd(client, auth, clock).at(0, 5, ("join", "alice", "t1"))
    with redis.Redis.from_url(clock.url) as r:
        assert _minutes_in(r) == (True, [], False)
    # alice's timeout is settled and her session deleted by the same sweep, at minute 3
    clock.set(T0 + 3 * MINUTE)
    redis_conn = connect(settings)
    await redis_conn.load_scripts()
    try:
        await Sweeper(redis_conn, settings).sweep_once()
    finally:
        await redis_conn.aclose()
    with redis.Redis.from_url(clock.url) as r:
        assert not r.exists(KEYS.sessions, KEYS.info)
        assert _minutes_in(r) == (False, [str(T0 // MINUTE + m).encode() for m in (0, 3)], True)
    since, until = to_iso(T0), to_iso(T0 + 5 * MINUTE)
    status, body = await _read(client, auth, since=since, until=until)
    assert status == 200, body
    assert _points(body) == _expect(T0, MINUTE, [(1, 1), (1, 1), (1, 1), (1, 1), (0, 0)])


_OLD_RECORD = msgspec.msgpack.Encoder()


async def test_a_timeline_an_earlier_version_wrote_is_read_and_goes_on(
    app: AppClient, auth: Auth, clock: Clock, tmp_path: Path
) -> None:
    """Before '~t', every minute went into the timeline hash and the artifact into the
    rollup index at its first one: such a timeline keeps that layout until rolled up."""
    crowd = Crowd(app, auth, clock)
    await crowd.at(0, 5, ("join", "alice", "t1"))
    first = T0 // MINUTE
    with redis.Redis.from_url(clock.url) as r:
        # what the earlier version left after alice's join (and no '~t')
        r.hdel(KEYS.info, "~t")
        record = _OLD_RECORD.encode([1, 1, 1, 1, 0, 0])
        r.hset(KEYS.timeline, mapping={first: record, "~": first, "~c": T0 + 5000})
        r.pexpire(KEYS.timeline, 7 * 86_400_000)
        r.zadd(KEYS.timeline_index, {DOC: T0 // HOUR})
    await crowd.at(2, 0, ("join", "bob", "t1"))
    with redis.Redis.from_url(clock.url) as r:
        assert _minutes_in(r) == (False, [str(first).encode(), str(first + 2).encode()], True)
    since, until = to_iso(T0 - MINUTE), to_iso(T0 + 3 * MINUTE)
    status, body = await _read(app, auth, since=since, until=until)
    assert status == 200, body
    assert _points(body) == _expect(T0 - MINUTE, MINUTE, [(0, 0), (1, 1), (1, 1), (2, 2)])

    await crowd.at(50, 0, ("join", "alice", "t1"), ("join", "bob", "t1"))  # refreshes
    settings = _settings(clock.url, tmp_path)
    assert await _roll_up(settings, clock, T0 + HOUR + MINUTE) == 1
    with redis.Redis.from_url(clock.url) as r:
        assert _minutes_in(r) == (False, [], False)
    # rolled up, the artifact's next minutes go to its info hash, from the hour's record
    await crowd.at(62, 0, ("leave", "bob", "t1"))
    with redis.Redis.from_url(clock.url) as r:
        assert _minutes_in(r) == (True, [], False)
    status, body = await _read(app, auth, since=since, until=until)
    assert _points(body) == _expect(T0 - MINUTE, MINUTE, [(0, 0), (1, 1), (1, 1), (2, 2)])
    since = T0 + 61 * MINUTE
    status, body = await _read(app, auth, since=to_iso(since), until=to_iso(since + 3 * MINUTE))
    assert _points(body) == _expect(since, MINUTE, [(2, 2), (2, 2), (1, 1)])


async def test_minutes_in_two_hours_of_the_info_hash_roll_up_one_hour_at_a_time(
    app: AppClient, auth: Auth, clock: Clock, tmp_path: Path
) -> None:
    crowd = Crowd(app, auth, clock)
    await crowd.at(58, 0, ("join", "alice", "t1"))
    await crowd.at(61, 0, ("join", "bob", "t1"))  # the next hour, not ended yet
    settings = _settings(clock.url, tmp_path)
    assert await _roll_up(settings, clock, T0 + HOUR + 2 * MINUTE) == 1
    with redis.Redis.from_url(clock.url) as r:
        packed = r.hget(KEYS.info, "~t")
        assert packed is not None
        # what is left starts at bob's minute, from alice's values
        assert msgspec.msgpack.decode(packed)[:3] == [T0 // MINUTE + 61, 1, 1]
        assert r.zscore(KEYS.timeline_index, DOC) is None
    since = T0 + 57 * MINUTE
    status, body = await _read(app, auth, since=to_iso(since), until=to_iso(since + 6 * MINUTE))
    assert status == 200, body
    assert _points(body) == _expect(since, MINUTE, [(0, 0), (1, 1), (1, 1), (1, 1), (2, 2), (2, 2)])
    assert await _roll_up(settings, clock, T0 + 2 * HOUR + MINUTE) == 1
    with redis.Redis.from_url(clock.url) as r:
        assert _minutes_in(r) == (False, [], False)
    status, body = await _read(app, auth, since=to_iso(since), until=to_iso(since + 6 * MINUTE))
    assert _points(body) == _expect(since, MINUTE, [(0, 0), (1, 1), (1, 1), (1, 1), (2, 2), (2, 2)])
