"""The timeline of an artifact against a scripted crowd: joins and leaves at known minutes
(Redis's clock set by libfaketime), read back over HTTP at 1m and, after the worker's
rollup into each database backend, at 1h and 1d."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient

from presence_svc.database import open_database
from presence_svc.http.app import create_app
from presence_svc.redis.connection import connect
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from presence_svc.timefmt import to_iso
from presence_svc.timeline.rollup import TimelineRollup
from presence_svc.timeline.store import timeline_store
from tests.conftest import SECRET, free_port
from tests.timeline.conftest import Clock

AppClient = TestClient[web.Request, web.Application]
Auth = Callable[..., dict[str, str]]

MINUTE = 60_000
HOUR = 3_600_000
T0 = (int(time.time() * 1000) // HOUR - 48) * HOUR
"""A whole hour two days ago: the crowd's first minute."""
DOC = "doc-crowd"


def _settings(url: str, tmp_path: Path, **changes: Any) -> Settings:
    return Settings(
        redis_url=url,
        data_dir=tmp_path / "data",
        ledger_url=changes.pop("ledger_url", None),
        jwt_secret=SECRET,
        heartbeat_interval_s=15,
        online_timeout_s=3600,
        away_timeout_s=3600,
        retention_s=7200,
        partitions=4,
        run_worker=False,
        **changes,
    )


@pytest.fixture
async def app(
    clock: Clock, tmp_path: Path, aiohttp_client: Callable[..., Awaitable[AppClient]]
) -> AppClient:
    return await aiohttp_client(create_app(_settings(clock.url, tmp_path)))


class Crowd:
    def __init__(self, client: AppClient, auth: Auth, clock: Clock) -> None:
        self.client, self.auth, self.clock = client, auth, clock

    async def at(self, minute: int, second: int, *moves: tuple[str, str, str]) -> None:
        """At ``T0 + minute:second``, each (``join``|``leave``, user, tab) in order."""
        self.clock.set(T0 + minute * MINUTE + second * 1000)
        for move, user, tab in moves:
            path = "/v1/heartbeat" if move == "join" else "/v1/leave"
            body = {"artifactId": DOC, "sessionId": f"{user}-{tab}-0123456789abcdef"}
            resp = await self.client.post(path, json=body, headers=self.auth(user))
            assert resp.status == 200, await resp.text()


async def _scripted(crowd: Crowd) -> None:
    await crowd.at(0, 5, ("join", "alice", "t1"), ("join", "bob", "t1"))  # 2 users, 2 sessions
    # 3 users 4 sessions at once, then bob goes: 2 users, 3 sessions
    await crowd.at(1, 10, ("join", "carol", "t1"), ("join", "alice", "t2"), ("leave", "bob", "t1"))
    # minutes 2 and 3: nobody comes or goes
    await crowd.at(4, 20, ("leave", "carol", "t1"), ("leave", "alice", "t1"))  # 1 user, 1 session
    await crowd.at(6, 30, ("leave", "alice", "t2"))  # empty


async def _read(client: AppClient, auth: Auth, **query: str) -> tuple[int, Any]:
    resp = await client.get(
        f"/v1/artifacts/{DOC}/timeline", params=query, headers=auth("board", scope="dashboard")
    )
    return resp.status, await resp.json()


def _points(body: Any) -> list[tuple[str, int, int]]:
    return [(p["t"], p["online"], p["sessions"]) for p in body["points"]]


def _expect(start: int, step: int, values: list[tuple[int, int]]) -> list[tuple[str, int, int]]:
    return [(to_iso(start + i * step), u, s) for i, (u, s) in enumerate(values)]


CROWD_MINUTES = [(0, 0), (2, 2), (3, 4), (2, 3), (2, 3), (2, 3), (1, 1), (1, 1), (0, 0), (0, 0)]
"""Minutes T0-1 .. T0+8: each minute's peak, quiet minutes carrying the last values."""


async def test_minute_peaks_follow_the_crowd_and_carry_through_quiet_minutes(
    app: AppClient, auth: Auth, clock: Clock
) -> None:
    await _scripted(Crowd(app, auth, clock))
    since, until = to_iso(T0 - MINUTE), to_iso(T0 + 9 * MINUTE)
    status, body = await _read(app, auth, since=since, until=until, step="1m")
    assert status == 200, body
    assert _points(body) == _expect(T0 - MINUTE, MINUTE, CROWD_MINUTES)
    assert body["peak"] == {"online": 3, "at": to_iso(T0 + MINUTE)}
    assert body["step"] == "1m"
    # A range inside the quiet minutes carries what the last change left; one before the
    # crowd knows nothing happened; one long after, that everyone had gone.
    quiet = await _read(app, auth, since=to_iso(T0 + 2 * MINUTE), until=to_iso(T0 + 4 * MINUTE))
    assert _points(quiet[1]) == _expect(T0 + 2 * MINUTE, MINUTE, [(2, 3), (2, 3)])
    before = await _read(app, auth, since=to_iso(T0 - 5 * MINUTE), until=to_iso(T0))
    assert _points(before[1]) == _expect(T0 - 5 * MINUTE, MINUTE, [(0, 0)] * 5)
    assert before[1]["peak"] == {"online": 0, "at": to_iso(T0 - 5 * MINUTE)}
    after = await _read(app, auth, since=to_iso(T0 + HOUR), until=to_iso(T0 + HOUR + 2 * MINUTE))
    assert _points(after[1]) == _expect(T0 + HOUR, MINUTE, [(0, 0), (0, 0)])


async def test_a_refreshing_heartbeat_leaves_the_timeline_alone(
    app: AppClient, auth: Auth, clock: Clock
) -> None:
    crowd = Crowd(app, auth, clock)
    await crowd.at(0, 5, ("join", "alice", "t1"))
    info = Keyspace(4).artifact(DOC).info
    with redis.Redis.from_url(clock.url) as r:
        # the first minutes are packed in the info hash: no key or index entry of their own
        assert not [k for k in r.keys("*") if k.endswith((b":tl", b":tli"))]
        before = r.hget(info, "~t")
        assert before
        await crowd.at(3, 0, ("join", "alice", "t1"))  # the same tab again: a refresh
        assert r.hget(info, "~t") == before
        assert not [k for k in r.keys("*") if k.endswith((b":tl", b":tli"))]


async def test_no_timeline_is_kept_when_it_is_off(
    clock: Clock, tmp_path: Path, auth: Auth, aiohttp_client: Callable[..., Awaitable[AppClient]]
) -> None:
    client = await aiohttp_client(create_app(_settings(clock.url, tmp_path, timeline_days=0)))
    await Crowd(client, auth, clock).at(0, 5, ("join", "alice", "t1"), ("join", "bob", "t1"))
    with redis.Redis.from_url(clock.url) as r:
        assert not [k for k in r.keys("*") if k.endswith((b":tl", b":tli"))]
    status, body = await _read(client, auth, since=to_iso(T0), until=to_iso(T0 + MINUTE))
    assert status == 200
    assert _points(body) == _expect(T0, MINUTE, [(0, 0)])


async def test_the_hourly_rollup_is_idempotent_and_serves_hours_and_days(
    app: AppClient, auth: Auth, clock: Clock, tmp_path: Path, ledger_url: str
) -> None:
    await _scripted(Crowd(app, auth, clock))
    since, until = to_iso(T0 - HOUR), to_iso(T0 + 2 * HOUR)
    hours = [(0, 0), (3, 4), (0, 0)]
    # Before the rollup the hours come from Redis ...
    status, body = await _read(app, auth, since=since, until=until, step="1h")
    assert status == 200, body
    assert _points(body) == _expect(T0 - HOUR, HOUR, hours)

    settings = _settings(clock.url, tmp_path, ledger_url=ledger_url)
    database = open_database(ledger_url)
    await database.open()
    redis_conn = connect(settings)
    await redis_conn.load_scripts()
    try:
        store = timeline_store(database.connection)
        rollup = TimelineRollup(redis_conn, store, settings)
        later = T0 + 2 * HOUR
        index = Keyspace(settings.partitions).artifact(DOC).timeline_index
        # While Redis's clock says the hour runs on, Redis keeps its minutes (and the
        # artifact in the index) whatever the worker's clock says: like a worker killed
        # after it wrote the row, the hour is rolled up again, and writes the same row.
        assert await rollup.run_once(later) == 1
        first = await store.hours(DOC, T0 - HOUR, T0 + 2 * HOUR)
        with redis.Redis.from_url(clock.url) as r:
            assert r.zscore(index, DOC) == T0 // HOUR
        clock.set(later)
        assert await rollup.run_once(later) == 1
        assert await store.hours(DOC, T0 - HOUR, T0 + 2 * HOUR) == first
        assert await rollup.run_once(later) == 0  # nothing left to roll up
        with redis.Redis.from_url(clock.url) as r:
            assert r.zscore(index, DOC) is None
        (before, rows) = first
        assert before is None
        assert [(hour, tuple(values)) for hour, values in rows] == [(T0, (3, 4, 0, 0))]
    finally:
        await redis_conn.aclose()
        await database.close()

    # Redis keeps the rolled-up hour as one record instead of its minutes, and the minutes
    # read the same from it.
    with redis.Redis.from_url(clock.url) as r:
        fields = r.hkeys(Keyspace(4).artifact(DOC).timeline)
    # ('~c' and '~r': the hash's birth and its rollups, timeline_read.lua's token)
    assert sorted(fields) == sorted([f"h{T0 // HOUR}".encode(), b"~", b"~c", b"~p", b"~r"])
    minutes = await _read(app, auth, since=to_iso(T0 - MINUTE), until=to_iso(T0 + 9 * MINUTE))
    assert _points(minutes[1]) == _expect(T0 - MINUTE, MINUTE, CROWD_MINUTES)
    assert minutes[1]["peak"] == {"online": 3, "at": to_iso(T0 + MINUTE)}
    quiet = await _read(app, auth, since=to_iso(T0 + 2 * MINUTE), until=to_iso(T0 + 4 * MINUTE))
    assert _points(quiet[1]) == _expect(T0 + 2 * MINUTE, MINUTE, [(2, 3), (2, 3)])
    # ... and the hours after it from the database, with the same answer.
    served = create_app(_settings(clock.url, tmp_path, ledger_url=ledger_url))
    client = await app_client_for(served)
    try:
        status, body = await _read(client, auth, since=since, until=until, step="1h")
        assert status == 200, body
        assert _points(body) == _expect(T0 - HOUR, HOUR, hours)
        day = T0 // 86_400_000 * 86_400_000
        status, body = await _read(
            client, auth, since=to_iso(day), until=to_iso(day + 86_400_000), step="1d"
        )
        assert _points(body) == [(to_iso(day), 3, 4)]
        assert body["peak"] == {"online": 3, "at": to_iso(day)}
    finally:
        await client.close()


async def app_client_for(app: web.Application) -> AppClient:
    from aiohttp.test_utils import TestServer

    client: AppClient = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_the_rollup_prunes_hours_older_than_the_keep_time(
    app: AppClient, auth: Auth, clock: Clock, tmp_path: Path
) -> None:
    crowd = Crowd(app, auth, clock)
    await _scripted(crowd)
    await crowd.at(7, 0, ("join", "erin", "t1"))  # and stays
    later = T0 + 86_400_000 + 2 * HOUR  # a day on: over the keep time of one day
    clock.set(later)
    await crowd.at((later - T0) // MINUTE, 0, ("join", "dave", "t1"))
    settings = _settings(clock.url, tmp_path, timeline_days=1)
    database = open_database(settings.resolved_ledger_url)
    await database.open()
    redis_conn = connect(settings)
    await redis_conn.load_scripts()
    try:
        rollup = TimelineRollup(redis_conn, timeline_store(database.connection), settings)
        clock.set(later + HOUR)
        await rollup.run_once(later + HOUR)
    finally:
        await redis_conn.aclose()
        await database.close()
    with redis.Redis.from_url(clock.url) as r:
        fields = r.hkeys(Keyspace(4).artifact(DOC).timeline)
    # the crowd's hour is gone, dave's is kept as one record
    assert sorted(f for f in fields if not f.startswith(b"~")) == [f"h{later // HOUR}".encode()]
    # dave is still here (erin's timeout was settled when he came, no sweeper runs here):
    # the quiet minutes after his hour carry him from its record; those after the crowd's
    # hour, whose record is gone, carry erin from the database's row
    since = later // HOUR * HOUR + HOUR
    status, body = await _read(app, auth, since=to_iso(since), until=to_iso(since + 2 * MINUTE))
    assert status == 200
    assert _points(body) == _expect(since, MINUTE, [(1, 1), (1, 1)])
    since = T0 + 2 * HOUR
    status, body = await _read(app, auth, since=to_iso(since), until=to_iso(since + 2 * MINUTE))
    assert _points(body) == _expect(since, MINUTE, [(1, 1), (1, 1)])
    # The day the minutes were pruned from is still there, by the hour.
    status, body = await _read(app, auth, since=to_iso(T0), until=to_iso(T0 + HOUR), step="1h")
    assert status == 200
    assert _points(body) == [(to_iso(T0), 3, 4)]


async def test_a_minute_after_a_rolled_up_hour_starts_from_its_record(
    app: AppClient, auth: Auth, clock: Clock, tmp_path: Path
) -> None:
    crowd = Crowd(app, auth, clock)
    await crowd.at(0, 5, ("join", "alice", "t1"), ("join", "bob", "t1"))
    await crowd.at(50, 0, ("join", "alice", "t1"), ("join", "bob", "t1"))  # refreshes
    settings = _settings(clock.url, tmp_path)
    database = open_database(settings.resolved_ledger_url)
    await database.open()
    redis_conn = connect(settings)
    await redis_conn.load_scripts()
    try:
        clock.set(T0 + HOUR + MINUTE)
        rollup = TimelineRollup(redis_conn, timeline_store(database.connection), settings)
        assert await rollup.run_once(T0 + HOUR + MINUTE) == 1
    finally:
        await redis_conn.aclose()
        await database.close()
    # bob leaves in the next hour: that minute had both of them at its start
    await crowd.at(65, 0, ("leave", "bob", "t1"))
    since = T0 + 64 * MINUTE
    status, body = await _read(app, auth, since=to_iso(since), until=to_iso(since + 3 * MINUTE))
    assert status == 200
    assert _points(body) == _expect(since, MINUTE, [(2, 2), (2, 2), (1, 1)])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"step": "5m"}, "step"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no zone
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-31T00:00:00Z"}, "step"),
        ({"since": "2000-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z", "step": "1h"}, "step"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    app: AppClient, auth: Auth, query: dict[str, str], field: str
) -> None:
    status, body = await _read(app, auth, **query)
    assert status == 400, body
    assert [e["field"] for e in body["errors"]] == [field]


async def test_seven_days_of_minutes_is_the_most_one_read_makes(app: AppClient, auth: Auth) -> None:
    """The cap is 10 080 points, a week's chart at 1m: one minute more is a 400 naming
    ``step``, and a week of hours is well inside it."""
    end = T0 + 2 * HOUR + 17 * MINUTE  # ranges need not start on an hour
    week = to_iso(end - 7 * 86_400_000)
    status, body = await _read(app, auth, since=week, until=to_iso(end), step="1m")
    assert status == 200, body
    assert len(body["points"]) == 10_080
    assert body["points"][0]["t"] == week
    assert body["points"][-1]["t"] == to_iso(end - MINUTE)
    longer = to_iso(end - 7 * 86_400_000 - MINUTE)
    status, body = await _read(app, auth, since=longer, until=to_iso(end), step="1m")
    assert status == 400, body
    assert [e["field"] for e in body["errors"]] == ["step"]
    # a since inside a minute starts with that minute, so it makes one point more
    status, body = await _read(app, auth, since=to_iso(end - 7 * 86_400_000 - 1), until=to_iso(end))
    assert status == 400, body
    status, body = await _read(app, auth, since=longer, until=to_iso(end), step="1h")
    assert status == 200, body
    assert len(body["points"]) == 7 * 24 + 1


async def test_the_timeline_is_a_dashboard_read(app: AppClient, auth: Auth) -> None:
    resp = await app.get(f"/v1/artifacts/{DOC}/timeline", headers=auth("alice"))
    assert resp.status == 403
    resp = await app.get("/v1/artifacts/bad%20id/timeline", headers=auth("b", scope="dashboard"))
    assert resp.status == 400
    status, body = await _read(app, auth)  # the last hour by default
    assert status == 200
    assert len(body["points"]) in (60, 61)


async def test_a_dependency_down_is_a_503_with_retry_after(
    clock: Clock, tmp_path: Path, auth: Auth, aiohttp_client: Callable[..., Awaitable[AppClient]]
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}"
    no_redis = await aiohttp_client(create_app(_settings(nowhere, tmp_path / "a")))
    status, body = await _read(no_redis, auth)
    assert status == 503, body
    no_db_url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    no_db = await aiohttp_client(create_app(_settings(clock.url, tmp_path, ledger_url=no_db_url)))
    await Crowd(no_db, auth, clock).at(0, 5, ("join", "alice", "t1"))
    # minutes Redis holds come from Redis alone
    status, body = await _read(no_db, auth, since=to_iso(T0), until=to_iso(T0 + 2 * MINUTE))
    assert status == 200, body
    assert _points(body) == _expect(T0, MINUTE, [(1, 1), (1, 1)])
    resp = await no_db.get(
        f"/v1/artifacts/{DOC}/timeline",
        params={"step": "1h"},
        headers=auth("board", scope="dashboard"),
    )
    assert resp.status == 503, await resp.text()
    assert resp.content_type == "application/problem+json"
    assert int(resp.headers["Retry-After"]) >= 1
