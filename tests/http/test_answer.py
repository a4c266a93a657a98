"""The lean answer (``http/answer.py``) writes the bytes aiohttp writes for a
``web.Response``, in every case: over real HTTP, against a real aiohttp server, the two
answers of one request compared byte for byte (the ``Date`` line aside)."""

from __future__ import annotations

import asyncio
import compileall
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from presence_svc.http import answer
from presence_svc.http.answer import LeanAnswer
from tests.conftest import AppClient

Server = Callable[[web.Application], Awaitable[TestServer]]
Auth = Callable[..., dict[str, str]]
_DATE = re.compile(rb"\r\nDate: [^\r]*")


def _app(hooked: bool = False) -> web.Application:
    async def lean(request: web.Request) -> web.StreamResponse:
        status = int(request.query.get("status", "200"))
        return LeanAnswer(body=b'{"ok":true}\n', status=status, content_type="application/json")

    async def plain(request: web.Request) -> web.StreamResponse:
        status = int(request.query.get("status", "200"))
        return web.Response(body=b'{"ok":true}\n', status=status, content_type="application/json")

    async def closing(request: web.Request) -> web.StreamResponse:
        kind = LeanAnswer if request.query.get("lean") else web.Response
        response = kind(body=b'{"ok":true}\n', content_type="application/json")
        response.force_close()
        return response

    async def made(request: web.Request) -> web.StreamResponse:
        return LeanAnswer.ok(b'{"ok":true}\n', "application/json")

    app = web.Application()
    app.router.add_route("*", "/lean", lean)
    app.router.add_route("*", "/made", made)
    app.router.add_route("*", "/plain", plain)
    app.router.add_route("*", "/closing", closing)
    if hooked:

        async def hook(request: web.Request, response: web.StreamResponse) -> None:
            response.headers["X-Hooked"] = "1"

        app.on_response_prepare.append(hook)
    return app


async def _exchange(port: int, request: bytes) -> bytes:
    """``request`` sent raw; the whole answer, until the server closes or goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = b""
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.5)
            except TimeoutError:
                break  # a keep-alive connection stays open: the answer is all here
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = re.search(rb"Content-Length: (\d+)", head)
                if length and len(body) >= int(length.group(1)):
                    break
        return _DATE.sub(b"\r\nDate: -", data)
    finally:
        writer.close()


REQUESTS = {
    "HTTP/1.1 keep-alive POST": b"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}",
    "HTTP/1.1 GET": b"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n",
    "Connection: close": b"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    "HTTP/1.0": b"GET {path} HTTP/1.0\r\nHost: t\r\n\r\n",
    "HTTP/1.0 keep-alive": b"GET {path} HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n",
    "HEAD": b"HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n",
    "a 201": b"GET {path}?status=201 HTTP/1.1\r\nHost: t\r\n\r\n",
    "a 204": b"GET {path}?status=204 HTTP/1.1\r\nHost: t\r\n\r\n",
}


@pytest.mark.parametrize("hooked", [False, True], ids=["no hooks", "a prepare hook"])
async def test_the_lean_answer_is_aiohttps_answer_byte_for_byte(
    aiohttp_server: Server, hooked: bool
) -> None:
    server = await aiohttp_server(_app(hooked))
    assert server.port is not None
    for name, template in REQUESTS.items():
        lean = await _exchange(server.port, template.replace(b"{path}", b"/lean"))
        plain = await _exchange(server.port, template.replace(b"{path}", b"/plain"))
        assert lean == plain, name
        assert lean.startswith(b"HTTP/1."), (name, lean)
        if hooked:
            assert b"X-Hooked: 1" in lean, name


@pytest.mark.parametrize("hooked", [False, True], ids=["no hooks", "a prepare hook"])
async def test_a_200_made_without_init_is_aiohttps_answer_byte_for_byte(
    aiohttp_server: Server, hooked: bool
) -> None:
    """``LeanAnswer.ok`` (what ``respond`` sends for a 200) skips ``Response.__init__``:
    its answer is still aiohttp's, for every kind of request."""
    server = await aiohttp_server(_app(hooked))
    assert server.port is not None
    for name, template in REQUESTS.items():
        if b"status=" in template:
            continue  # ``ok`` makes 200s only
        made = await _exchange(server.port, template.replace(b"{path}", b"/made"))
        plain = await _exchange(server.port, template.replace(b"{path}", b"/plain"))
        assert made == plain, name


def test_the_pinned_aiohttp_gets_its_200s_made_without_init() -> None:
    """A new aiohttp whose ``Response`` holds other state makes ``ok`` fall back to
    ``__init__`` (the same answers, slower); this notices it, so it is not off unseen."""
    assert answer._FAST_INIT
    made = LeanAnswer.ok(b"{}", "application/msgpack")
    assert (made.status, made.reason, made.body) == (200, "OK", b"{}")
    assert dict(made.headers) == {"Content-Type": "application/msgpack"}
    assert made.content_type == "application/msgpack"


async def test_keep_alive_answers_in_a_row_on_one_connection(aiohttp_server: Server) -> None:
    """Three lean answers on one connection, each whole (the length right, the connection
    kept): a wrong Content-Length would run one answer into the next."""
    server = await aiohttp_server(_app())
    assert server.port is not None
    one = b"GET /lean HTTP/1.1\r\nHost: t\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for _ in range(3):
            writer.write(one)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Connection" not in head
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            assert await asyncio.wait_for(reader.readexactly(length), 5) == b'{"ok":true}\n'
    finally:
        writer.close()


async def test_a_response_forced_to_close_says_so(aiohttp_server: Server) -> None:
    server = await aiohttp_server(_app())
    assert server.port is not None
    lean = await _exchange(server.port, b"GET /closing?lean=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    plain = await _exchange(server.port, b"GET /closing HTTP/1.1\r\nHost: t\r\n\r\n")
    assert lean == plain
    assert b"\r\nConnection: close\r\n" in lean


def test_the_pinned_aiohttp_has_what_the_lean_answer_reads() -> None:
    """A new aiohttp that renames the response's private state turns the lean path off
    (every answer then goes aiohttp's way); this notices it, so it is not off unseen."""
    assert answer.compatible()


async def test_the_heartbeat_answers_through_the_lean_path(client: AppClient, auth: Auth) -> None:
    heartbeat = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
    got = await client.post("/v1/heartbeat", json=heartbeat, headers=auth("alice"))
    assert got.status == 200
    assert got.headers["Content-Type"] == "application/json"
    body = await got.read()
    assert got.headers["Content-Length"] == str(len(body))
    assert "Date" in got.headers
    assert "Server" in got.headers
    assert body.startswith(b'{"online":1,')
    assert body.endswith(b"}\n")


def test_an_aiohttp_installed_without_its_sources_still_serves_lean(tmp_path: Path) -> None:
    """Compiled files only (an image stripped of ``.py`` files): the service imports, and
    the check of aiohttp's internals reads its code, not its source (there is none)."""
    installed = Path(aiohttp.__file__).parent
    copy = tmp_path / "aiohttp"
    shutil.copytree(installed, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert compileall.compile_dir(copy, quiet=1, legacy=True)
    for source in copy.rglob("*.py"):
        source.unlink()
    probe = (
        "import aiohttp\n"
        "from presence_svc.http import answer, app\n"
        "assert aiohttp.__file__.endswith('.pyc'), aiohttp.__file__\n"
        "print(answer._LEAN)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
