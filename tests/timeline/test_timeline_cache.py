"""The 1m JSON answer is joined from each hour's encoded points, kept by content in a
per-process cache (``timeline.answer``): it must be byte for byte what msgspec makes of the
points read the plain way (the msgpack answer), cold and warm, whatever the range's edges,
and what still changes (the current hour) must show at once."""

from __future__ import annotations

import gzip
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from presence_svc.database import open_database
from presence_svc.http.app import create_app
from presence_svc.http.resources import TIMELINE
from presence_svc.redis.connection import connect
from presence_svc.schemas import TimelineOut
from presence_svc.settings import ConfigError, Settings
from presence_svc.timefmt import to_iso
from presence_svc.timeline.answer import Encoded, Fragments, minutes_json
from presence_svc.timeline.pieces import Piece, ValuesPiece
from presence_svc.timeline.rollup import TimelineRollup
from presence_svc.timeline.store import timeline_store
from tests.timeline.conftest import Clock
from tests.timeline.test_timeline import DOC, HOUR, MINUTE, T0, Crowd, _settings

AppClient = TestClient[web.Request, web.Application]
Auth = Callable[..., dict[str, str]]


async def _answers(client: AppClient, auth: Auth, since: int, until: int) -> tuple[bytes, Any]:
    """The JSON answer's bytes (the same plain and gzipped), and the msgpack answer (read
    without the cache)."""
    params = {"since": to_iso(since), "until": to_iso(until), "step": "1m"}
    headers = auth("board", scope="dashboard")
    path = f"/v1/artifacts/{DOC}/timeline"
    resp = await client.get(path, params=params, headers={**headers, "Accept-Encoding": "identity"})
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    assert "Content-Encoding" not in resp.headers
    raw = await resp.read()
    resp = await client.get(path, params=params, headers={**headers, "Accept-Encoding": "gzip"})
    assert resp.status == 200
    assert resp.headers["Content-Encoding"] == "gzip"
    assert resp.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(await resp.read()) == raw
    resp = await client.get(
        path, params=params, headers={**headers, "Accept": "application/msgpack"}
    )
    assert resp.status == 200
    return raw, msgpack.unpackb(await resp.read())


def _as_msgspec_writes(raw: bytes, plain: Any) -> None:
    assert json.loads(raw) == plain
    assert raw == msgspec.json.encode(msgspec.convert(plain, TimelineOut)) + b"\n"


def _points(raw: bytes) -> dict[str, tuple[int, int]]:
    return {p["t"]: (p["online"], p["sessions"]) for p in json.loads(raw)["points"]}


async def _roll_up(clock: Clock, tmp_path: Path, at: int) -> None:
    """The worker's rollup of every hour that ended by ``at`` (Redis's clock set to it)."""
    settings = _settings(clock.url, tmp_path)
    database = open_database(settings.resolved_ledger_url)
    await database.open()
    redis_conn = connect(settings)
    await redis_conn.load_scripts()
    try:
        clock.set(at)
        rollup = TimelineRollup(redis_conn, timeline_store(database.connection), settings)
        assert await rollup.run_once(at) >= 1
    finally:
        await redis_conn.aclose()
        await database.close()


async def _three_hours(crowd: Crowd) -> None:
    """Hour 0: up to 3 users at minute 1; hour 1: nobody comes or goes (alice stays, her
    refreshes change nothing); hour 2: 3 users again at minute 130 (as many as at minute 1,
    later)."""
    await crowd.at(0, 5, ("join", "alice", "t1"), ("join", "bob", "t1"))
    await crowd.at(1, 10, ("join", "carol", "t1"), ("leave", "bob", "t1"))
    await crowd.at(4, 20, ("leave", "carol", "t1"))
    for minute in (50, 100):  # within the online timeout (an hour)
        await crowd.at(minute, 0, ("join", "alice", "t1"))
    await crowd.at(130, 0, ("join", "bob", "t1"), ("join", "carol", "t1"))
    await crowd.at(131, 0, ("leave", "bob", "t1"), ("leave", "carol", "t1"))
    await crowd.at(150, 0, ("join", "alice", "t1"))


@pytest.fixture
async def app(
    clock: Clock, tmp_path: Path, aiohttp_client: Callable[..., Awaitable[AppClient]]
) -> AppClient:
    # raw bodies: the gzipped answer is checked as it came
    return await aiohttp_client(create_app(_settings(clock.url, tmp_path)), auto_decompress=False)


EDGES = [
    (T0 - HOUR, T0 + 4 * HOUR),  # whole hours, rolled up, quiet and current
    (T0 + 17 * MINUTE, T0 + 3 * HOUR + 5 * MINUTE),  # cut hours at both ends
    (T0 + HOUR, T0 + 2 * HOUR),  # one whole quiet hour
    (T0 + 59 * MINUTE, T0 + 61 * MINUTE),  # across an hour's end
    (T0 + 2 * HOUR + 30 * MINUTE, T0 + 3 * HOUR),  # up to the current hour
    (T0 + 3 * HOUR + MINUTE, T0 + 3 * HOUR + 2 * MINUTE),  # one minute of it
    (T0 + 3 * HOUR - 1, T0 + 3 * HOUR + 1),  # a millisecond each side of an hour
]


async def test_cold_and_warm_answers_are_what_msgspec_writes_whatever_the_edges(
    app: AppClient, auth: Auth, clock: Clock, tmp_path: Path
) -> None:
    crowd = Crowd(app, auth, clock)
    await _three_hours(crowd)
    await _roll_up(clock, tmp_path, T0 + 3 * HOUR + MINUTE)
    await crowd.at(183, 0, ("join", "dave", "t1"))  # the current hour, not rolled up
    fragments = app.app[TIMELINE].fragments
    for since, until in EDGES:
        cold, plain = await _answers(app, auth, since, until)
        _as_msgspec_writes(cold, plain)
        warm, plain_again = await _answers(app, auth, since, until)
        assert warm == cold
        assert plain_again == plain
    assert len(fragments) >= 4  # hours -1, 0, 1, 2: whole, ended, kept
    whole, _ = await _answers(app, auth, T0 - HOUR, T0 + 4 * HOUR)
    body = json.loads(whole)
    assert body["peak"] == {"online": 3, "at": to_iso(T0 + MINUTE)}  # not the later one
    points = _points(whole)
    assert points[to_iso(T0 + MINUTE)] == (3, 3)
    assert points[to_iso(T0 + 130 * MINUTE)] == (3, 3)
    assert points[to_iso(T0 + 90 * MINUTE)] == (1, 1)  # the quiet hour carries alice
    assert points[to_iso(T0 + 183 * MINUTE)] == (2, 2)
    assert len(points) == 5 * 60


async def test_a_minute_that_changes_in_the_current_hour_shows_up_at_once(
    app: AppClient, auth: Auth, clock: Clock, tmp_path: Path
) -> None:
    crowd = Crowd(app, auth, clock)
    await _three_hours(crowd)
    await _roll_up(clock, tmp_path, T0 + 3 * HOUR + MINUTE)
    since, until = T0, T0 + 4 * HOUR
    before, _ = await _answers(app, auth, since, until)  # warms the ended hours
    minute = to_iso(T0 + 185 * MINUTE)
    assert _points(before)[minute] == (1, 1)
    await crowd.at(185, 30, ("join", "erin", "t1"))
    after, plain = await _answers(app, auth, since, until)
    _as_msgspec_writes(after, plain)
    assert _points(after)[minute] == (2, 2)
    assert _points(after)[to_iso(T0 + 239 * MINUTE)] == (2, 2)  # carried to the hour's end
    await crowd.at(186, 0, ("leave", "erin", "t1"), ("leave", "alice", "t1"))
    again, _ = await _answers(app, auth, since, until)
    assert _points(again)[to_iso(T0 + 186 * MINUTE)] == (2, 2)  # its peak: erin was there
    assert _points(again)[to_iso(T0 + 187 * MINUTE)] == (0, 0)
    # The worker rolls the hour up: Redis keeps it as one record instead of its minutes (a
    # new key for the cache), and the answer is the same.
    await _roll_up(clock, tmp_path, T0 + 4 * HOUR + MINUTE)
    rolled, plain = await _answers(app, auth, since, until)
    _as_msgspec_writes(rolled, plain)
    assert rolled == again


def _encoded(size: int) -> Encoded:
    return Encoded(b"x" * size, 1, 0, size)


def test_the_cache_stays_within_its_budget_dropping_the_least_recently_read() -> None:
    fragments = Fragments(max_bytes=1000)
    for hour in range(3):
        fragments.put(hour, _encoded(300))
    assert fragments.get(0) is not None  # read again: now the most recent
    fragments.put(3, _encoded(300))  # over 1000: hour 1 goes
    assert fragments.size == 900
    assert [h for h in range(4) if fragments.get(h) is not None] == [0, 2, 3]
    fragments.put(4, _encoded(1001))  # larger than the whole budget: not kept
    assert fragments.get(4) is None
    assert fragments.size <= fragments.max_bytes
    grown = fragments.get(3)
    assert grown is not None
    fragments.grew(3, grown, 200)  # its deflated points added: over 1000, hour 0 goes
    assert fragments.size == 800
    assert [h for h in range(4) if fragments.get(h) is not None] == [2, 3]
    none = Fragments(max_bytes=0)
    none.put(0, _encoded(1))
    assert len(none) == 0


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("gzip;q=nonsense", False),
        ("identity", False),
        ("", False),
    ],
)
async def test_gzip_only_when_the_client_accepts_it(
    app: AppClient, auth: Auth, accept_encoding: str, gzipped: bool
) -> None:
    resp = await app.get(
        f"/v1/artifacts/{DOC}/timeline",
        headers={**auth("board", scope="dashboard"), "Accept-Encoding": accept_encoding},
    )
    assert resp.status == 200
    body = await resp.read()
    assert (resp.headers.get("Content-Encoding") == "gzip") is gzipped
    points = json.loads(gzip.decompress(body) if gzipped else body)["points"]
    assert len(points) in (60, 61)  # the last hour by default


@pytest.mark.parametrize("value", ["-1", "4097", "big"])
def test_a_bad_cache_size_is_rejected_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="PRESENCE_TIMELINE_CACHE_MB"):
        Settings.from_env({"PRESENCE_TIMELINE_CACHE_MB": value})


def test_the_cache_size_is_read() -> None:
    assert Settings.from_env({"PRESENCE_TIMELINE_CACHE_MB": "0"}).timeline_cache_mb == 0
    assert Settings().timeline_cache_mb == 32


def test_a_gzipped_hour_refers_to_the_hour_before_it() -> None:
    """Each hour's deflated points may refer to the points before them (they repeat their
    dates and names): a day's gzipped answer is about what gzip makes of the whole JSON,
    not the 1.4x of hours deflated alone, and one valid stream of the JSON answer, cold,
    warm, and made again after its first hour changed (the second refers to new bytes)."""
    hour0 = 29_000_000 // 60 * 60  # a whole hour, in minutes

    def day(shift: int) -> list[Piece]:
        """Hours of changes, and between them quiet hours (kept by their values)."""
        return [
            ValuesPiece(
                hour0 + 60 * h,
                [(m * 7 + h + shift) % 40 for m in range(60)],
                [(m * 7 + h) % 40 + 2 for m in range(60)],
                carried=False,
            )
            if h % 2 == 0
            else ValuesPiece(hour0 + 60 * h, [h] * 60, [h + 2] * 60, carried=True)
            for h in range(24)
        ]

    fragments = Fragments(1 << 20)
    plain, _ = minutes_json(DOC, day(0), fragments)
    for pieces in (day(0), day(0)):
        zipped, _ = minutes_json(DOC, pieces, fragments, gzip=True)
        assert gzip.decompress(zipped) == plain
        assert len(zipped) <= 1.2 * len(gzip.compress(plain, 6))
    assert len(fragments) == 12  # the quiet hours
    shifted = [*day(1)[:1], *day(0)[1:]]  # the kept hour 1 follows other points
    zipped, _ = minutes_json(DOC, shifted, fragments, gzip=True)
    assert gzip.decompress(zipped) == minutes_json(DOC, shifted, fragments)[0]
