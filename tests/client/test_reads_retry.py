"""The Python SDK's retry rules against the real service's rate limiter and small local
servers: a 429 is waited out (``Retry-After``, even past ``max_backoff_s``) and retried by
the client itself, also on POST seen/check (a read); a ``Retry-After`` past
``max_retry_after_s`` is raised at once; after ``max_attempts`` the last error is raised.
What ``PresenceClientError.transient`` says is what is retried: 408, and a failing
``token_provider``, too, in one-off calls and in a heartbeat task. And a ``Retry-After``
given as an HTTP date (what a proxy in front of the service may send) is honoured as the
seconds form is."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from presence_svc.auth import Scope, TokenCodec
from presence_svc.client import PresenceClient, PresenceClientError
from presence_svc.client.retry import parse_retry_after
from presence_svc.http.app import create_app
from presence_svc.ratelimits import parse_rate_limits
from presence_svc.settings import Settings

Server = Callable[..., Awaitable[TestServer]]
CLIENT_LOG = "presence_svc.client.client"


async def _limited(aiohttp_server: Server, settings: Settings) -> str:
    """The service with one read a second per user (burst 1): a second read at once is a 429."""
    app = create_app(settings.replace(rate_limits=parse_rate_limits("read=60/m:burst=1")))
    return str((await aiohttp_server(app)).make_url("")).rstrip("/")


def _retried(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int]]:
    return [
        (r.__dict__["path"], r.__dict__["status"])
        for r in caplog.records
        if r.getMessage() == "retrying"
    ]


async def test_dashboard_reads_wait_out_the_limiters_429_and_answer(
    aiohttp_server: Server,
    settings: Settings,
    tokens: TokenCodec,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOG)
    url = await _limited(aiohttp_server, settings)
    cms = tokens.issue("cms", scope=Scope.PUBLISHER, ttl_s=600)
    async with PresenceClient(url, cms, max_backoff_s=5.0) as board:
        await board.set_latest("doc-1", "v2")  # a write of its own class, not limited here
        assert (await board.timeline("doc-1")).step == "1m"  # the one read the bucket holds
        found = await board.seen_check("doc-1", ["alice"])  # POST, a read: refused, retried
        assert (found.version_id, found.not_seen) == ("v2", ["alice"])
        where = await board.where_now("alice")  # refused, retried
        assert (where.online, where.recent) == ([], [])
    retried = _retried(caplog)
    assert ("/v1/artifacts/doc-1/seen/check", 429) in retried
    assert ("/v1/users/alice/presence", 429) in retried
    assert {status for _, status in retried} == {429}


async def test_a_retry_after_past_max_backoff_is_waited_out_not_cut_to_it(
    aiohttp_server: Server,
    settings: Settings,
    tokens: TokenCodec,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cut to the 0.05 s cap, every retry came before the bucket refilled and met another
    429 until the attempts ran out."""
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOG)
    url = await _limited(aiohttp_server, settings)
    token = tokens.issue("board", scope=Scope.DASHBOARD, ttl_s=600)
    async with PresenceClient(url, token, max_backoff_s=0.05) as board:
        await board.stats("doc-1")  # the one read the bucket holds
        started = time.monotonic()
        timeline = await board.timeline("doc-1")  # refused (Retry-After: 1), then answered
    assert timeline.step == "1m"
    assert time.monotonic() - started >= 0.9
    # (a second wait when the refill lands a moment after Retry-After's whole second)
    assert set(_retried(caplog)) == {("/v1/artifacts/doc-1/timeline", 429)}


async def test_a_retry_after_past_max_retry_after_is_raised_at_once(
    aiohttp_server: Server,
    settings: Settings,
    tokens: TokenCodec,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOG)
    app = create_app(settings.replace(rate_limits=parse_rate_limits("read=6/m:burst=1")))
    url = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    token = tokens.issue("board", scope=Scope.DASHBOARD, ttl_s=600)
    async with PresenceClient(url, token, max_retry_after_s=5.0) as board:
        await board.stats("doc-1")
        started = time.monotonic()
        with pytest.raises(PresenceClientError) as caught:
            await board.timeline("doc-1")  # the bucket refills in 10 s: past the 5 s
    assert time.monotonic() - started < 1.0
    assert caught.value.status == 429
    assert caught.value.transient
    assert caught.value.retry_after_s is not None
    assert caught.value.retry_after_s > 5.0
    assert _retried(caplog) == []


Answer = Callable[[], web.Response]


async def _serve(aiohttp_server: Server, path: str, answers: list[Answer]) -> str:
    """A local server answering ``path`` with ``answers`` in turn, then with the last one."""

    async def handler(request: web.Request) -> web.Response:
        return (answers.pop(0) if len(answers) > 1 else answers[0])()

    app = web.Application()
    app.router.add_route("*", path, handler)
    return str((await aiohttp_server(app)).make_url("")).rstrip("/")


def _problem(status: int, headers: dict[str, str] | None = None) -> Answer:
    return lambda: web.json_response({"status": status}, status=status, headers=headers)


def _where() -> web.Response:
    return web.json_response({"userId": "alice", "online": [], "recent": []})


async def test_the_last_429_is_raised_once_the_attempts_ran_out(aiohttp_server: Server) -> None:
    url = await _serve(
        aiohttp_server, "/v1/artifacts/doc-1/timeline", [_problem(429, {"Retry-After": "1"})]
    )
    async with PresenceClient(url, "t", max_attempts=2) as board:
        started = time.monotonic()
        with pytest.raises(PresenceClientError) as caught:
            await board.timeline("doc-1")
    assert time.monotonic() - started >= 0.9  # one wait: 2 attempts in all
    assert caught.value.status == 429
    assert caught.value.transient
    assert caught.value.retry_after_s == 1.0
    assert caught.value.problem["status"] == 429


async def test_a_408_is_transient_and_retried(aiohttp_server: Server) -> None:
    url = await _serve(aiohttp_server, "/v1/users/alice/presence", [_problem(408), _where])
    async with PresenceClient(url, "t", max_backoff_s=0.05) as client:
        assert (await client.where_now("alice")).user_id == "alice"
    assert PresenceClientError("x", status=408).transient
    assert not PresenceClientError("x", status=409).transient


async def test_a_failing_token_provider_is_retried_then_raised_as_the_clients_error(
    aiohttp_server: Server,
) -> None:
    """The token service unreachable for a moment: retried as a network error (status 0);
    for good: the client's error after ``max_attempts``, the provider's as its cause."""
    url = await _serve(aiohttp_server, "/v1/users/alice/presence", [_where])
    asked: list[int] = []

    async def flaky() -> str:
        asked.append(1)
        if len(asked) < 3:
            raise ConnectionError("token service unreachable")
        return "t"

    async with PresenceClient(url, token_provider=flaky, max_backoff_s=0.05) as client:
        assert (await client.where_now("alice")).user_id == "alice"
    assert len(asked) == 3

    def signed_out() -> str:
        raise PermissionError("signed out")

    async with PresenceClient(
        url, token_provider=signed_out, max_attempts=2, max_backoff_s=0.05
    ) as client:
        with pytest.raises(PresenceClientError) as caught:
            await client.where_now("alice")
    assert caught.value.status == 0
    assert caught.value.transient
    assert isinstance(caught.value.__cause__, PermissionError)


async def test_retry_after_as_an_http_date_is_honoured(aiohttp_server: Server) -> None:
    """A proxy answering 429 with ``Retry-After: <HTTP date>`` (2 s ahead, whole seconds),
    then the service's answer. Without reading the date, the first retry would come after
    0.5 s (random 0)."""
    seen: list[float] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return web.json_response(
                {"title": "Too Many Requests", "status": 429},
                status=429,
                headers={"Retry-After": formatdate(time.time() + 2, usegmt=True)},
            )
        return web.json_response({"userId": "alice", "online": [], "recent": []})

    app = web.Application()
    app.router.add_get("/v1/users/alice/presence", proxy)
    server = await aiohttp_server(app)
    async with PresenceClient(str(server.make_url("")), "t", random=lambda: 0.0) as client:
        where = await client.where_now("alice")
    assert where.user_id == "alice"
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 0.9


def test_retry_after_forms() -> None:
    now = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT", now) == 5.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:03 -0000", now) == 3.0  # UTC, naive
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now) == 0.0  # past: now
    for unreadable in (None, "", "soon", "-1"):
        assert parse_retry_after(unreadable, now) is None


async def _until(done: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def _beat() -> web.Response:
    counts = {"online": 1, "sessions": 1, "active": 1, "away": 0, "intervalS": 1.0}
    return web.json_response(counts)


async def test_a_heartbeat_task_waits_a_retry_after_past_max_backoff(
    aiohttp_server: Server,
) -> None:
    """The join's heartbeat, then a 429 asking for 2 s: cut to the 0.1 s cap, the task
    came back at once."""
    at: list[float] = []

    def timed(answer: Answer) -> Answer:
        return lambda: (at.append(time.monotonic()), answer())[1]

    answers = [timed(_beat), timed(_problem(429, {"Retry-After": "2"})), timed(_beat)]
    url = await _serve(aiohttp_server, "/v1/heartbeat", answers)
    async with PresenceClient(url, "t", max_backoff_s=0.1, random=lambda: 0.0) as bot:
        live = await bot.join("doc-1", session_id="tab-00000001", record_view=False)
        await _until(lambda: len(at) >= 3)
        assert live.running
        assert live.error is None
    assert len(at) >= 3
    assert at[2] - at[1] >= 2.0


async def test_a_heartbeat_task_outlives_a_failing_token_provider(
    aiohttp_server: Server,
) -> None:
    """A 401 asks for a fresh token; the provider fails once (retried as a network error),
    then gives one. The provider's own exception used to end the task."""
    answers = [_beat, _problem(401), _problem(401), _beat]  # t1 expired after the join
    url = await _serve(aiohttp_server, "/v1/heartbeat", answers)
    asked: list[int] = []

    def provider() -> str:
        asked.append(1)
        if len(asked) == 1:
            raise ConnectionError("token service unreachable")
        return "t2"

    async with PresenceClient(
        url, "t1", token_provider=provider, max_backoff_s=0.1, random=lambda: 0.0
    ) as bot:
        live = await bot.join("doc-1", session_id="tab-00000001", record_view=False)
        await _until(lambda: live.heartbeats >= 2 or not live.running)
        assert live.running
        assert live.heartbeats >= 2
    assert len(asked) == 2
