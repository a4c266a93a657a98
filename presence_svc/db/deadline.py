"""How long a database call may take when an HTTP request waits for it.

A database that stopped answering (a black-holed network, a frozen server) would hold a
request for the driver's own command timeout (30 s); a request answers 503 well before.
The budget is set per request by the HTTP edge (a context variable, so the worker's own
calls, made outside any request, keep the driver's longer timeout: a big ledger batch may
take longer than any request should).
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["REQUEST_BUDGET_S"]

REQUEST_BUDGET_S: ContextVar[float | None] = ContextVar("db_request_budget_s", default=None)
"""Seconds a database call made for the current request may take; None: no bound."""
