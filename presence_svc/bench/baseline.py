"""The yardsticks the service is measured against, each run as its own process.

* ``aiohttp``: a bare aiohttp handler answering a fixed JSON body (the baseline of the
  ``ratio``); ``PUT /__bench/size/{n}`` sets the body to exactly n bytes, so each scenario's
  baseline answers as many bytes as the service does.
* ``raw``: a bare asyncio protocol answering canned bytes, far cheaper than any HTTP
  framework: what the load generator reaches against it is the generator's own ceiling.

    python -m presence_svc.bench.baseline --port 8090 [--kind aiohttp|raw]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

from aiohttp import web

__all__ = ["body_of_size", "main"]

BODY: web.AppKey[list[bytes]] = web.AppKey("body", list)


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


def aiohttp_app() -> web.Application:
    app = web.Application(handler_args={"max_line_size": 256 * 1024})
    app[BODY] = [body_of_size(48)]
    app.router.add_put("/__bench/size/{size:\\d+}", _set_size)
    app.router.add_route("*", "/{tail:.*}", _answer)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=("aiohttp", "raw"), default="aiohttp")
    args = parser.parse_args(argv)
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
