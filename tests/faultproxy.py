"""A TCP fault proxy for the suite: between the service and Redis (or the database), it
passes bytes through, or delays the answers, cuts connections in the middle of an answer
(a reset), or black-holes everything without a reset, until ``heal``.

It runs on the test's own event loop; the upstream is ``host:port`` or a unix socket path.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

__all__ = ["FaultProxy"]


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    silenced: bool = False  # black-holed: nothing it carries arrives any more
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        """Close both sides at once with a reset (RST), nothing flushed."""
        for writer in (self.client, self.upstream):
            sock = writer.get_extra_info("socket")
            if sock is not None and sock.family != socket.AF_UNIX:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.latency_s = 0.0
        """Each answer (upstream to client) is held this long."""
        self.mode = "pass"
        """``pass``, ``blackhole`` (nothing goes through, connections stay open, new ones
        are accepted and hear nothing) or ``cut`` (an answer is cut in the middle: its
        first byte arrives, then a reset).

        Only one byte, because one read may hold several answers: half of it could carry
        a first answer whole, and the command it answers would rightly succeed. No answer
        of RESP or PostgreSQL's protocol is a single byte, so none arrives whole."""
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def heal(self) -> None:
        """Pass everything again; black-holed connections are reset (what they swallowed
        leaves them out of step), so their clients connect afresh."""
        self.mode, self.latency_s = "pass", 0.0
        for link in [link for link in self._links if link.silenced]:
            link.reset()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.reset()
            for task in link.tasks:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.upstream.startswith("/"):
            return await asyncio.open_unix_connection(self.upstream)
        host, port = self.upstream.rsplit(":", 1)
        return await asyncio.open_connection(host, int(port))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer, silenced=self.mode == "blackhole")
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer, answers=False)),
            asyncio.create_task(self._pump(link, up_reader, writer, answers=True)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        answers: bool,
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if self.mode == "blackhole":
                    link.silenced = True
                if link.silenced:
                    continue  # swallowed
                if answers and self.latency_s:
                    await asyncio.sleep(self.latency_s)
                if answers and self.mode == "cut":
                    writer.write(chunk[:1])
                    await writer.drain()
                    await asyncio.sleep(0.05)  # let the byte arrive before the reset
                    link.reset()
                    return
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        if not link.silenced:
            link.reset()  # one side went away: so does the other
