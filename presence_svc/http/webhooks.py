"""Webhook endpoints (admin only): create, list, read, change, delete, test, failures and
their replay. The secret is answered once, when made (created or rotated)."""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from dataclasses import replace
from typing import Literal

from aiohttp import web
from msgspec import UNSET
from redis.exceptions import RedisError

from presence_svc.errors import BadRequest, FieldError, NotFound
from presence_svc.http.params import path_id
from presence_svc.http.resources import DATABASE, REDIS, SETTINGS, TOKENS
from presence_svc.http.wire import Body, respond
from presence_svc.redis.keys import Keyspace
from presence_svc.schemas import (
    WebhookFailureOut,
    WebhookFailuresOut,
    WebhookHealth,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
    WebhookReplayIn,
    WebhookReplayOut,
    WebhooksOut,
    WebhookTestOut,
)
from presence_svc.timefmt import to_iso
from presence_svc.webhooks.catalogue import TEST_EVENT, sources_of, unknown_types
from presence_svc.webhooks.events import Event
from presence_svc.webhooks.sender import Sender
from presence_svc.webhooks.signing import new_secret
from presence_svc.webhooks.ssrf import url_problem
from presence_svc.webhooks.store import KEEP, Backlog, Endpoint, EndpointChange, WebhookStore
from presence_svc.webhooks.streams import WebhookStreams

__all__ = ["routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
_CREATE = Body(WebhookIn)
_PATCH = Body(WebhookPatch)
_REPLAY = Body(WebhookReplayIn)
_NO_BACKLOG = Backlog(0, None, 0)
FAILURES_PAGE = 100


def _now_ms() -> int:
    return int(time.time() * 1000)


def _store(request: web.Request) -> WebhookStore:
    request.app[TOKENS].from_request(request).require_admin()
    return request.app[DATABASE].webhooks


def _iso(ms: int | None) -> str | None:
    return None if ms is None else to_iso(ms)


def _out(endpoint: Endpoint, backlog: Backlog, *, secret: bool = False) -> WebhookOut:
    status: Literal["healthy", "failing", "disabled"] = "healthy"
    if not endpoint.enabled:
        status = "disabled"
    elif endpoint.failing_since_ms is not None:
        status = "failing"
    until = endpoint.previous_until_ms if endpoint.previous_secret else None
    return WebhookOut(
        webhook_id=endpoint.endpoint_id,
        url=endpoint.url,
        events=sorted(endpoint.events),
        artifact_prefix=endpoint.artifact_prefix,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        created_at=to_iso(endpoint.created_at_ms),
        updated_at=to_iso(endpoint.updated_at_ms),
        health=WebhookHealth(
            status=status,
            pending=backlog.pending,
            failures=backlog.failures,
            failing_since=_iso(endpoint.failing_since_ms),
            last_success_at=_iso(endpoint.last_success_ms),
            last_failure_at=_iso(endpoint.last_failure_ms),
        ),
        secret=endpoint.secret if secret else UNSET,
        previous_secret_until=_iso(until) if until and until > _now_ms() else None,
    )


def _check_fields(request: web.Request, url: str | None, events: list[str] | None) -> None:
    errors = []
    if url is not None:
        problem = url_problem(url, allow_http=request.app[SETTINGS].webhook_allow_http)
        if problem:
            errors.append(FieldError("url", problem))
    if events is not None:
        unknown = unknown_types(events)
        if unknown:
            errors.append(FieldError("events", f"unknown event types: {', '.join(unknown)}"))
    if errors:
        raise BadRequest("the body has invalid fields", errors=errors)


async def _endpoint(request: web.Request, store: WebhookStore) -> Endpoint:
    webhook_id = path_id(request, "webhookId")
    endpoint = await store.endpoint(webhook_id)
    if endpoint is None:
        raise NotFound(f"no webhook {webhook_id!r}", errors=[FieldError("webhookId", "not found")])
    return endpoint


async def _open_streams(request: web.Request, store: WebhookStore) -> None:
    """Make the streams now, so that events from this answer on are kept (best effort:
    the dispatcher makes them within a second too)."""
    endpoints = [e for e in await store.endpoints() if e.enabled]
    wanted = sources_of(frozenset().union(*(e.events for e in endpoints)))
    streams = WebhookStreams(request.app[REDIS], Keyspace(request.app[SETTINGS].partitions))
    try:
        await streams.ensure(presence="presence" in wanted, views="views" in wanted)
    except (RedisError, OSError) as exc:
        log.warning("webhooks: streams not made now; the worker will", extra={"error": repr(exc)})


@routes.post("/v1/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    store = _store(request)
    body = await _CREATE.read(request)
    _check_fields(request, body.url, body.events)
    now = _now_ms()
    endpoint = Endpoint(
        endpoint_id="wh_" + secrets.token_hex(8),
        url=body.url,
        events=frozenset(body.events),
        artifact_prefix=body.artifact_prefix,
        secret=new_secret(),
        previous_secret=None,
        previous_until_ms=None,
        enabled=True,
        disabled_reason=None,
        failing_since_ms=None,
        last_success_ms=None,
        last_failure_ms=None,
        created_at_ms=now,
        updated_at_ms=now,
    )
    await store.add_endpoint(endpoint)
    await _open_streams(request, store)
    log.info("webhook created", extra={"webhook": endpoint.endpoint_id})
    return respond(request, _out(endpoint, _NO_BACKLOG, secret=True), status=201)


@routes.get("/v1/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    store = _store(request)
    backlog = await store.backlog()
    items = [_out(e, backlog.get(e.endpoint_id, _NO_BACKLOG)) for e in await store.endpoints()]
    return respond(request, WebhooksOut(items=items))


@routes.get("/v1/webhooks/{webhookId}")
async def get_webhook(request: web.Request) -> web.Response:
    store = _store(request)
    endpoint = await _endpoint(request, store)
    backlog = await store.backlog()
    return respond(request, _out(endpoint, backlog.get(endpoint.endpoint_id, _NO_BACKLOG)))


@routes.patch("/v1/webhooks/{webhookId}")
async def patch_webhook(request: web.Request) -> web.Response:
    """Writes only what the body changes, against the row as it is then (see
    ``WebhookStore.update_endpoint``): a lane's disable or failure meanwhile, or another
    admin's change, is never undone by this one. Two rotations at once apply one after
    the other, so the secret each answers signs (the later one's overlap covers the
    earlier one's)."""
    store = _store(request)
    webhook_id = path_id(request, "webhookId")
    body = await _PATCH.read(request)
    url = None if body.url is UNSET else body.url
    events = None if body.events is UNSET else body.events
    _check_fields(request, url, events)
    now = _now_ms()
    change = EndpointChange(
        now_ms=now,
        url=KEEP if url is None else url,
        events=KEEP if events is None else frozenset(events),
        artifact_prefix=KEEP if body.artifact_prefix is UNSET else body.artifact_prefix,
        enabled=KEEP if body.enabled is UNSET else body.enabled,
    )
    if body.rotate_secret:
        change = replace(
            change, secret=new_secret(), previous_until_ms=now + body.secret_overlap_s * 1000
        )
    changed = await store.update_endpoint(webhook_id, change)
    if changed is None:
        raise NotFound(f"no webhook {webhook_id!r}", errors=[FieldError("webhookId", "not found")])
    if changed.enabled:
        await _open_streams(request, store)
    backlog = (await store.backlog()).get(changed.endpoint_id, _NO_BACKLOG)
    return respond(request, _out(changed, backlog, secret=body.rotate_secret))


@routes.delete("/v1/webhooks/{webhookId}")
async def delete_webhook(request: web.Request) -> web.Response:
    store = _store(request)
    webhook_id = path_id(request, "webhookId")
    if not await store.delete_endpoint(webhook_id):
        raise NotFound(f"no webhook {webhook_id!r}", errors=[FieldError("webhookId", "not found")])
    log.info("webhook deleted", extra={"webhook": webhook_id})
    return web.Response(status=204)


@routes.post("/v1/webhooks/{webhookId}/test")
async def test_webhook(request: web.Request) -> web.Response:
    """One ``webhook.test`` event, sent now (not queued, not retried): the answer says
    how the receiver took it."""
    store = _store(request)
    endpoint = await _endpoint(request, store)
    settings = request.app[SETTINGS]
    event = Event(
        f"test_{uuid.uuid4().hex}",
        TEST_EVENT,
        "",
        _now_ms(),
        {"webhookId": endpoint.endpoint_id},
    )
    sender = Sender(
        timeout_s=settings.webhook_timeout_s, allow_private=settings.webhook_allow_private
    )
    try:
        outcome = await sender.send(
            endpoint.url, endpoint.secrets(_now_ms()), event.event_id, event.body().encode()
        )
    finally:
        await sender.close()
    return respond(
        request,
        WebhookTestOut(
            event_id=event.event_id,
            delivered=outcome.ok,
            status=outcome.status,
            error=outcome.error,
        ),
    )


@routes.get("/v1/webhooks/{webhookId}/failures")
async def list_failures(request: web.Request) -> web.Response:
    store = _store(request)
    endpoint = await _endpoint(request, store)
    cursor = request.query.get("cursor", "0")
    if not cursor.isdigit() or len(cursor) > 19:
        raise BadRequest("a malformed cursor", errors=[FieldError("cursor", "is not a cursor")])
    rows = await store.failures(endpoint.endpoint_id, int(cursor), FAILURES_PAGE + 1)
    items = [
        WebhookFailureOut(
            failure_id=str(d.seq),
            event_id=d.event_id,
            type=d.event_type,
            artifact_id=d.artifact_id,
            attempts=d.attempts,
            last_error=d.last_error,
            created_at=to_iso(d.created_at_ms),
            event=json.loads(d.body),
        )
        for d in rows[:FAILURES_PAGE]
    ]
    more = str(rows[FAILURES_PAGE - 1].seq) if len(rows) > FAILURES_PAGE else None
    return respond(request, WebhookFailuresOut(items=items, next_cursor=more))


@routes.post("/v1/webhooks/{webhookId}/replay")
async def replay_failures(request: web.Request) -> web.Response:
    store = _store(request)
    endpoint = await _endpoint(request, store)
    body = await _REPLAY.read(request)
    seq = None if body.failure_id is None else int(body.failure_id)
    replayed = await store.replay(endpoint.endpoint_id, seq, _now_ms())
    if replayed == 0 and await store.endpoint(endpoint.endpoint_id) is None:  # deleted meanwhile
        raise NotFound(
            f"no webhook {endpoint.endpoint_id!r}", errors=[FieldError("webhookId", "not found")]
        )
    if seq is not None and replayed == 0:
        raise NotFound(
            f"no failure {body.failure_id!r} of webhook {endpoint.endpoint_id!r}",
            errors=[FieldError("failureId", "not found")],
        )
    return respond(request, WebhookReplayOut(replayed=replayed))
