"""Overload without collapse: a per-process cap on requests in flight and on open event
streams, checked by ``edge.endpoint`` before a handler runs (so before any body is read or
Redis is asked anything).

Past a cap the answer is an immediate 503 with ``Retry-After``: queues (requests waiting
on the event loop and in the Redis pipeline) and memory stay bounded, and the requests that
are let in keep their latency. The check is two attribute reads and a comparison, as cheap
as the heartbeat path allows.
"""

from __future__ import annotations

from aiohttp import web

from presence_svc import metrics
from presence_svc.errors import problem_response

__all__ = ["OVERLOAD_RETRY_AFTER_S", "Gate"]

OVERLOAD_RETRY_AFTER_S = 1
"""A second is long enough for a burst to drain, short enough for a tab to retry soon."""


class Gate:
    """How many requests of one kind this process is answering, and how many it may."""

    __slots__ = ("_detail", "_headers", "_rejected", "limit", "open")

    def __init__(self, reason: str, limit: int, what: str) -> None:
        self.open = 0
        self.limit = limit
        self._rejected = metrics.OVERLOAD_REJECTED.labels(reason)
        self._detail = (
            f"the server is at its limit of {limit} {what} per process; "
            f"retry in {OVERLOAD_RETRY_AFTER_S} s"
        )
        self._headers = {"Retry-After": str(OVERLOAD_RETRY_AFTER_S)}

    def refuse(self) -> web.Response:
        """The 503 for one request over the cap, counted by reason."""
        self._rejected.inc()
        return problem_response(
            503, "Service Unavailable", self._detail, slug="overloaded", headers=self._headers
        )
