"""The yardsticks the service is measured against, each run as its own process.

* ``aiohttp``: a bare aiohttp handler answering a fixed JSON body (the baseline of the
  ``ratio``); ``PUT /__bench/size/{n}`` sets the body to exactly n bytes, so each scenario's
  baseline answers as many bytes as the service does.
* ``raw``: a bare asyncio protocol answering canned bytes, far cheaper than any HTTP
  framework: what the load generator reaches against it is the generator's own ceiling.

``--processes N`` (aiohttp only): N processes on the port (``SO_REUSEPORT`` sockets bound by
the parent, as ``serve --processes N`` does), sharing the body size: the yardstick of
``bench --server-processes N``.

    python -m presence_svc.bench.baseline --port 8090 [--kind aiohttp|raw] [--processes N]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import signal
import socket
from multiprocessing.sharedctypes import Synchronized
from typing import cast

from aiohttp import web

from presence_svc.redis.embedded import die_with_parent

__all__ = ["body_of_size", "main"]

BODY: web.AppKey[list[bytes]] = web.AppKey("body", list)
SHARED_SIZE: web.AppKey[Synchronized[int]] = web.AppKey("shared_size", Synchronized)
"""With several processes: the body size every one of them answers (a PUT reaches one)."""


def body_of_size(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes (at least 8)."""
    size = max(size, 8)
    return b'{"x":"' + b"a" * (size - 8) + b'"}'


async def _answer(request: web.Request) -> web.Response:
    if request.can_read_body:
        await request.read()
    return web.Response(body=request.app[BODY][0], content_type="application/json")


async def _set_size(request: web.Request) -> web.Response:
    request.app[BODY][0] = body_of_size(int(request.match_info["size"]))
    return web.Response(text="ok")


async def _answer_shared(request: web.Request) -> web.Response:
    if request.can_read_body:
        await request.read()
    body = request.app[BODY]
    size = request.app[SHARED_SIZE].value
    if len(body[0]) != size:
        body[0] = body_of_size(size)
    return web.Response(body=body[0], content_type="application/json")


async def _set_shared_size(request: web.Request) -> web.Response:
    request.app[SHARED_SIZE].value = len(body_of_size(int(request.match_info["size"])))
    return web.Response(text="ok")


def aiohttp_app(shared_size: Synchronized[int] | None = None) -> web.Application:
    app = web.Application(handler_args={"max_line_size": 256 * 1024})
    app[BODY] = [body_of_size(48)]
    if shared_size is None:
        app.router.add_put("/__bench/size/{size:\\d+}", _set_size)
        app.router.add_route("*", "/{tail:.*}", _answer)
    else:
        app[SHARED_SIZE] = shared_size
        app.router.add_put("/__bench/size/{size:\\d+}", _set_shared_size)
        app.router.add_route("*", "/{tail:.*}", _answer_shared)
    return app


class _Canned(asyncio.Protocol):
    """Answers every complete request with the same bytes; parses only what it must."""

    RESPONSE = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 48\r\n\r\n"
        + body_of_size(48)
    )

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        answers = 0
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            at = buffer.find(b"Content-Length: ", 0, end)
            length = int(buffer[at + 16 : buffer.find(b"\r\n", at)]) if at >= 0 else 0
            if len(buffer) < end + 4 + length:
                break
            del buffer[: end + 4 + length]
            answers += 1
        if answers and self.transport is not None:
            self.transport.write(self.RESPONSE * answers)


async def _serve_raw(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Canned, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def _loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _serve_one(sock: socket.socket, shared_size: Synchronized[int]) -> None:
    """One of several aiohttp processes, on its own ``SO_REUSEPORT`` socket."""
    die_with_parent()
    web.run_app(aiohttp_app(shared_size), sock=sock, print=None, access_log=None, loop=_loop())


def _exit(*_: object) -> None:
    raise SystemExit(0)


def _serve_many(port: int, processes: int) -> None:
    """``processes`` aiohttp processes on ``port``: the sockets are bound here first, so
    the port answers only once every process can take connections' share."""
    sockets = []
    for _ in range(processes):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(1024)
        sock.set_inheritable(True)
        sockets.append(sock)
    context = multiprocessing.get_context("fork")
    shared_size = context.Value("q", len(body_of_size(48)), lock=False)
    children = [context.Process(target=_serve_one, args=(s, shared_size)) for s in sockets]
    for child in children:
        child.start()
    signal.signal(signal.SIGTERM, _exit)  # so the children are ended below
    try:
        for child in children:
            child.join()
    finally:
        for child in children:
            child.terminate()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=("aiohttp", "raw"), default="aiohttp")
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)
    if args.kind == "aiohttp" and args.processes > 1:
        _serve_many(args.port, args.processes)
        return
    loop = _loop()
    if args.kind == "raw":
        try:
            loop.run_until_complete(_serve_raw(args.port))
        finally:
            loop.close()
        return
    web.run_app(
        aiohttp_app(),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        loop=loop,
    )


if __name__ == "__main__":
    main()
