"""Overload without collapse: a per-process cap on requests in flight and on open event
streams, checked by ``edge.endpoint`` before a handler runs (so before any body is read or
Redis is asked anything).

Past a cap the answer is an immediate 503 with ``Retry-After``: queues (requests waiting
on the event loop and in the Redis pipeline) and memory stay bounded, and the requests that
are let in keep their latency. The check is a few attribute reads and comparisons, as cheap
as the heartbeat path allows.

A count alone does not keep latency: when more arrives than the CPU can parse and answer,
requests wait in front of the handlers (socket buffers, the event loop's turn), where no
count sees them. So the requests gate also sheds while the event loop runs late
(``watch_lag``): refusals are several times cheaper than answers, the loop catches up, and
what is let in waits no longer than the lag allowed.

And while requests are refused at the cap with the loop late (``adapt_limit``), fewer are
let in: the cap's worth admitted would wait behind the reading and refusing of the excess.

Under ``serve`` the requests gate is also checked before HTTP parsing (``shedding``): a
request read but not yet at its handler counts as ``pending``, and past the cap a whole
plain request is answered with :meth:`Gate.canned_refusal`, the same 503 as bytes, for
about a tenth of a heartbeat's CPU (through aiohttp: about 0.3).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate

from aiohttp import web

from presence_svc import metrics
from presence_svc.errors import problem_response
from presence_svc.tasks import cancel_and_wait

__all__ = ["GATE", "LAG_PROBE_S", "OVERLOAD_RETRY_AFTER_S", "Gate", "adapt_limit", "watch_lag"]

OVERLOAD_RETRY_AFTER_S = 1
"""A second is long enough for a burst to drain, short enough for a tab to retry soon."""
LAG_PROBE_S = 0.01
"""How often the event loop's lateness is probed (a timer: nothing on the request path)."""


class Gate:
    """How many requests of one kind this process is answering, and how many it may."""

    __slots__ = (
        "_canned",
        "_canned_at",
        "_detail",
        "_headers",
        "_lag_detail",
        "_rejected",
        "_rejected_lag",
        "ceiling",
        "limit",
        "open",
        "pending",
        "refusals",
        "shedding",
    )

    def __init__(self, reason: str, limit: int, what: str) -> None:
        self.open = 0
        self.pending = 0
        """Requests read but not yet at their handlers (counted by ``shedding``, if used)."""
        self.limit = limit
        """What is let in now: ``ceiling``, or less while ``adapt_limit`` lowers it."""
        self.ceiling = limit
        """The configured cap."""
        self.refusals = 0
        """Refusals at the limit so far (``adapt_limit`` lowers the limit only while there
        are some). Those of ``shedding`` alone are not counted: a stall of the loop with
        few requests in flight is no sign that fewer should be let in afterwards."""
        self.shedding = False
        """Set by ``watch_lag`` while the event loop runs late: everything is refused."""
        self._rejected = metrics.OVERLOAD_REJECTED.labels(reason)
        self._rejected_lag = metrics.OVERLOAD_REJECTED.labels("lag")
        self._lag_detail = f"the server is behind on its work; retry in {OVERLOAD_RETRY_AFTER_S} s"
        self._detail = (
            f"the server is at its limit of {limit} {what} per process; "
            f"retry in {OVERLOAD_RETRY_AFTER_S} s"
        )
        self._headers = {"Retry-After": str(OVERLOAD_RETRY_AFTER_S)}
        self._canned: tuple[bytes, bytes] = (b"", b"")
        self._canned_at = 0

    def canned_refusal(self, count: int) -> bytes:
        """``refuse()``'s answer as bytes on the wire, ``count`` times (for ``shedding``,
        which writes it before aiohttp parses the requests); counted as ``refuse()``."""
        now = int(time.time())
        if now != self._canned_at:  # the Date header changes once a second
            self._canned = (self._wire(self._detail, now), self._wire(self._lag_detail, now))
            self._canned_at = now
        if self.open + self.pending >= self.limit:
            self.refusals += count
        if self.open + self.pending >= self.ceiling:
            self._rejected.inc(count)
            return self._canned[0] * count
        self._rejected_lag.inc(count)
        return self._canned[1] * count

    @staticmethod
    def _wire(detail: str, now: int) -> bytes:
        response = problem_response(503, "Service Unavailable", detail, slug="overloaded")
        assert isinstance(response.body, bytes)
        head = (
            "HTTP/1.1 503 Service Unavailable\r\n"
            f"Content-Type: {response.headers['Content-Type']}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            f"Retry-After: {OVERLOAD_RETRY_AFTER_S}\r\n"
            f"Date: {formatdate(now, usegmt=True)}\r\n\r\n"
        )
        return head.encode() + response.body

    def refuse(self) -> web.Response:
        """The 503 for one request over the cap (or while shedding, or past a limit that
        ``adapt_limit`` lowered: the loop's lateness is the reason then), counted by
        reason."""
        if self.open >= self.limit:
            self.refusals += 1
        if self.open >= self.ceiling:
            detail = self._detail
            self._rejected.inc()
        else:
            detail = self._lag_detail
            self._rejected_lag.inc()
        return problem_response(
            503, "Service Unavailable", detail, slug="overloaded", headers=self._headers
        )


GATE = web.AppKey("requests_gate", Gate)
"""The app's requests gate, for ``shedding`` (which refuses before aiohttp parses)."""


def watch_lag(gate: Gate, max_lag_s: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context probing the event loop's lateness every ``LAG_PROBE_S``: ``gate``
    sheds once two probes in a row ran more than ``max_lag_s`` late (one late probe is a
    hiccup: a garbage collection, a busy neighbour), and stops at the first probe less than
    half as late."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_probe(gate, max_lag_s), name="admission:lag")
        try:
            yield
        finally:
            await cancel_and_wait(task)
            gate.shedding = False

    return context


async def _probe(gate: Gate, max_lag_s: float) -> None:
    loop = asyncio.get_running_loop()
    late_before = False
    while True:
        asked = loop.time()
        await asyncio.sleep(LAG_PROBE_S)
        lag = loop.time() - asked - LAG_PROBE_S
        late = lag > max_lag_s
        if late and late_before:
            gate.shedding = True
        elif lag < max_lag_s / 2:
            gate.shedding = False
        late_before = late


ADAPT_EVERY_S = 0.1
"""How often ``adapt_limit`` moves the limit: a few probes' worth of lateness."""
ADAPT_DECREASE = 0.75
"""The limit's factor when the loop runs late while requests are refused."""


def adapt_limit(
    gate: Gate, target_lag_s: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context moving ``gate.limit`` below its ceiling while more arrives than
    the process can answer (additive increase, multiplicative decrease, as TCP does).

    Past the cap, refusals and the reading of requests that will be refused take CPU; with
    the cap's worth still let in, the loop falls behind and every request waits in front of
    the handlers, in socket buffers no count sees. So while requests are being refused and
    the event loop runs later than ``target_lag_s`` on average, the limit falls by a
    quarter; while the loop is on time it climbs back by a thirty-second of the ceiling
    every ``ADAPT_EVERY_S``. At normal load nothing is refused, so a loop slowed by a busy
    neighbour alone never lowers it."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        metrics.ADMISSION_LIMIT.set(gate.limit)
        task = asyncio.create_task(_adapt(gate, target_lag_s), name="admission:adapt")
        try:
            yield
        finally:
            await cancel_and_wait(task)
            gate.limit = gate.ceiling

    return context


async def _adapt(gate: Gate, target_lag_s: float) -> None:
    loop = asyncio.get_running_loop()
    floor = max(1, gate.ceiling // 16)
    step = max(1, gate.ceiling // 32)
    observe = metrics.EVENT_LOOP_LAG.observe  # 100 a second: ~0.1 ms of CPU a second
    while True:
        started = loop.time()
        refusals = gate.refusals
        lag_total = 0.0
        probes = 0
        while loop.time() - started < ADAPT_EVERY_S:
            asked = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            late = loop.time() - asked - LAG_PROBE_S
            observe(max(0.0, late))
            lag_total += late
            probes += 1
        lag = lag_total / probes
        if lag > target_lag_s:
            if gate.refusals != refusals:
                gate.limit = max(floor, int(gate.limit * ADAPT_DECREASE))
                metrics.ADMISSION_LIMIT.set(gate.limit)
        elif gate.limit < gate.ceiling:
            gate.limit = min(gate.ceiling, gate.limit + step)
            metrics.ADMISSION_LIMIT.set(gate.limit)
