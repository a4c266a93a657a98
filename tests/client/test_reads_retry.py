"""The Python SDK's dashboard reads against the real service's rate limiter: a 429 is waited
out (``Retry-After``) and retried by the client itself, also on POST seen/check (a read);
after ``max_attempts`` the 429 is raised. And a ``Retry-After`` given as an HTTP date (what
a proxy in front of the service may send) is honoured as the seconds form is."""

from __future__ import annotations

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


async def test_the_last_429_is_raised_once_the_attempts_ran_out(
    aiohttp_server: Server,
    settings: Settings,
    tokens: TokenCodec,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOG)
    url = await _limited(aiohttp_server, settings)
    token = tokens.issue("board", scope=Scope.DASHBOARD, ttl_s=600)
    # A backoff cap far below Retry-After: the second attempt comes too soon and is refused.
    async with PresenceClient(url, token, max_attempts=2, max_backoff_s=0.05) as board:
        await board.stats("doc-1")
        with pytest.raises(PresenceClientError) as caught:
            await board.timeline("doc-1")
    assert caught.value.status == 429
    assert caught.value.transient
    assert caught.value.retry_after_s is not None
    assert caught.value.retry_after_s >= 1
    assert caught.value.problem["status"] == 429
    assert _retried(caplog) == [("/v1/artifacts/doc-1/timeline", 429)]  # one retry: 2 in all


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
