"""What every request goes through: the overload caps (``admission``), problem+json for any
failure, a count and a timing per route template (never per artifact or user), CORS
preflights, and 404/405 in the same shape.

Each handler is wrapped once, when its route is added, rather than by a middleware: a
middleware chain adds coroutines and lookups to every request, about as much as the
heartbeat's own work. With no middleware, the fallback route answers what the router
would have answered in plain text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from presence_svc import metrics
from presence_svc.db.deadline import REQUEST_BUDGET_S
from presence_svc.errors import problem_for
from presence_svc.http.admission import Gate
from presence_svc.http.cors import preflight
from presence_svc.http.resources import SETTINGS

__all__ = ["Handler", "add_fallback", "add_routes", "endpoint"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_PATTERN = re.compile(r"\{(\w+):[^}]*\}")


def endpoint(
    handler: Handler, route: str, db_budget_s: float | None = None, gate: Gate | None = None
) -> Handler:
    """``handler``, answering problem+json for whatever it raises, and counted and timed
    under ``route`` (a path template); its database calls each bounded by ``db_budget_s``;
    with a ``gate``, refused with a 503 at once while the gate is full (health and metrics
    have none, so probes and scrapes still work)."""
    perf_counter = time.perf_counter
    observe = metrics.observe_request
    budget = REQUEST_BUDGET_S

    async def answer(request: web.Request) -> web.StreamResponse:
        started = perf_counter()
        budget.set(db_budget_s)
        try:
            response = await handler(request)
        except Exception as exc:
            response = problem_for(request, exc)
        observe(route, request.method, response.status, perf_counter() - started)
        return response

    wrapped = answer if gate is None else _admitting(handler, route, gate, db_budget_s)
    wrapped.__name__ = handler.__name__
    wrapped.__qualname__ = handler.__qualname__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _admitting(handler: Handler, route: str, gate: Gate, db_budget_s: float | None) -> Handler:
    """:func:`endpoint`'s wrapper behind a gate: the decision comes first, before the body
    is read or Redis is asked anything."""
    perf_counter = time.perf_counter
    observe = metrics.observe_request
    budget = REQUEST_BUDGET_S

    async def admit(request: web.Request) -> web.StreamResponse:
        started = perf_counter()
        if gate.open >= gate.limit or gate.shedding:
            response: web.StreamResponse = gate.refuse()
        else:
            gate.open += 1
            budget.set(db_budget_s)
            try:
                response = await handler(request)
            except Exception as exc:
                response = problem_for(request, exc)
            finally:
                gate.open -= 1
        observe(route, request.method, response.status, perf_counter() - started)
        return response

    return admit


def add_routes(
    app: web.Application, table: Iterable[web.AbstractRouteDef], gate: Gate | None = None
) -> None:
    """Add a module's ``RouteTableDef``, each handler wrapped by :func:`endpoint` (behind
    ``gate``, if any)."""
    budget_s = app[SETTINGS].db_request_timeout_s if SETTINGS in app else None
    for definition in table:
        if not isinstance(definition, web.RouteDef):
            raise TypeError(f"only handler routes are supported, not {definition!r}")
        template = _PATTERN.sub(r"{\1}", definition.path)  # as aiohttp's ``canonical``
        wrapped = _traced(app, endpoint(definition.handler, template, budget_s, gate), template)
        web.RouteDef(definition.method, definition.path, wrapped, definition.kwargs).register(
            app.router
        )


def _traced(app: web.Application, handler: Handler, route: str) -> Handler:
    """With ``PRESENCE_OTEL=1``, ``handler`` in a span; else ``handler`` itself."""
    if SETTINGS not in app or not app[SETTINGS].otel:  # the metrics listener has none
        return handler
    from presence_svc.http.tracing import traced  # the optional extra, imported only then

    return traced(handler, route)


_FALLBACK = "/{tail:.*}"


async def _fallback(request: web.Request) -> web.StreamResponse:
    """Any method on any path no other route took: a CORS preflight, else 405 when the
    path exists with other methods, else 404."""
    answer = preflight(request)
    if answer is not None:
        return answer
    allowed: set[str] = set()
    fallback = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is fallback:
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def add_fallback(app: web.Application) -> None:
    """Register the fallback last: the router tries it only after every other route."""
    app.router.add_route(
        "*", _FALLBACK, _traced(app, endpoint(_fallback, "unmatched"), "unmatched")
    )
