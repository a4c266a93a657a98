"""A real webhook receiver on loopback (aiohttp): verifies every delivery's signature with
the SDK's verifier, records what it got, and misbehaves on demand (fails the first
deliveries, answers 429 with Retry-After or 500, hangs past the sender's timeout)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from presence_svc.client import WebhookVerificationError, verify_webhook


@dataclass
class Received:
    event_id: str
    type: str
    data: dict[str, Any]
    at: float
    signatures: list[str]


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)
    """Any one of them must verify a delivery (else 401 and it is not recorded)."""
    got: list[Received] = field(default_factory=list)
    attempts: list[tuple[str, float]] = field(default_factory=list)
    bad_signatures: int = 0
    behave: Callable[[str, dict[str, Any], int], Any] | None = None
    """(event id, body, attempt number of this id) -> a response, "hang", "slow" (204 a
    second late), or None (204)."""
    url: str = ""

    def ids(self) -> list[str]:
        return [r.event_id for r in self.got]

    def unique(self) -> list[Received]:
        seen: set[str] = set()
        out = []
        for r in self.got:
            if r.event_id not in seen:
                seen.add(r.event_id)
                out.append(r)
        return out

    def of_type(self, kind: str) -> list[Received]:
        return [r for r in self.unique() if r.type == kind]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        event_id = request.headers.get("webhook-id", "")
        now = time.monotonic()
        self.attempts.append((event_id, now))
        try:
            verify_webhook(raw, dict(request.headers), self.secrets)
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=401)
        body = json.loads(raw)
        n = sum(1 for i, _ in self.attempts if i == event_id)
        answer = None if self.behave is None else self.behave(event_id, body, n)
        if answer == "hang":
            await asyncio.sleep(3600)
        if answer == "slow":  # answers, but a second late
            await asyncio.sleep(1.0)
        if isinstance(answer, web.StreamResponse):
            return answer
        signatures = request.headers["webhook-signature"].split(" ")
        self.got.append(Received(event_id, body["type"], body["data"], now, signatures))
        return web.Response(status=204)


@asynccontextmanager
async def receiving(secrets: list[str] | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver(secrets=secrets or [])
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def until(check: Callable[[], bool], timeout_s: float = 20.0, what: str = "") -> None:
    """Poll ``check`` until it holds (generous deadline: a shared, noisy machine)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.02)
