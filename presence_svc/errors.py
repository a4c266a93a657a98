"""Every expected failure as one problem+json answer (RFC 9457), from one place.

Handlers raise a ``Problem``; they never build an error response themselves:
``problem_for`` (called by ``edge.endpoint``, which wraps every handler) turns whatever
they raised into one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

import msgspec
from aiohttp import web

from presence_svc import metrics
from presence_svc.db.errors import DatabaseUnavailable
from presence_svc.redis.refusal import unavailable_cause

__all__ = [
    "DATABASE_RETRY_AFTER_S",
    "Asking",
    "BadRequest",
    "Conflict",
    "FieldError",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "Problem",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
    "problem_for",
    "problem_response",
]

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_S = 5
"""A database outage (a restart, a failover) usually lasts longer than a Redis blip."""


class Asking(Protocol):
    """What a failure's log names of the request: an aiohttp request, or the head
    ``http/lean`` scanned."""

    @property
    def path(self) -> str: ...

    @property
    def method(self) -> str: ...


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class ProblemBody(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class Problem(Exception):
    """An answer in the problem+json shape; subclasses fix the status and title."""

    status = 500
    title = "Internal Server Error"
    slug = "internal"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors else None
        self.headers = dict(headers or {})


class BadRequest(Problem):
    status, title, slug = 400, "Bad Request", "bad-request"


class Unauthorized(Problem):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="presence-svc"'})


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, slug = 404, "Not Found", "not-found"


class Conflict(Problem):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(Problem):
    status, title, slug = 413, "Payload Too Large", "payload-too-large"


class UnsupportedMediaType(Problem):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


class RateLimited(Problem):
    """Over a per-user rate limit: ``headers`` carry ``Retry-After`` and the IETF
    ``RateLimit`` / ``RateLimit-Policy`` fields."""

    status, title, slug = 429, "Too Many Requests", "rate-limited"


class ServiceUnavailable(Problem):
    status, title, slug = 503, "Service Unavailable", "unavailable"

    def __init__(self, detail: str, retry_after_s: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


_ENCODER = msgspec.json.Encoder()


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = ProblemBody(
        type=f"urn:presence-svc:problem:{slug}",
        title=title,
        status=status,
        detail=detail,
        errors=list(errors) if errors else None,
    )
    return web.Response(
        body=_ENCODER.encode(body) + b"\n",  # a newline, as every JSON answer (wire.respond)
        status=status,
        content_type="application/problem+json",
        headers=headers,
    )


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    detail = {
        404: "no such resource",
        405: "method not allowed on this resource",
        413: "request body is larger than 16 KiB",
    }.get(exc.status, exc.text or exc.reason)
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    slug = exc.reason.lower().replace(" ", "-")
    return problem_response(exc.status, exc.reason, detail, slug=slug, headers=headers)


def _unavailable(
    request: Asking,
    exc: Exception,
    dependency: str,
    cause: str,
    detail: str,
    retry_after_s: int,
) -> web.Response:
    """503 for a dependency that refused or did not answer, naming why: the client
    retries later; the refusal is counted by cause."""
    metrics.count_refusal(dependency, cause)
    log.warning(
        f"{dependency} unavailable",
        extra={"path": request.path, "cause": cause, "error": repr(exc)},
    )
    return problem_response(
        503,
        "Service Unavailable",
        f"{detail}; retry in {retry_after_s} s",
        slug="unavailable",
        headers={"Retry-After": str(retry_after_s)},
    )


def problem_for(request: Asking, exc: Exception) -> web.Response:
    """The problem+json answer for what a handler raised; an ``HTTPException`` below 400
    (a redirect) is raised again, as aiohttp answers it itself."""
    if isinstance(exc, Problem):
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            slug=exc.slug,
            errors=exc.errors,
            headers=exc.headers,
        )
    if isinstance(exc, DatabaseUnavailable):
        detail = f"the database is unavailable ({exc.cause})"
        return _unavailable(request, exc, "database", exc.cause, detail, DATABASE_RETRY_AFTER_S)
    cause = unavailable_cause(exc)
    if cause is not None:
        detail = f"the presence store (Redis) cannot serve now: {cause.what} ({cause.code})"
        return _unavailable(request, exc, "redis", cause.code, detail, cause.retry_after_s)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return _from_http_exception(exc)
    log.exception(
        "unhandled error",
        extra={"path": request.path, "method": request.method},
        exc_info=exc,
    )
    return problem_response(
        500,
        "Internal Server Error",
        "an unexpected error occurred; it has been logged",
        slug="internal",
    )
