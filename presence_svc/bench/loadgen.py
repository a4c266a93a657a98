"""The load generator: raw HTTP/1.1 keep-alive connections on one event loop per process.

aiohttp's client spends far more CPU per request than a server does to answer it, so it
would measure itself. Each connection here is a bare ``asyncio.Protocol`` that writes
pre-built request bytes and parses only the status line and ``Content-Length`` of the
answer, so one process drives several times what one server process can answer.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from threading import Barrier
from typing import Any, cast

__all__ = ["Job", "LoadResult", "run_job"]

_CONTENT_LENGTH = b"\r\nContent-Length:"
_CONTENT_LENGTH_LOWER = b"\r\ncontent-length:"


@dataclass(frozen=True, slots=True)
class Job:
    """What one load process does: ``connections`` connections cycling through
    ``requests`` (raw HTTP/1.1 bytes) until ``max_requests`` or ``duration_s``."""

    host: str
    port: int
    requests: list[bytes]
    connections: int
    max_requests: int
    duration_s: float
    warmup: int = 0
    """Requests per connection before the measured part starts (not counted)."""
    offset: int = 0
    expect_status: int = 200


@dataclass(slots=True)
class LoadResult:
    latencies: bytes = b""
    """``array('d')`` of seconds, one per answered request (measured part only)."""
    ok: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    cpu_s: float = 0.0


class _Driver:
    """Shared state of one process's connections: the request cycle and the budget."""

    def __init__(self, job: Job, progress: Synchronized[int] | None) -> None:
        self.job = job
        self.requests = job.requests
        self.next = job.offset % len(job.requests)
        self.remaining = 0
        self.deadline = 0.0
        self.measuring = False
        self.latencies = array.array("d")
        self.ok = 0
        self.errors = 0
        self.statuses: dict[int, int] = {}
        self.progress = progress
        self.idle: asyncio.Future[None] | None = None
        self.busy = 0

    def take(self) -> bytes | None:
        if self.remaining <= 0 or (self.measuring and time.monotonic() > self.deadline):
            return None
        self.remaining -= 1
        request = self.requests[self.next]
        self.next += 1
        if self.next == len(self.requests):
            self.next = 0
        return request

    def answered(self, status: int, elapsed: float) -> None:
        if self.measuring:
            self.latencies.append(elapsed)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == self.job.expect_status:
                self.ok += 1
            else:
                self.errors += 1
            if self.progress is not None and not len(self.latencies) & 255:
                self.progress.value = len(self.latencies)

    def failed(self) -> None:
        if self.measuring:
            self.errors += 1

    def released(self) -> None:
        self.busy -= 1
        if self.busy == 0 and self.idle is not None and not self.idle.done():
            self.idle.set_result(None)


class _Connection(asyncio.Protocol):
    def __init__(self, driver: _Driver) -> None:
        self.driver = driver
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.need = -1
        self.status = 0
        self.sent_at = 0.0
        self.active = False
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def start(self) -> None:
        self.active = True
        self.driver.busy += 1
        self._send()

    def _send(self) -> None:
        request = self.driver.take()
        if request is None or self.transport is None:
            self.active = False
            self.driver.released()
            return
        self.sent_at = time.monotonic()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            if self.need < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buffer[:end])
                self.status = int(head[9:12])
                at = head.find(_CONTENT_LENGTH)
                if at < 0:
                    at = head.lower().find(_CONTENT_LENGTH_LOWER)
                length = 0
                if at >= 0:
                    stop = head.find(b"\r\n", at + 2)
                    length = int(head[at + 17 : stop if stop >= 0 else len(head)])
                del buffer[: end + 4]
                self.need = length
            if len(buffer) < self.need:
                return
            del buffer[: self.need]
            self.need = -1
            self.driver.answered(self.status, time.monotonic() - self.sent_at)
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.active:
            self.driver.failed()
            self.active = False
            self.driver.released()
        if not self.lost.done():
            self.lost.set_result(None)


async def _connect(driver: _Driver, count: int) -> list[_Connection]:
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(count):
        _, protocol = await loop.create_connection(
            lambda: _Connection(driver), driver.job.host, driver.job.port
        )
        connections.append(protocol)
    return connections


async def _round(driver: _Driver, connections: list[_Connection], budget: int) -> None:
    """Every connection sends until the budget (or the deadline) is used up."""
    loop = asyncio.get_running_loop()
    driver.remaining = budget
    driver.idle = loop.create_future()
    live = [c for c in connections if c.transport is not None]
    for connection in live:
        connection.start()
    if live:
        await driver.idle


def run_job(
    job: Job,
    barrier: Barrier | None,
    progress: Synchronized[int] | None,
    out: Connection,
) -> None:
    """Process entry point: warm up, wait for every process at ``barrier``, measure,
    send a ``LoadResult`` back through ``out``."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    driver = _Driver(job, progress)
    try:
        connections = loop.run_until_complete(_connect(driver, job.connections))
        if job.warmup:
            loop.run_until_complete(_round(driver, connections, job.warmup * job.connections))
        if barrier is not None:
            barrier.wait(timeout=60)
        cpu0 = time.process_time()
        driver.measuring = True
        driver.deadline = time.monotonic() + job.duration_s
        started = time.monotonic()
        loop.run_until_complete(_round(driver, connections, job.max_requests))
        finished = time.monotonic()
        result = LoadResult(
            latencies=driver.latencies.tobytes(),
            ok=driver.ok,
            errors=driver.errors,
            statuses=driver.statuses,
            started=started,
            finished=finished,
            cpu_s=time.process_time() - cpu0,
        )
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
        loop.run_until_complete(asyncio.sleep(0))
        out.send(result)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            out.send(_failure(exc))
        raise
    finally:
        loop.close()
        out.close()


def _failure(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {exc}", "pid": os.getpid()}
