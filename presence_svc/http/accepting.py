"""Refusing at the connection (``PRESENCE_OVERLOAD_CLOSE``): past the requests cap, the
503 says ``Connection: close`` and the connection is closed, and the process stops
accepting new connections until fewer than half the limit are in flight.

A refused keep-alive connection would send its next request at once, and each refusal
costs a read, a write and a turn of the event loop. Closed, its client has to connect
again; while the process does not accept, the new connection waits in the kernel's listen
backlog (``PRESENCE_LISTEN_BACKLOG``) at no CPU of this process, and once the backlog is
full the kernel drops further handshakes (the client retries the handshake later).

Accepting is stopped by closing the asyncio server of each listening socket (an asyncio
server cannot be paused) and resumed with a new one on a duplicate of the same socket: the
kernel's socket, and the connections queued on it, stay.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from presence_svc import metrics
from presence_svc.http.admission import Gate

__all__ = ["CHECK_S", "Acceptor", "PausableSite"]

log = logging.getLogger(__name__)

CHECK_S = 0.002
"""How often a paused acceptor checks the in-flight count (a timer, only while paused)."""


class PausableSite(web.SockSite):
    """aiohttp's ``SockSite``, serving a duplicate of its socket, so that its server can be
    closed and made again without closing the listening socket."""

    async def start(self) -> None:
        await web.BaseSite.start(self)
        await self.resume()

    def pause(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()

    async def resume(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        self._server = await loop.create_server(
            server, sock=self._sock.dup(), ssl=self._ssl_context, backlog=self._backlog
        )

    async def stop(self) -> None:
        self._runner._check_site(self)
        self.pause()
        self._runner._unreg_site(self)


class Acceptor:
    """Stops ``sites`` accepting while ``gate`` refuses at its limit; resumes them once
    fewer than half the limit are in flight (the low-water mark: resuming at the first
    free place would accept a burst that is refused again at once)."""

    __slots__ = ("_check", "_gate", "_loop", "_resuming", "_sites", "paused")

    def __init__(self, gate: Gate, sites: list[PausableSite]) -> None:
        self._gate = gate
        self._sites = sites
        self._loop = asyncio.get_running_loop()
        self._check: asyncio.TimerHandle | None = None
        self._resuming: asyncio.Task[None] | None = None
        self.paused = False

    def full(self) -> None:
        """A request was refused at the limit: stop accepting (if not already)."""
        if self.paused or self._resuming is not None:
            return
        self.paused = True
        for site in self._sites:
            site.pause()
        metrics.ACCEPT_PAUSES.inc()
        self._check = self._loop.call_later(CHECK_S, self._poll)

    def _poll(self) -> None:
        gate = self._gate
        if gate.open + gate.pending < max(1, gate.limit // 2):
            self._check = None
            self._resuming = self._loop.create_task(self._resume(), name="accepting:resume")
        else:
            self._check = self._loop.call_later(CHECK_S, self._poll)

    async def _resume(self) -> None:
        try:
            for site in self._sites:
                await site.resume()
        except OSError:
            log.exception("could not accept connections again; retrying")
            self._check = self._loop.call_later(CHECK_S, self._poll)
            return
        finally:
            self._resuming = None
        self.paused = False

    def close(self) -> None:
        if self._check is not None:
            self._check.cancel()
            self._check = None
        if self._resuming is not None:
            self._resuming.cancel()
