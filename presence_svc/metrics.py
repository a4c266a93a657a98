"""Prometheus metrics. Labels are routes, methods, statuses and script names only: never
an artifact or user id, so the series count stays fixed however many users there are."""

from __future__ import annotations

import asyncio
import math
from bisect import bisect_left

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ADMISSION_LIMIT",
    "EVENTS_SENT",
    "LEDGER_BACKLOG",
    "LEDGER_LAG_SECONDS",
    "LEDGER_ROWS",
    "LEDGER_WRITE_LAG_SECONDS",
    "OVERLOAD_REJECTED",
    "RATE_LIMITER_ERRORS",
    "REFUSALS",
    "REQUESTS",
    "REQUEST_SECONDS",
    "SCRIPT_SECONDS",
    "SSE_DROPPED",
    "SSE_LISTENERS",
    "SWEPT_SESSIONS",
    "VIEWS",
    "WEBHOOK_BACKLOG",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_DELIVERY_SECONDS",
    "WEBHOOK_DISABLED",
    "WEBHOOK_DROPPED",
    "WEBHOOK_LAG_SECONDS",
    "count_refusal",
    "count_view",
    "fold",
    "observe_request",
    "observe_script",
]

_FAST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter(
    "presence_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    "presence_http_request_seconds",
    "Time to answer an HTTP request",
    ["route", "method"],
    buckets=_FAST_BUCKETS,
)
SCRIPT_SECONDS = Histogram(
    "presence_redis_script_seconds",
    "Time for a Lua script call, or a pipeline holding calls of it, to come back from Redis",
    ["script"],
    buckets=_FAST_BUCKETS,
)
LEDGER_ROWS = Counter(
    "presence_ledger_rows_total", "Views written to the ledger by this process", ["outcome"]
)
LEDGER_BACKLOG = Gauge(
    "presence_ledger_backlog", "Views in the streams not yet written to the ledger"
)
LEDGER_LAG_SECONDS = Gauge(
    "presence_ledger_lag_seconds", "Age of the oldest view not yet written to the ledger"
)
LEDGER_WRITE_LAG_SECONDS = Histogram(
    "presence_ledger_write_lag_seconds",
    "From the oldest view of a ledger batch being counted to the batch being written",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
SWEPT_SESSIONS = Counter(
    "presence_swept_sessions_total", "Sessions handled by the sweeper", ["outcome"]
)
REFUSALS = Counter(
    "presence_refusals_total",
    "Requests answered 503 because Redis or the database refused or did not answer",
    ["dependency", "cause"],
)
SSE_LISTENERS = Gauge("presence_sse_listeners", "Open event-stream connections")
SSE_DROPPED = Counter(
    "presence_sse_dropped_total",
    "Event streams ended because the client read too slowly (its backlog overflowed)",
)
OVERLOAD_REJECTED = Counter(
    "presence_overload_rejected_total",
    "Requests answered 503 at once because the process was at a cap (requests or streams)",
    ["reason"],
)
ADMISSION_LIMIT = Gauge(
    "presence_admission_limit",
    "Requests one process lets in at once now: PRESENCE_MAX_INFLIGHT, or less while it is "
    "overloaded and its event loop runs late (PRESENCE_TARGET_LAG_MS)",
)
EVENT_LOOP_LAG = Histogram(
    "presence_event_loop_lag_seconds",
    "How late a 10 ms timer of the event loop ran (PRESENCE_TARGET_LAG_MS's probe): what a "
    "request ready meanwhile waited behind (a garbage collection, a long callback)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
EVENTS_SENT = Counter(
    "presence_events_sent_total", "Live events queued to event-stream listeners", ["event"]
)
VIEWS = Counter(
    "presence_views_total",
    "Views recorded: counted, or within the debounce window of the same viewer's last one",
    ["outcome"],
)
VIEWS_COUNTED = VIEWS.labels("counted")
VIEWS_DEBOUNCED = VIEWS.labels("debounced")
RATE_LIMITER_ERRORS = Counter(
    "presence_rate_limiter_errors_total",
    "Rate-limit settlements (per bucket) Redis refused or did not answer: not charged",
)


# A request's count and latency, a pipeline's latency and a view's outcome are tallied in
# plain numbers and folded into the Prometheus children once per event-loop turn (and
# before a scrape). ``inc``/``observe`` take a lock each, and under ``serve --processes``
# write a memory-mapped file each: some 3 us per request on one process and 15-30 us on
# several, against one fold per route per turn. A scrape never sees a turn's tallies
# half-folded: the fold runs in one callback, and ``/metrics`` folds first.
_BOUNDS = (*_FAST_BUCKETS, math.inf)


class _Tally:
    """Observations not folded yet: their count, their sum and each bucket's count."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * len(_BOUNDS)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        # Prometheus puts a value in the first bucket whose bound is >= it.
        self.buckets[bisect_left(_BOUNDS, seconds)] += 1

    def into(self, histogram: Histogram) -> None:
        """Add the tally to ``histogram`` (a labelled child) as ``observe`` would have."""
        histogram._sum.inc(self.total)
        for bucket, count in zip(histogram._buckets, self.buckets, strict=True):
            if count:
                bucket.inc(count)


# ``labels(...)`` takes a lock and builds a key on every call; the children are bound once
# per label combination (a fixed, small set) and reused.
_REQUEST_CHILDREN: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
_SCRIPT_CHILDREN: dict[str, Histogram] = {}
_requests: dict[tuple[str, str, int], _Tally] = {}
_scripts: dict[str, _Tally] = {}
_views = [0, 0]  # counted, debounced
_fold_loop: asyncio.AbstractEventLoop | None = None
"""The loop a fold is queued on (a loop closed with a fold queued, as a test's may be, is
not waited for: the next loop queues its own)."""


_running_loop = asyncio._get_running_loop  # the loop or None, without raising
# Each observation asks whether a fold is queued on a loop still running, not which loop
# runs now: on Python 3.11 asking asyncio for the running loop is a ``getpid`` system call
# each time. One loop runs per thread, and only the event loop's thread observes, so a
# queued fold's loop that is running is the caller's.


def _fold_soon() -> None:
    global _fold_loop
    loop = _running_loop()
    if loop is None:  # no loop running here (a script): at once
        fold()
        return
    _fold_loop = loop
    loop.call_soon(fold)


def fold() -> None:
    """Fold the tallies into the Prometheus metrics (each loop turn, and before a scrape)."""
    global _fold_loop
    _fold_loop = None
    if _requests:
        for key, tally in _requests.items():
            children = _REQUEST_CHILDREN.get(key)
            if children is None:
                route, method, status = key
                children = _REQUEST_CHILDREN[key] = (
                    REQUESTS.labels(route, method, str(status)),
                    REQUEST_SECONDS.labels(route, method),
                )
            children[0].inc(tally.count)
            tally.into(children[1])
        _requests.clear()
    if _scripts:
        for name, tally in _scripts.items():
            child = _SCRIPT_CHILDREN.get(name)
            if child is None:
                child = _SCRIPT_CHILDREN[name] = SCRIPT_SECONDS.labels(name)
            tally.into(child)
        _scripts.clear()
    counted, debounced = _views
    if counted:
        VIEWS_COUNTED.inc(counted)
    if debounced:
        VIEWS_DEBOUNCED.inc(debounced)
    _views[0] = _views[1] = 0


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answer and observe its latency."""
    tally = _requests.get((route, method, status))
    if tally is None:
        tally = _requests[(route, method, status)] = _Tally()
    tally.count += 1  # ``_Tally.add``, inlined: this runs for every request
    tally.total += seconds
    tally.buckets[bisect_left(_BOUNDS, seconds)] += 1
    if _fold_loop is None or not _fold_loop.is_running():
        _fold_soon()


def observe_script(name: str, seconds: float) -> None:
    """Observe one script call, or one pipeline holding calls of it (once per pipeline:
    a coalesced batch of 50 heartbeats is one round trip, observed once)."""
    tally = _scripts.get(name)
    if tally is None:
        tally = _scripts[name] = _Tally()
    tally.add(seconds)
    if _fold_loop is None or not _fold_loop.is_running():
        _fold_soon()


def count_view(counted: bool) -> None:
    """Count one recorded view: counted, or debounced (the same viewer's again, too soon)."""
    _views[0 if counted else 1] += 1
    if _fold_loop is None or not _fold_loop.is_running():
        _fold_soon()


def count_refusal(dependency: str, cause: str) -> None:
    """Count one 503 for ``dependency`` (``redis`` or ``database``) by ``cause`` (a Redis
    error code such as ``OOM``, or a database cause such as ``disk full``)."""
    REFUSALS.labels(dependency, cause).inc()


WEBHOOK_DELIVERIES = Counter(
    "presence_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered, status (a non-2xx answer), timeout, "
    "connection, refused (an address webhooks may not reach), and failed (retries used up)",
    ["outcome"],
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "presence_webhook_delivery_seconds",
    "From an event to its delivery (2xx), retries included",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0, 3600.0, 86400.0),
)
WEBHOOK_BACKLOG = Gauge(
    "presence_webhook_backlog",
    "Webhook deliveries queued (pending) per endpoint; endpoint ids, never artifacts",
    ["endpoint"],
)
WEBHOOK_LAG_SECONDS = Gauge(
    "presence_webhook_lag_seconds",
    "Age of an endpoint's oldest pending delivery",
    ["endpoint"],
)
WEBHOOK_DROPPED = Counter(
    "presence_webhook_dropped_total",
    "Stream entries webhooks never sent: the webhooks group lagged more than "
    "PRESENCE_WEBHOOK_MAX_LAG entries behind a views stream (source views) or a partition "
    "outbox (source presence) and the trim gave them up",
    ["source"],
)
WEBHOOK_DISABLED = Counter(
    "presence_webhook_endpoints_disabled_total",
    "Endpoints disabled after failing every delivery for PRESENCE_WEBHOOK_DISABLE_AFTER_S",
)
