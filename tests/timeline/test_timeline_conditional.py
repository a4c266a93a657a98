"""A 1m read answers from what its process kept while nothing the answer is made of
changed: its copy of the hour records (current while the hash's token, '~c' and '~r', is
the same), the whole answer (while its signature is), and the ETag that lets a polling
client get a 304. Whatever changes, a process that kept all that answers byte for byte
what a new process does."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient

from presence_svc.http.app import create_app
from presence_svc.redis.connection import connect
from presence_svc.redis.keys import Keyspace
from presence_svc.timefmt import to_iso
from presence_svc.timeline.answer import Encoded, Fragments
from presence_svc.timeline.records import KnownHours, TimelineRecords
from tests.timeline.conftest import Clock
from tests.timeline.test_timeline import DOC, HOUR, MINUTE, T0, Crowd, _settings
from tests.timeline.test_timeline_cache import _points, _roll_up, _three_hours

AppClient = TestClient[web.Request, web.Application]
Auth = Callable[..., dict[str, str]]
NewClient = Callable[[], Awaitable[AppClient]]
PATH = f"/v1/artifacts/{DOC}/timeline"
_READERS = itertools.count()


@pytest.fixture
def new_client(
    clock: Clock, tmp_path: Path, aiohttp_client: Callable[..., Awaitable[AppClient]]
) -> NewClient:
    """A new service process (nothing kept), raw bodies."""

    async def make() -> AppClient:
        app = create_app(_settings(clock.url, tmp_path))
        return await aiohttp_client(app, auto_decompress=False)

    return make


async def _get(
    client: AppClient, auth: Auth, since: int, until: int, **headers: str
) -> tuple[int, bytes, Mapping[str, str]]:
    params = {"since": to_iso(since), "until": to_iso(until), "step": "1m"}
    headers = {
        **auth(f"board-{next(_READERS)}", scope="dashboard"),  # each under its own rate limit
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    resp = await client.get(PATH, params=params, headers=headers)
    return resp.status, await resp.read(), resp.headers


async def _same_as_a_new_process(
    warm: AppClient, new_client: NewClient, auth: Auth, since: int, until: int
) -> bytes:
    """The warm process's answers (read twice, plain and gzipped) against a new one's."""
    cold = await new_client()
    answers = []
    for client in (warm, warm, cold):
        status, plain, headers = await _get(client, auth, since, until, Accept_Encoding="identity")
        assert status == 200
        status, zipped, zipped_headers = await _get(
            client, auth, since, until, Accept_Encoding="gzip"
        )
        assert status == 200
        assert gzip.decompress(zipped) == plain
        answers.append((plain, headers["ETag"], zipped_headers["ETag"]))
    assert answers[0] == answers[1] == answers[2]
    await cold.close()
    return answers[0][0]


async def test_a_process_that_kept_answers_what_a_new_one_does_whatever_changes(
    new_client: NewClient, auth: Auth, clock: Clock, tmp_path: Path
) -> None:
    warm = await new_client()
    crowd = Crowd(warm, auth, clock)
    await _three_hours(crowd)
    await _roll_up(clock, tmp_path, T0 + 3 * HOUR + MINUTE)
    await crowd.at(183, 0, ("join", "dave", "t1"))
    since, until = T0 - HOUR, T0 + 4 * HOUR
    first = await _same_as_a_new_process(warm, new_client, auth, since, until)
    # the current minute changes
    await crowd.at(183, 30, ("join", "erin", "t1"))
    changed = await _same_as_a_new_process(warm, new_client, auth, since, until)
    assert _points(first)[to_iso(T0 + 183 * MINUTE)] == (2, 2)
    assert _points(changed)[to_iso(T0 + 183 * MINUTE)] == (3, 3)
    # a later minute of the same hour, and a range that starts a minute later (a sliding
    # window): the hour records' copy covers it
    await crowd.at(190, 0, ("leave", "erin", "t1"))
    later = await _same_as_a_new_process(warm, new_client, auth, since + MINUTE, until)
    assert _points(later)[to_iso(T0 + 190 * MINUTE)] == (3, 3)
    assert _points(later)[to_iso(T0 + 191 * MINUTE)] == (2, 2)
    # the worker rolls the hour up: new hour records, the same answer
    await _roll_up(clock, tmp_path, T0 + 4 * HOUR + MINUTE)
    rolled = await _same_as_a_new_process(warm, new_client, auth, since + MINUTE, until)
    assert rolled == later
    # the hash expires (nobody for the keep time) and a new one is made: the old hours are
    # gone from Redis, and from the answer
    with redis.Redis.from_url(clock.url) as r:
        r.delete(Keyspace(4).artifact(DOC).timeline)
    await crowd.at(239, 0, ("leave", "dave", "t1"))
    gone = await _same_as_a_new_process(warm, new_client, auth, since + MINUTE, until)
    assert gone != rolled
    await warm.close()


async def test_an_unchanged_answer_is_a_304_to_its_etag(
    new_client: NewClient, auth: Auth, clock: Clock
) -> None:
    client = await new_client()
    crowd = Crowd(client, auth, clock)
    await crowd.at(0, 5, ("join", "alice", "t1"))
    since, until = T0, T0 + 10 * MINUTE
    status, body, headers = await _get(client, auth, since, until, Accept_Encoding="identity")
    assert status == 200
    etag = headers["ETag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert headers["Cache-Control"] == "private, no-cache"
    assert headers["Vary"] == "Accept-Encoding"
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        status, empty, again = await _get(
            client, auth, since, until, Accept_Encoding="identity", If_None_Match=if_none_match
        )
        assert (status, empty, again["ETag"]) == (304, b"", etag), if_none_match
        assert again["Cache-Control"] == "private, no-cache"
    for if_none_match in ('"other"', "nonsense", etag[:-2] + '"'):
        status, same, _ = await _get(
            client, auth, since, until, Accept_Encoding="identity", If_None_Match=if_none_match
        )
        assert (status, same) == (200, body), if_none_match
    # the gzipped answer is another representation: another tag
    status, zipped, gz = await _get(
        client, auth, since, until, Accept_Encoding="gzip", If_None_Match=etag
    )
    assert status == 200
    assert gzip.decompress(zipped) == body
    assert gz["ETag"] != etag
    status, _, _ = await _get(
        client, auth, since, until, Accept_Encoding="gzip", If_None_Match=gz["ETag"]
    )
    assert status == 304
    # another process (nothing kept) tags the same answer the same
    other = await new_client()
    status, _, _ = await _get(
        other, auth, since, until, Accept_Encoding="identity", If_None_Match=etag
    )
    assert status == 304
    await other.close()
    # a change: the old tag gets the new answer
    await crowd.at(3, 0, ("join", "bob", "t1"))
    status, changed, headers = await _get(
        client, auth, since, until, Accept_Encoding="identity", If_None_Match=etag
    )
    assert status == 200
    assert headers["ETag"] != etag
    assert _points(changed)[to_iso(T0 + 3 * MINUTE)] == (2, 2)
    # the 304 still needs a dashboard token, and bad input is still a 400
    resp = await client.get(PATH, headers={**auth("alice"), "If-None-Match": "*"})
    assert resp.status == 403
    resp = await client.get(
        PATH,
        params={"step": "5m"},
        headers={**auth("board", scope="dashboard"), "If-None-Match": "*"},
    )
    assert resp.status == 400
    await client.close()


async def test_redis_sends_no_hour_records_to_a_current_copy(
    new_client: NewClient, auth: Auth, clock: Clock, tmp_path: Path
) -> None:
    client = await new_client()
    crowd = Crowd(client, auth, clock)
    await _three_hours(crowd)
    await _roll_up(clock, tmp_path, T0 + 3 * HOUR + MINUTE)
    settings = _settings(clock.url, tmp_path)
    conn = connect(settings)
    await conn.load_scripts()
    records = TimelineRecords(conn, Keyspace(4), settings.timeline_ms)
    first, end = (T0 - HOUR) // MINUTE, (T0 + 4 * HOUR) // MINUTE
    try:
        got = await records.minutes(DOC, first, end)
        copy = got.known
        assert copy is not None
        assert sorted(copy.hours) == [T0 // HOUR, T0 // HOUR + 2]  # hour 1 was quiet
        assert (copy.lo, copy.hi) == (T0 // HOUR - 1, T0 // HOUR + 4)  # all rolled up
        again = await records.minutes(DOC, first, end, known=copy)
        assert again.known is copy
        assert again.hours is copy.hours
        # a change in the current hour: the copy stays current, the minute is read
        await crowd.at(185, 0, ("join", "erin", "t1"))
        changed = await records.minutes(DOC, first, end, known=copy)
        assert changed.known is copy
        assert changed.records[T0 // MINUTE + 185].peak_online == 2
        # a copy of fewer hours, or of another token, gets the records again
        for stale in (
            KnownHours(copy.token, copy.lo + 1, copy.hi, {}, 0),
            KnownHours(copy.token + "0", copy.lo, copy.hi, {}, 0),
        ):
            fresh = await records.minutes(DOC, first, end, known=stale)
            assert fresh.known is not stale
            assert fresh.hours == copy.hours
        # a rollup changes the token: the records come again, one more among them
        await _roll_up(clock, tmp_path, T0 + 4 * HOUR + MINUTE)
        rolled = await records.minutes(DOC, first, end, known=copy)
        assert rolled.known is not None
        assert rolled.known.token != copy.token
        assert sorted(rolled.hours) == [T0 // HOUR, T0 // HOUR + 2, T0 // HOUR + 3]
    finally:
        await conn.aclose()
        await client.close()


def test_what_is_kept_again_under_a_key_takes_the_place_of_what_was() -> None:
    fragments = Fragments(max_bytes=1000)
    fragments.put("a", Encoded(b"x", 1, 0, 300))
    fragments.put("a", Encoded(b"y", 1, 0, 400))
    assert fragments.size == 400
    assert len(fragments) == 1
    got = fragments.get("a")
    assert got is not None
    assert got.points == b"y"
    assert fragments.get("a", KnownHours) is None  # another kind under that key: none
    fragments.put("a", Encoded(b"z", 1, 0, 2000))  # too large to keep: nothing is
    assert fragments.size == 0
    assert fragments.get("a") is None


async def test_redis_sends_nothing_while_a_reads_stamp_holds(
    new_client: NewClient, auth: Auth, clock: Clock, tmp_path: Path
) -> None:
    """The stamp of a read (token, index score, latest minute, its record, field count)
    gets no reply at all while it holds, and the records again after each kind of change
    a later read must see."""
    client = await new_client()
    crowd = Crowd(client, auth, clock)
    await _three_hours(crowd)
    await _roll_up(clock, tmp_path, T0 + 3 * HOUR + MINUTE)
    await crowd.at(183, 0, ("join", "dave", "t1"))
    settings = _settings(clock.url, tmp_path)
    conn = connect(settings)
    await conn.load_scripts()
    records = TimelineRecords(conn, Keyspace(4), settings.timeline_ms)
    first, end = (T0 - HOUR) // MINUTE, (T0 + 4 * HOUR) // MINUTE

    async def fresh(stamp: bytes) -> bytes:
        """The stamp of a read that got Redis's records (the one given did not hold)."""
        got = await records.unless_current(DOC, first, end, stamp=stamp)
        assert got is not None
        assert got.stamp
        assert got.stamp != stamp
        assert await records.unless_current(DOC, first, end, stamp=got.stamp) is None
        return got.stamp

    try:
        stamp = await fresh(b"")
        # the same range of another start, or a stamp of something else, is read whole
        assert await records.unless_current(DOC, first, end, stamp=stamp + b"0") is not None
        # the current minute's counts change (no new field): its record is in the stamp
        await crowd.at(183, 30, ("join", "erin", "t1"))
        stamp = await fresh(stamp)
        got = await records.minutes(DOC, first, end)
        assert got.records[T0 // MINUTE + 183].last_online == 3
        # a later minute
        await crowd.at(190, 0, ("leave", "erin", "t1"))
        stamp = await fresh(stamp)
        # a rollup (new token, the index moves on)
        await _roll_up(clock, tmp_path, T0 + 4 * HOUR + MINUTE)
        stamp = await fresh(stamp)
        # the reads of the hours view (unrolled only) carry no stamp
        hourly = await records.minutes(DOC, first, end, unrolled_only=True)
        assert hourly.stamp == b""
        # a hash without its token ('~c': one a worker alone wrote, or gone) has no stamp
        with redis.Redis.from_url(clock.url) as r:
            r.hdel(Keyspace(4).artifact(DOC).timeline, "~c")
        untokened = await records.unless_current(DOC, first, end, stamp=stamp)
        assert untokened is not None
        assert untokened.stamp == b""
    finally:
        await conn.aclose()
        await client.close()


async def test_a_1m_answer_has_its_headers_on_a_kept_alive_connection(
    new_client: NewClient, auth: Auth, clock: Clock, tmp_path: Path
) -> None:
    """The lean path (``http.answer``) writes what aiohttp's response did: each answer's
    length, coding, tag, caching, date and server, read after read on one connection."""
    client = await new_client()
    crowd = Crowd(client, auth, clock)
    await _three_hours(crowd)
    since, until = T0 - HOUR, T0 + 4 * HOUR
    for coding in ("gzip", "identity", "gzip"):
        status, body, headers = await _get(client, auth, since, until, Accept_Encoding=coding)
        assert status == 200
        assert headers["Content-Length"] == str(len(body))
        assert headers["Content-Type"] == "application/json"
        assert headers.get("Content-Encoding") == ("gzip" if coding == "gzip" else None)
        assert headers["Vary"] == "Accept-Encoding"
        assert headers["Cache-Control"] == "private, no-cache"
        assert headers["ETag"].startswith('"')
        assert "Date" in headers
        assert "Server" in headers
        plain = gzip.decompress(body) if coding == "gzip" else body
        assert plain.startswith(b'{"artifactId":')
        assert plain.endswith(b"}\n")
    await client.close()
