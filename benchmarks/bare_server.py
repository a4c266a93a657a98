"""The overload benchmark's bare baseline: a uvloop server that answers every whole
HTTP/1.1 request with a canned 503 at once, nothing else (no parsing beyond the head's end
and ``Content-Length``, no Redis). Offered the overload phase's rate, it shows what the
machine (its kernel, the load generator, the neighbours) lets through at that rate, with
no service in the way.

    python benchmarks/bare_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys

ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
    b"Retry-After: 1\r\nContent-Length: 2\r\n\r\n{}"
)
READY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class Canned(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        out = []
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                break
            out.append(READY if head.startswith(b"get /readyz") else ANSWER)
            self.buffer = self.buffer[end + 4 + length :]
        if out:
            self.transport.write(b"".join(out))


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Canned, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(int(sys.argv[1])))
