"""The Python SDK against the real service over real HTTP."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from presence_svc.auth import Scope, TokenCodec
from presence_svc.client import (
    PresenceClient,
    PresenceClientError,
    PresencePage,
    Stats,
    WhereNow,
)
from presence_svc.http.app import create_app
from presence_svc.ratelimits import parse_rate_limits
from presence_svc.redis.connection import connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings
from presence_svc.stats.views import ViewStore
from tests.conftest import free_port

Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve(aiohttp_server: Callable[..., Awaitable[TestServer]], settings: Settings) -> Serve:
    """The service on a real port, from the test settings with ``**changes``; its base URL."""

    async def start(**changes: Any) -> str:
        server = await aiohttp_server(create_app(settings.replace(**changes)))
        return str(server.make_url("")).rstrip("/")

    return start


def _token(tokens: TokenCodec, user: str, scope: str = "client", ttl_s: int = 600) -> str:
    return tokens.issue(user, scope=Scope(scope), ttl_s=ttl_s)


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_join_keeps_the_session_online_and_closing_leaves(
    serve: Serve, tokens: TokenCodec
) -> None:
    # Interval 0.5 s; a 3 s timeout: the SDK's beats (0.45-0.55 s apart, plus each one's
    # round trip) keep the session with room to spare on a loaded machine, where the
    # tests' 1 s left less than half a second for a round trip and a late wake-up.
    url = await serve(online_timeout_s=3.0)
    board = PresenceClient(url, _token(tokens, "board", "dashboard"))
    async with board:
        async with PresenceClient(url, _token(tokens, "bot-1")) as bot:
            live = await bot.join("doc-1", state={"role": "indexer"})
            assert live.counts is not None
            assert (live.counts.online, live.counts.sessions, live.counts.interval_s) == (1, 1, 0.5)
            await asyncio.sleep(4.0)  # well past the 3 s online timeout
            page = await board.presence("doc-1")
            assert isinstance(page, PresencePage)
            assert [(u.user_id, u.state) for u in page.users] == [("bot-1", {"role": "indexer"})]
            assert isinstance(page.users[0].last_seen, datetime)
            assert live.heartbeats >= 3
            live.set_state({"role": "writer"})
            await _until(
                lambda: _state_is(board, {"role": "writer"}),
            )
        # Leaving the block left at once, without waiting for the timeout.
        assert (await board.online("doc-1")).online == 0
        assert not live.running


async def _state_is(board: PresenceClient, state: dict[str, str]) -> bool:
    page = await board.presence("doc-1")
    return bool(page.users) and page.users[0].state == state


async def test_views_and_every_read_are_typed(serve: Serve, tokens: TokenCodec) -> None:
    url = await serve(run_worker=True, view_debounce_s=60.0)
    async with (
        PresenceClient(url, _token(tokens, "alice")) as alice,
        PresenceClient(url, _token(tokens, "board", "dashboard")) as board,
    ):
        first = await alice.record_view("doc-1", "v1")
        again = await alice.record_view("doc-1", "v1")
        assert (first.counted, again.counted, again.views) == (True, False, 1)
        await alice.join("doc-1", session_id="tab-bot-0001", version_id="v2")
        stats = await board.stats("doc-1")
        assert isinstance(stats, Stats)
        assert (stats.views, stats.unique_viewers) == (2, 1)
        assert {v.version_id: v.views for v in stats.versions} == {"v1": 1, "v2": 1}
        viewers = await board.viewers("doc-1", "v2")
        assert [v.user_id for v in viewers.viewers] == ["alice"]
        recent = await alice.recent("alice")
        assert (recent.items[0].artifact_id, recent.items[0].version_id) == ("doc-1", "v2")
        counts = await board.online_many(["doc-1", "doc-2"])
        assert (counts["doc-1"].online, counts["doc-2"].online) == (1, 0)
        assert (await board.online("doc-1")).artifact_id == "doc-1"
        timeline = await board.timeline("doc-1")
        assert (timeline.step, timeline.points[-1].online, timeline.peak.online) == ("1m", 1, 1)
        assert timeline.peak.at == next(p.t for p in timeline.points if p.online == 1)
        assert isinstance(timeline.peak.at, datetime)
        hours = await board.timeline("doc-1", since=timeline.points[0].t, step="1h")
        assert [p.online for p in hours.points][-1] == 1
        with pytest.raises(PresenceClientError) as bad:
            await board.timeline("doc-1", since="2000-01-01T00:00:00Z")
        assert bad.value.status == 400

        async def drained() -> bool:
            return len((await board.ledger(artifact_id="doc-1")).items) == 2

        await _until(drained)
        newest = await board.ledger(artifact_id="doc-1", order="desc", limit=1)
        assert newest.items[0].version_id == "v2"
        assert newest.items[0].session_id == "tab-bot-0001"
        assert newest.next_cursor is not None


async def test_401_asks_the_provider_once_then_raises(serve: Serve, tokens: TokenCodec) -> None:
    url = await serve()
    asked: list[int] = []

    async def fresh() -> str:
        asked.append(1)
        return _token(tokens, "alice")

    expired = _token(tokens, "alice", ttl_s=-60)
    async with PresenceClient(url, expired, token_provider=fresh) as client:
        result = await client.heartbeat("doc-1", session_id="tab-aaaa0001")
        assert result.online == 1
        assert len(asked) == 1

    def stale() -> str:
        asked.append(1)
        return expired

    async with PresenceClient(url, expired, token_provider=stale) as client:
        with pytest.raises(PresenceClientError) as caught:
            await client.heartbeat("doc-1", session_id="tab-aaaa0001")
    assert caught.value.status == 401
    assert caught.value.problem["status"] == 401
    assert len(asked) == 2  # once per client, never in a loop


async def test_403_is_raised_without_retrying(serve: Serve, tokens: TokenCodec) -> None:
    url = await serve()
    async with PresenceClient(url, _token(tokens, "alice")) as client:
        started = time.monotonic()
        with pytest.raises(PresenceClientError) as caught:
            await client.stats("doc-1")
        assert caught.value.status == 403
        assert not caught.value.transient
        assert time.monotonic() - started < 1.0


async def test_503_backs_off_honouring_retry_after_and_recovers(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    """A service answering 503 with Retry-After twice, then 200."""
    seen: list[float] = []

    async def flaky(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        if len(seen) <= 2:
            return web.json_response(
                {"type": "x", "title": "Service Unavailable", "status": 503, "detail": "down"},
                status=503,
                headers={"Retry-After": "1"},
            )
        return web.json_response({"artifactId": "doc-1", "online": 3, "sessions": 4})

    app = web.Application()
    app.router.add_get("/v1/artifacts/doc-1/online", flaky)
    server = await aiohttp_server(app)
    async with PresenceClient(str(server.make_url("")), "t") as client:
        counts = await client.online("doc-1")
    assert (counts.online, counts.sessions) == (3, 4)
    assert len(seen) == 3
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(seen))


async def test_heartbeat_task_rides_out_a_redis_outage(
    serve: Serve, tokens: TokenCodec, tmp_path: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "own-redis")
    try:
        url = await serve(redis_url=redis.start())
        async with PresenceClient(url, _token(tokens, "bot"), max_backoff_s=2.0) as bot:
            live = await bot.join("doc-1")
            redis.stop()

            async def failing() -> bool:
                return live.error is not None and live.error.status == 503

            await _until(failing)
            assert live.running  # still trying
            redis.start()
            before = live.heartbeats

            async def recovered() -> bool:
                return live.heartbeats > before and live.error is None

            await _until(recovered)
            assert (await bot.online("doc-1")).sessions == 1
    finally:
        redis.stop()


async def test_network_errors_raise_after_the_attempts(tokens: TokenCodec) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with PresenceClient(url, "t", max_attempts=2, max_backoff_s=0.2) as client:
        with pytest.raises(PresenceClientError) as caught:
            await client.online("doc-1")
    assert caught.value.status == 0
    assert caught.value.transient


async def test_a_rate_limited_call_waits_retry_after_and_succeeds(
    serve: Serve, tokens: TokenCodec
) -> None:
    """The real limiter's 429 (one read every 2 s here): the SDK waits its Retry-After."""
    url = await serve(rate_limits=parse_rate_limits("read=30/m:burst=1"))
    async with PresenceClient(url, _token(tokens, "alice"), max_backoff_s=5.0) as client:
        await client.online("doc-1")
        started = time.monotonic()
        counts = await client.online("doc-1")  # refused once (Retry-After: 2), then answered
    assert counts.online == 0
    assert time.monotonic() - started >= 1.5


async def test_away_status_and_every_session_through_the_sdk(
    serve: Serve, tokens: TokenCodec
) -> None:
    url = await serve(away_timeout_s=30.0)  # interval 0.5 s, timeout 1 s, away 30 s
    async with (
        PresenceClient(url, _token(tokens, "carol")) as carol,
        PresenceClient(url, _token(tokens, "board", "dashboard")) as board,
    ):
        answer = await carol.heartbeat(
            "doc-1", session_id="tab-carol-0001", version_id="v1", status="away"
        )
        assert (answer.online, answer.active, answer.away) == (1, 0, 1)
        live = await carol.join("doc-1", session_id="tab-carol-0002", version_id="v2")
        assert live.counts is not None
        assert (live.counts.active, live.counts.away) == (1, 0)
        page = await board.presence("doc-1", include_sessions=True)
        (row,) = page.users
        assert (row.status, row.sessions, page.active, page.away) == ("active", 2, 1, 0)
        assert row.session_list is not None
        assert [(m.version_id, m.status) for m in row.session_list] == [
            ("v1", "away"),
            ("v2", "active"),
        ]
        assert all(isinstance(m.last_seen, datetime) for m in row.session_list)
        assert (await board.presence("doc-1")).users[0].session_list is None
        live.set_status("away")  # the tab is hidden

        async def all_away() -> bool:
            counts = await board.online("doc-1")
            return (counts.active, counts.away) == (0, 1)

        await _until(all_away)
        await asyncio.sleep(1.5)  # past the 1 s online timeout: away sessions stay
        assert (await board.online("doc-1")).online == 1
        await live.stop()


async def test_where_now_and_the_recent_list_are_typed(serve: Serve, tokens: TokenCodec) -> None:
    url = await serve()
    async with (
        PresenceClient(url, _token(tokens, "alice")) as alice,
        PresenceClient(url, _token(tokens, "bob")) as bob,
        PresenceClient(url, _token(tokens, "board", "dashboard")) as board,
    ):
        live = await alice.join("doc-1", version_id="v2")
        await alice.heartbeat("doc-2", session_id="tab-alice-0002")
        await alice.leave("doc-2", session_id="tab-alice-0002")
        where = await alice.where_now("alice")
        assert isinstance(where, WhereNow)
        assert [(o.artifact_id, o.version_id, o.status) for o in where.online] == [
            ("doc-1", "v2", "active")
        ]
        assert [(r.artifact_id, r.reason) for r in where.recent] == [("doc-2", "left")]
        assert isinstance(where.recent[0].last_seen, datetime)
        assert (await board.where_now("alice")).online == where.online
        with pytest.raises(PresenceClientError) as refused:
            await bob.where_now("alice")
        assert refused.value.status == 403
        await live.stop()
        page = await board.presence("doc-1", include_recent=True, recent_limit=1)
        assert page.recent is not None
        assert [(u.user_id, u.reason) for u in page.recent] == [("alice", "left")]
        assert page.recent_next_cursor is None
        assert (await board.presence("doc-1")).recent is None


async def test_latest_version_seen_check_and_unseen_through_the_sdk(
    serve: Serve, tokens: TokenCodec
) -> None:
    url = await serve()
    async with (
        PresenceClient(url, _token(tokens, "alice")) as alice,
        PresenceClient(url, _token(tokens, "cms", "publisher")) as cms,
    ):
        assert await cms.latest("doc-1") is None
        with pytest.raises(PresenceClientError) as refused:
            await alice.set_latest("doc-1", "v1")
        assert refused.value.status == 403
        latest = await cms.set_latest("doc-1", "v2")
        assert (latest.version_id, await cms.latest("doc-1")) == ("v2", latest)
        assert isinstance(latest.set_at, datetime)
        assert [u.version_id for u in await alice.unseen("alice", ["doc-1", "doc-2"])] == ["v2"]
        await alice.record_view("doc-1", "v2")
        assert await alice.unseen("alice", ["doc-1", "doc-2"]) == []
        seen = await cms.seen("doc-1")
        assert (seen.version_id, seen.seen, seen.read, seen.hidden_viewers) == ("v2", 1, 0, 0)
        assert [(v.user_id, v.engaged_ms, v.read) for v in seen.viewers] == [("alice", 0, False)]
        found = await cms.seen_check("doc-1", ["alice", "bob"])
        assert (found.seen, found.read, found.not_seen) == (["alice"], [], ["bob"])
        older = await cms.seen_check("doc-1", ["alice"], version_id="v1")
        assert older.not_seen == ["alice"]
        with pytest.raises(PresenceClientError) as too_many:
            await cms.seen_check("doc-1", [f"u{i}" for i in range(1001)])
        assert too_many.value.status == 400


async def test_a_live_session_reports_engaged_time_and_reads_it_back(
    serve: Serve, tokens: TokenCodec
) -> None:
    url = await serve(
        run_worker=True,
        online_timeout_s=30.0,
        heartbeat_interval_s=10.0,
        retention_s=60.0,
        engagement_flush_s=0.2,
        engagement_fold_s=0.0,
    )
    async with (
        PresenceClient(url, _token(tokens, "alice")) as alice,
        PresenceClient(url, _token(tokens, "board", "dashboard")) as board,
    ):
        live = await alice.join("doc-1", session_id="tab-alice-01", version_id="v1")
        live.add_engaged(1_200)
        live.set_state({"page": 1})  # an immediate heartbeat carries it

        async def credited() -> bool:
            return (await board.viewers("doc-1", "v1")).viewers[0].engaged_ms == 1_200

        await _until(credited)
        assert live.engaged_ms == 0
        live.add_engaged(800)
        await live.stop()  # the leave carries what is left
        stats = await board.stats("doc-1")
        assert (stats.engaged_ms, stats.versions[0].engaged_ms) == (2_000, 2_000)
        assert stats.versions[0].readers == 0
        assert stats.versions[0].histogram[0].viewers == 1
        with pytest.raises(ValueError, match="negative"):
            live.add_engaged(-1)

        async def flushed() -> bool:
            page = await board.engagement(artifact_id="doc-1")
            return [(i.user_id, i.engaged_ms) for i in page.items] == [("alice", 2_000)]

        await _until(flushed)


async def test_erasing_a_user_through_the_sdk(
    serve: Serve, tokens: TokenCodec, settings: Settings
) -> None:
    url = await serve(run_worker=True)
    async with (
        PresenceClient(url, _token(tokens, "alice")) as alice,
        PresenceClient(url, _token(tokens, "root", "admin")) as admin,
    ):
        await alice.record_view("doc-1", "v1")
        erased = await admin.erase_user("alice")  # a small user: done within the request
        assert (erased.status, erased.erasure_id) == ("complete", None)
        assert (await alice.recent("alice")).items == []
        await _many_views(settings, "bob", 4000)  # more than the request erases itself
        pending = await admin.erase_user("bob")
        assert (pending.status, pending.completed_at) == ("pending", None)
        assert pending.erasure_id is not None
        async with asyncio.timeout(30):
            done = await admin.wait_erased(pending, poll_s=0.1)
        assert (done.erasure_id, done.status) == (pending.erasure_id, "complete")
        assert done.completed_at is not None
        with pytest.raises(PresenceClientError) as unknown:
            await admin.erasure("0.nosuch")
        assert unknown.value.status == 404
        with pytest.raises(PresenceClientError) as refused:
            await alice.erase_user("bob")
        assert refused.value.status == 403


async def _many_views(settings: Settings, user: str, versions: int) -> None:
    """Views as the service records them (the user's notes, then the view), 1 000 calls at
    once."""
    redis = connect(settings)
    views = ViewStore(redis, settings)
    calls = []
    for i in range(versions):
        artifact, version = f"doc-{i % 40}", f"v{i}"
        calls.append(views.note_call(user, artifact, version))
        calls.append(views.record_call(artifact, version, user, None))
    try:
        await redis.load_scripts()
        for start in range(0, len(calls), 1000):
            await redis.run_many(calls[start : start + 1000])
    finally:
        await redis.aclose()
