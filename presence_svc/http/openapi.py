"""The OpenAPI 3.1 document, built from the same msgspec Structs that validate requests.

Each endpoint is described once in ``ENDPOINTS``; a test checks that every route the app
serves is described here, so the document cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from presence_svc import schemas
from presence_svc.errors import ProblemBody
from presence_svc.webhooks.catalogue import EVENT_TYPES

__all__ = ["ENDPOINTS", "Endpoint", "openapi_document"]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    who: str
    body: Any = None
    answer: Any = None
    status: int = 200
    query: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    events: dict[str, Any] = field(default_factory=dict)
    """For ``text/event-stream``: event name -> schema of its ``data`` (JSON)."""
    notes: str = ""
    conditional: bool = False
    also: dict[int, str] = field(default_factory=dict)
    """Other success statuses, without a body: status -> what it means."""
    """A static file: ``If-None-Match`` with its ``ETag`` answers 304 Not Modified."""
    not_found: str = ""
    """When the endpoint answers 404, beside an unknown path."""
    tagged: str = ""
    """Which of its answers carry an ``ETag`` (a 304 to ``If-None-Match``): an API answer
    (not a file: see ``conditional``) that a polling client revalidates."""


_ID_PARAM = {"type": "string", "pattern": schemas.ID_PATTERN}

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "POST",
        "/v1/heartbeat",
        "Upsert a session; returns the artifact's online counts",
        "client",
        schemas.HeartbeatIn,
        schemas.HeartbeatOut,
    ),
    Endpoint(
        "POST",
        "/v1/leave",
        "Take a session offline (at once, or after a grace)",
        "client",
        schemas.LeaveIn,
        schemas.OnlineCounts,
    ),
    Endpoint(
        "GET",
        "/v1/artifacts/{artifactId}/online",
        "Online users and sessions",
        "client, dashboard",
        answer=schemas.OnlineOut,
    ),
    Endpoint(
        "GET",
        "/v1/online",
        "Online counts of up to 1000 artifacts in one call",
        "client, dashboard",
        answer=schemas.BatchOnline,
        query={"artifactId": "repeat up to 1000 times"},
    ),
    Endpoint(
        "GET",
        "/v1/artifacts/{artifactId}/presence",
        "Online users in the order they came (a stable order for paging), one row per user",
        "client, dashboard",
        answer=schemas.PresenceListOut,
        query={
            "limit": "1-500, default 100",
            "cursor": "nextCursor of the previous page of this artifact's list",
            "include": "comma list of extras: sessions (each row's sessionList), recent "
            "(users recently here, offline now)",
            "recentLimit": "with include=recent: 1-500, default 100",
            "recentCursor": "with include=recent: recentNextCursor of the previous page",
        },
    ),
    Endpoint(
        "GET",
        "/v1/artifacts/{artifactId}/events",
        "Live presence events (server-sent events)",
        "client, dashboard",
        query={
            "access_token": "the bearer token, for EventSource (it cannot send headers); "
            "used only when there is no Authorization header",
            "limit": "users in the sync event: 1-500, default 100",
        },
        content_type="text/event-stream",
        events={
            "sync": schemas.SyncEvent,
            "join": schemas.JoinEvent,
            "leave": schemas.LeaveEvent,
            "state": schemas.StateEvent,
            "sessions": schemas.SessionsEvent,
            "count": schemas.OnlineCounts,
            "interval": schemas.IntervalEvent,
        },
        notes=" A `sync` (the presence list) comes first, then `join` (a user's first session"
        " appeared), `leave` (their last one went; `reason` `left` or `timeout`), `state`"
        " (a session's state or version changed), `sessions` (an online user's number of"
        " sessions changed: a second tab opened or one of several closed) and `count`"
        " (`{online, sessions, active, away}`, at most"
        " a few per second). A large room (PRESENCE_LARGE_ROOM_USERS online) sends instead one"
        " `interval` event every PRESENCE_LARGE_ROOM_INTERVAL_S: the counts and who joined"
        " and left since the last one; the `sync`'s `mode` says which. Events carry ids:"
        " reconnecting with `Last-Event-ID` resumes"
        " after it (then a `count` without id) or, when it is too old, starts with a fresh"
        " `sync`. A `: keep-alive` comment is sent every PRESENCE_EVENTS_KEEPALIVE_S (15 s)"
        " of silence.",
    ),
    Endpoint(
        "POST",
        "/v1/views",
        "Record a view; counted once per debounce window",
        "client",
        schemas.ViewIn,
        schemas.ViewOut,
    ),
    Endpoint(
        "GET",
        "/v1/artifacts/{artifactId}/stats",
        "Views and unique viewers, per version",
        "dashboard",
        answer=schemas.StatsOut,
    ),
    Endpoint(
        "GET",
        "/v1/artifacts/{artifactId}/timeline",
        "The most users and sessions online at once, per minute, hour or day, and the peak",
        "dashboard",
        answer=schemas.TimelineOut,
        query={
            "since": "ISO 8601, default one hour before until; the step it falls in is the "
            "first point",
            "until": "ISO 8601, exclusive, default now (later is taken as now)",
            "step": "1m (default), 1h or 1d; at most 10080 points (7 days of minutes)",
        },
        tagged="A 1m answer in JSON",
    ),
    Endpoint(
        "GET",
        "/v1/artifacts/{artifactId}/versions/{versionId}/viewers",
        "Who viewed a version, most recent first",
        "dashboard",
        answer=schemas.ViewersOut,
        query={"limit": "1-500, default 100", "cursor": "nextCursor of the previous page"},
    ),
    Endpoint(
        "PUT",
        "/v1/artifacts/{artifactId}/latest",
        "Mark the version people are expected to read (it need not have views yet)",
        "publisher, admin",
        schemas.LatestIn,
        schemas.LatestOut,
    ),
    Endpoint(
        "GET",
        "/v1/artifacts/{artifactId}/latest",
        "The artifact's latest version, as last marked",
        "client, dashboard",
        answer=schemas.LatestOut,
        not_found="No latest version is set",
    ),
    Endpoint(
        "GET",
        "/v1/artifacts/{artifactId}/seen",
        "Who has seen and read the latest version (or versionId), most recent view first",
        "dashboard",
        answer=schemas.SeenOut,
        not_found="No versionId given and no latest version set",
        query={
            "versionId": "default: the latest version (404 when none is set)",
            "limit": "1-500, default 100",
            "cursor": "nextCursor of the previous page",
        },
    ),
    Endpoint(
        "POST",
        "/v1/artifacts/{artifactId}/seen/check",
        "Which of up to 1000 users have seen and read the latest version (or versionId)",
        "dashboard",
        schemas.SeenCheckIn,
        schemas.SeenCheckOut,
        not_found="No versionId given and no latest version set",
    ),
    Endpoint(
        "GET",
        "/v1/users/{userId}/unseen",
        "Which of up to 1000 artifacts have a latest version the user has not viewed",
        "that user, dashboard",
        answer=schemas.UnseenOut,
        query={"artifactId": "repeat up to 1000 times"},
    ),
    Endpoint(
        "GET",
        "/v1/users/{userId}/presence",
        "Where the user is online now, and where they were recently",
        "that user, dashboard",
        answer=schemas.WhereNowOut,
    ),
    Endpoint(
        "GET",
        "/v1/users/{userId}/recent",
        "A user's recently viewed artifacts",
        "that user, dashboard",
        answer=schemas.RecentOut,
        query={"limit": "1-200, default 50"},
    ),
    Endpoint(
        "GET",
        "/v1/ledger",
        "Ledger rows, oldest first (newest first with order=desc)",
        "dashboard",
        answer=schemas.LedgerOut,
        query={
            "order": "asc (default) or desc; keep it the same while following nextCursor",
            "artifactId": "filter",
            "userId": "filter",
            "since": "ISO 8601, inclusive",
            "until": "ISO 8601, exclusive",
            "limit": "1-1000, default 100",
            "cursor": "nextCursor of the previous page",
        },
    ),
    Endpoint(
        "GET",
        "/v1/ledger/engagement",
        "Engaged time per artifact, version, user and UTC day, as the worker last wrote it",
        "dashboard",
        answer=schemas.EngagementOut,
        query={
            "artifactId": "filter",
            "versionId": "filter",
            "userId": "filter",
            "since": "ISO 8601: the days from the one holding it",
            "until": "ISO 8601, exclusive: the days up to the one holding it",
            "limit": "1-1000, default 100",
            "cursor": "nextCursor of the previous page",
        },
    ),
    Endpoint(
        "PUT",
        "/v1/users/{userId}",
        "Create or replace a profile",
        "admin",
        schemas.ProfileIn,
        schemas.ProfileOut,
    ),
    Endpoint(
        "GET",
        "/v1/users/{userId}",
        "A stored profile, with the privacy settings",
        "that user, admin",
        answer=schemas.ProfileOut,
    ),
    Endpoint(
        "PUT",
        "/v1/users/{userId}/privacy",
        "Hide (or show) the user's view history and presence; they keep counting",
        "that user, admin",
        schemas.PrivacyIn,
        schemas.PrivacyOut,
        notes="A partial update. Takes effect at once on the answering process, within "
        "PRESENCE_PRIVACY_REFRESH_S on every other.",
    ),
    Endpoint(
        "GET",
        "/v1/users/{userId}/privacy",
        "The user's privacy settings",
        "that user, admin",
        answer=schemas.PrivacyOut,
    ),
    Endpoint(
        "DELETE",
        "/v1/users/{userId}",
        "Erase the user everywhere (counts stay); 204 when done, 202 while it continues",
        "admin",
        answer=schemas.ErasureOut,
        status=202,
        notes=" 202: the erasure continues (Location: GET /v1/erasures/{erasureId}).",
        also={204: "Erased within the request (also when there was nothing to erase)"},
    ),
    Endpoint(
        "GET",
        "/v1/erasures/{erasureId}",
        "An erasure: pending or complete, and when",
        "admin",
        answer=schemas.ErasureOut,
    ),
    Endpoint(
        "POST",
        "/v1/webhooks",
        "Create a webhook endpoint; the answer carries its signing secret, shown once",
        "admin",
        schemas.WebhookIn,
        schemas.WebhookOut,
        status=201,
    ),
    Endpoint(
        "GET",
        "/v1/webhooks",
        "Every webhook endpoint, with its health",
        "admin",
        answer=schemas.WebhooksOut,
    ),
    Endpoint(
        "GET",
        "/v1/webhooks/{webhookId}",
        "One webhook endpoint, with its health",
        "admin",
        answer=schemas.WebhookOut,
    ),
    Endpoint(
        "PATCH",
        "/v1/webhooks/{webhookId}",
        "Change, enable or disable an endpoint, or rotate its secret (both sign meanwhile)",
        "admin",
        schemas.WebhookPatch,
        schemas.WebhookOut,
    ),
    Endpoint(
        "DELETE",
        "/v1/webhooks/{webhookId}",
        "Delete an endpoint and its queue",
        "admin",
        status=204,
    ),
    Endpoint(
        "POST",
        "/v1/webhooks/{webhookId}/test",
        "Send a webhook.test event now",
        "admin",
        answer=schemas.WebhookTestOut,
    ),
    Endpoint(
        "GET",
        "/v1/webhooks/{webhookId}/failures",
        "Deliveries that used up their retries",
        "admin",
        answer=schemas.WebhookFailuresOut,
        query={"cursor": "nextCursor of the previous page"},
    ),
    Endpoint(
        "POST",
        "/v1/webhooks/{webhookId}/replay",
        "Queue one failure (failureId) or all of them again",
        "admin",
        schemas.WebhookReplayIn,
        schemas.WebhookReplayOut,
    ),
    Endpoint("GET", "/healthz", "200 while the process runs", "anyone"),
    Endpoint(
        "GET",
        "/readyz",
        "200 when Redis answers, scripts are loaded and the database answers",
        "anyone",
    ),
    Endpoint("GET", "/metrics", "Prometheus metrics", "anyone", content_type="text/plain"),
    Endpoint("GET", "/openapi.json", "This document", "anyone"),
    Endpoint(
        "GET",
        "/dashboard",
        "The dashboard page (needs a dashboard token)",
        "anyone",
        content_type="text/html",
    ),
    Endpoint(
        "GET",
        "/dashboard/{file}",
        "The dashboard's script and style sheet",
        "anyone",
        content_type="text/plain",
    ),
    Endpoint(
        "GET",
        "/favicon.ico",
        "The service's icon",
        "anyone",
        content_type="image/x-icon",
        conditional=True,
    ),
    Endpoint(
        "GET",
        "/sdk/v1/presence.js",
        "The browser SDK as one ES module (long cache, ETag)",
        "anyone",
        content_type="text/javascript",
        conditional=True,
    ),
    Endpoint(
        "GET",
        "/sdk/v1/presence.d.ts",
        "The browser SDK's type declarations in one file (long cache, ETag)",
        "anyone",
        content_type="application/typescript",
        conditional=True,
    ),
]


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    """The path and query parameters of ``endpoint``."""
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _ID_PARAM}
        for name in ("artifactId", "versionId", "userId")
        if "{" + name + "}" in endpoint.path
    ]
    if "{file}" in endpoint.path:
        files = {"type": "string", "enum": ["app.js", "style.css"]}
        params.append({"name": "file", "in": "path", "required": True, "schema": files})
    params += [
        {
            "name": name,
            "in": "query",
            "required": text.startswith("repeat"),
            "description": text,
            "schema": _ID_PARAM if name.endswith("Id") else {"type": "string"},
        }
        for name, text in endpoint.query.items()
    ]
    return params


def _conditional(op: dict[str, Any], ok: dict[str, Any], content_type: str) -> None:
    """A file answered with ``ETag`` and long caching, 304 on ``If-None-Match``."""
    ok["content"] = {content_type: {"schema": {"type": "string"}}}
    ok["headers"] = {h: {"schema": {"type": "string"}} for h in ("ETag", "Cache-Control")}
    op["parameters"] = [
        {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}
    ]
    op["responses"]["304"] = {"description": "Not Modified: the If-None-Match ETag matches"}


def _tagged(op: dict[str, Any], ok: dict[str, Any], which: str) -> None:
    """An answer with an ``ETag``, revalidated each time; 304 on ``If-None-Match``."""
    ok["headers"] = {
        "ETag": {"description": f"{which}: its entity tag", "schema": {"type": "string"}},
        "Cache-Control": {"description": "private, no-cache", "schema": {"type": "string"}},
    }
    op.setdefault("parameters", []).append(
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": f"{which}: the ETag of the answer the client holds",
            "schema": {"type": "string"},
        }
    )
    op["responses"]["304"] = {
        "description": "Not Modified: the If-None-Match ETag is the answer's",
        "headers": ok["headers"],
    }


def _also(endpoint: Endpoint) -> dict[str, Any]:
    return {str(status): {"description": text} for status, text in endpoint.also.items()}


def _operation(endpoint: Endpoint, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": endpoint.summary,
        "description": f"Who may call: {endpoint.who}.{endpoint.notes}",
        "responses": {},
    }
    if endpoint.who != "anyone":
        op["security"] = [{"bearer": []}]
        if "access_token" in endpoint.query:
            op["security"].append({"accessToken": []})
    params = _parameters(endpoint)
    if params:
        op["parameters"] = params
    if endpoint.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": refs[endpoint.body]},
                "application/msgpack": {"schema": refs[endpoint.body]},
            },
        }
        if endpoint.body is schemas.LeaveIn:
            # navigator.sendBeacon: a CORS-simple text/plain body carrying JSON and the token.
            op["requestBody"]["content"]["text/plain"] = {"schema": refs[endpoint.body]}
            op["requestBody"]["description"] = (
                "text/plain: the same JSON with `token`, sent by navigator.sendBeacon on page "
                "close (a beacon cannot set an Authorization header)"
            )
    ok: dict[str, Any] = {"description": "OK"}
    if endpoint.answer is not None:
        ok["content"] = {
            "application/json": {"schema": refs[endpoint.answer]},
            "application/msgpack": {"schema": refs[endpoint.answer]},
        }
    if endpoint.events:
        ok["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
        ok["x-events"] = {name: refs[schema] for name, schema in endpoint.events.items()}
    op["responses"][str(endpoint.status)] = ok
    op["responses"].update(_also(endpoint))
    if endpoint.conditional:
        _conditional(op, ok, endpoint.content_type)
    if endpoint.tagged:
        _tagged(op, ok, endpoint.tagged)
    _problems(
        op, endpoint, {"content": {"application/problem+json": {"schema": refs[ProblemBody]}}}
    )
    return op


def _problems(op: dict[str, Any], endpoint: Endpoint, problem: dict[str, Any]) -> None:
    """The error answers of ``endpoint``, each a problem+json."""
    for status, text in (
        (400, "Invalid input"),
        (401, "No valid token"),
        (403, "Not allowed for this token"),
        (
            503,
            "Redis or the database cannot serve now (`detail` names the cause), or the process"
            " is at its cap of requests in flight or event streams (overloaded); with Retry-After",
        ),
    ):
        if endpoint.who != "anyone" or status == 503:
            op["responses"][str(status)] = {"description": text, **problem}
    if endpoint.not_found:
        op["responses"]["404"] = {"description": endpoint.not_found, **problem}
    if endpoint.who not in ("anyone", "admin"):
        op["responses"]["429"] = {
            "description": "Over the caller's rate limit (Retry-After, RateLimit-Policy, "
            "RateLimit)",
            **problem,
        }


def _webhook_event_enum(components: dict[str, Any]) -> None:
    """The webhook bodies' ``events`` items as the catalogue's enum (the handler checks
    them against it, answering a 400 that names ``events``: the schema only tells)."""
    for name in ("WebhookIn", "WebhookPatch", "WebhookOut"):
        events = components.get(name, {}).get("properties", {}).get("events")
        if events is not None:
            events["items"] = {**events["items"], "enum": sorted(EVENT_TYPES)}


def openapi_document(app: web.Application | None = None) -> dict[str, Any]:
    types = sorted(
        {t for e in ENDPOINTS for t in (e.body, e.answer, *e.events.values()) if t is not None}
        | {ProblemBody},
        key=lambda t: t.__name__,
    )
    found, components = schemas.schema_components(types)
    _webhook_event_enum(components)
    refs = dict(zip(types, found, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "presence-svc",
            "version": "0.1.0",
            "description": "Live presence, view statistics and a view ledger.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "accessToken": {"type": "apiKey", "in": "query", "name": "access_token"},
            },
        },
    }
