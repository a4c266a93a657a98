"""Which bytes the shedding protocol may answer with a canned 503 before aiohttp parses
them: only whole, plain requests to gated routes; everything else goes to aiohttp (which
refuses past the gate in ``edge``, or answers probes, preflights, streams as ever)."""

from __future__ import annotations

import pytest

from presence_svc.http import shedding
from presence_svc.http.app import create_app
from presence_svc.http.shedding import compatible, requests_in
from presence_svc.settings import Settings


def request(
    method: str = "POST",
    path: str = "/v1/heartbeat",
    body: bytes = b'{"artifactId":"doc-1","sessionId":"tab-1"}',
    extra: str = "",
    version: str = "HTTP/1.1",
) -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return (
        f"{method} {path} {version}\r\nHost: x\r\nAuthorization: Bearer t\r\n{length}{extra}\r\n"
    ).encode() + body


def test_whole_requests_to_gated_routes_are_shed_one_or_pipelined() -> None:
    assert requests_in(request(), cors=False) == 1
    assert requests_in(request() + request(), cors=False) == 2
    assert requests_in(request("GET", "/v1/artifacts/doc-1/online", b""), cors=False) == 1
    lower = b"POST /v1/views HTTP/1.1\r\nhost: x\r\ncontent-length:  2 \r\n\r\n{}"
    assert requests_in(lower, cors=False) == 1
    assert requests_in(request("DELETE", "/v1/users/u-1", b""), cors=False) == 1
    # a header that merely ends like one that matters is no such header
    like = request(extra="X-Content-Length: 99\r\nX-Upgrade: no\r\n")
    assert requests_in(like + request(), cors=False) == 2


@pytest.mark.parametrize(
    ("case", "data"),
    [
        ("half a body", request()[:-5]),
        ("half the headers", request()[:30]),
        ("a whole request then part of the next", request() + request()[:40]),
        ("a health probe", request("GET", "/healthz", b"")),
        ("a readiness probe", request("GET", "/readyz", b"")),
        ("a scrape", request("GET", "/metrics", b"")),
        ("an event stream (its own gate)", request("GET", "/v1/artifacts/d/events", b"")),
        ("the dashboard", request("GET", "/dashboard", b"")),
        ("a preflight", request("OPTIONS", "/v1/heartbeat", b"")),
        ("a HEAD (no body may follow)", request("HEAD", "/v1/artifacts/d/online", b"")),
        ("HTTP/1.0", request(version="HTTP/1.0")),
        ("Connection: close", request(extra="Connection: close\r\n")),
        ("CONNECTION: close", request(extra="CONNECTION: close\r\n")),
        ("a path with a space", request(path="/v1/heart beat")),
        ("a method in lower case", request("post")),
        ("a chunked body", request(body=b"", extra="Transfer-Encoding: chunked\r\n")),
        ("Expect: 100-continue", request(extra="Expect: 100-continue\r\n")),
        ("an upgrade", request("GET", "/v1/online", b"", "Upgrade: websocket\r\n")),
        ("two lengths", request(extra="Content-Length: 3\r\n")),
        ("two lengths, one in capitals", request(extra="CONTENT-LENGTH: 3\r\n")),
        ("a length that is no number", request(body=b"", extra="Content-Length: -1\r\n")),
        ("a length of 5000 digits", request(body=b"", extra=f"Content-Length: {'9' * 5000}\r\n")),
        # a header the scan could miss: aiohttp answers these 400 and closes
        ("a bare LF before the length", request(extra="X-A: 1\nContent-Length: 3\r\n")),
        ("a space before the colon", request(extra="Content-Length : 3\r\n")),
        ("a folded line", request(extra=" Content-Length: 3\r\n")),
        ("a bare LF before chunked", request(extra="X-A: 1\nTransfer-Encoding: chunked\r\n")),
        ("a NUL in a header name", request(extra="X\x00: y\r\n")),
        ("a control byte in a value", request(extra="X-A: a\x01b\r\n")),
        ("a tab in the path", request(path="/v1/heart\tbeat")),
        ("leading blank line", b"\r\n" + request()),
        ("not HTTP", b"hello\r\n\r\n"),
    ],
)
def test_anything_else_goes_to_aiohttp(case: str, data: bytes) -> None:
    assert requests_in(data, cors=False) == 0, case


def test_with_cors_a_request_from_a_browser_goes_to_aiohttp_for_its_cors_headers() -> None:
    browser = request(extra="Origin: https://app.example\r\n")
    assert requests_in(browser, cors=True) == 0
    assert requests_in(browser, cors=False) == 1
    assert requests_in(request(), cors=True) == 1


def test_the_installed_aiohttp_has_the_internals_shedding_reads() -> None:
    """Else ``serve`` runs without shedding before parsing (logged), refusing after routing
    as the test server does: a new aiohttp that renames them is noticed here."""
    assert compatible()


async def test_an_aiohttp_without_those_internals_serves_without_shedding(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    app = create_app(settings)
    for works, server_class in ((True, "_SheddingServer"), (False, "Server")):
        monkeypatch.setattr(shedding, "compatible", lambda works=works: works)
        runner = shedding.SheddingRunner(app)
        await runner.setup()
        try:
            assert type(runner.server).__name__ == server_class
        finally:
            await runner.cleanup()
        app = create_app(settings)
