"""The webhooks API: endpoints managed by an admin token, the secret shown once, rotation,
and bad input answered with 4xx problems naming the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from presence_svc.redis.keys import Keyspace
from presence_svc.webhooks import dispatcher
from presence_svc.webhooks.catalogue import EVENT_TYPES
from presence_svc.webhooks.streams import GROUP
from tests.conftest import MakeClient
from tests.webhooks.receiver import until

ADMIN = {"scope": "admin"}


async def _create(client: Any, auth: Callable[..., dict[str, str]], **body: Any) -> Any:
    body = {"url": "https://hooks.example.com/in", "events": ["artifact.occupied"], **body}
    return await client.post("/v1/webhooks", json=body, headers=auth("root", **ADMIN))


async def test_an_endpoint_is_created_listed_changed_and_deleted_and_its_secret_shown_once(
    make_client: MakeClient, auth: Callable[..., dict[str, str]], sync_redis: redis.Redis
) -> None:
    client = await make_client()
    admin = auth("root", **ADMIN)
    response = await _create(
        client, auth, events=["artifact.occupied", "view.counted"], artifactPrefix="doc-"
    )
    assert response.status == 201
    made = await response.json()
    assert made["secret"].startswith("whsec_")
    assert made["health"]["status"] == "healthy"
    webhook_id = made["webhookId"]
    # The streams exist from the answer on: no event after it is missed.
    keys = Keyspace(16)
    assert all(sync_redis.exists(keys.outbox(t)) for t in keys.tags)
    assert all(
        any(g["name"].decode() == GROUP for g in sync_redis.xinfo_groups(keys.views_stream(t)))
        for t in keys.tags
    )

    listed = await (await client.get("/v1/webhooks", headers=admin)).json()
    assert [w["webhookId"] for w in listed["items"]] == [webhook_id]
    assert "secret" not in listed["items"][0]
    one = await (await client.get(f"/v1/webhooks/{webhook_id}", headers=admin)).json()
    assert "secret" not in one
    assert one["artifactPrefix"] == "doc-"

    patched = await client.patch(
        f"/v1/webhooks/{webhook_id}",
        json={"events": ["presence.join"], "enabled": False},
        headers=admin,
    )
    body = await patched.json()
    assert patched.status == 200, body
    assert body["events"] == ["presence.join"]
    assert body["enabled"] is False
    assert body["health"]["status"] == "disabled"
    assert "secret" not in body

    rotated = await (
        await client.patch(f"/v1/webhooks/{webhook_id}", json={"rotateSecret": True}, headers=admin)
    ).json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != made["secret"]
    assert rotated["previousSecretUntil"] is not None

    assert (await client.delete(f"/v1/webhooks/{webhook_id}", headers=admin)).status == 204
    assert (await client.get(f"/v1/webhooks/{webhook_id}", headers=admin)).status == 404
    assert (await client.delete(f"/v1/webhooks/{webhook_id}", headers=admin)).status == 404


async def test_only_an_admin_manages_webhooks(
    client: Any, auth: Callable[..., dict[str, str]]
) -> None:
    assert (await client.get("/v1/webhooks")).status == 401
    assert (await client.get("/v1/webhooks", headers=auth("alice"))).status == 403
    body = {"url": "https://hooks.example.com/in", "events": ["artifact.occupied"]}
    assert (await client.post("/v1/webhooks", json=body, headers=auth("alice"))).status == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "not a url", "events": ["artifact.occupied"]}, "url"),
        ({"url": "http://hooks.example.com/in", "events": ["artifact.occupied"]}, "url"),
        ({"url": "ftp://hooks.example.com/in", "events": ["artifact.occupied"]}, "url"),
        ({"url": "https://user:pw@hooks.example.com/", "events": ["artifact.occupied"]}, "url"),
        ({"url": "https://", "events": ["artifact.occupied"]}, "url"),
        ({"url": "https://hooks.example.com/in", "events": ["artifact.exploded"]}, "events"),
        ({"url": "https://hooks.example.com/in", "events": ["version.unseen"]}, "events"),
        ({"url": "https://hooks.example.com/in", "events": ["version.read", 7]}, "events.1"),
        ({"url": "https://hooks.example.com/in", "events": []}, "events"),
        ({"url": "https://hooks.example.com/in"}, "events"),
        ({"events": ["artifact.occupied"]}, "url"),
        ({"url": 7, "events": ["artifact.occupied"]}, "url"),
        (
            {"url": "https://h.example.com/", "events": ["view.counted"], "artifactPrefix": "a b"},
            "artifactPrefix",
        ),
    ],
)
async def test_bad_endpoints_are_refused_naming_the_field(
    client: Any, auth: Callable[..., dict[str, str]], body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/webhooks", json=body, headers=auth("root", **ADMIN))
    problem = await response.json()
    assert response.status == 400, problem
    assert response.content_type == "application/problem+json"
    assert [e["field"] for e in problem["errors"]] == [field]


async def test_http_urls_are_accepted_only_when_allowed(
    make_client: MakeClient, auth: Callable[..., dict[str, str]]
) -> None:
    client = await make_client(webhook_allow_http=True)
    response = await _create(client, auth, url="http://127.0.0.1:9/in")
    assert response.status == 201


async def test_bad_changes_replays_and_unknown_ids_name_the_field(
    client: Any, auth: Callable[..., dict[str, str]]
) -> None:
    admin = auth("root", **ADMIN)
    webhook_id = (await (await _create(client, auth)).json())["webhookId"]
    path = f"/v1/webhooks/{webhook_id}"
    for body, field in [
        ({"events": ["nope"]}, "events"),
        ({"events": []}, "events"),
        ({"url": "http://x.example.com/"}, "url"),
        ({"secretOverlapS": -1}, "secretOverlapS"),
        ({"enabled": "yes"}, "enabled"),
    ]:
        response = await client.patch(path, json=body, headers=admin)
        problem = await response.json()
        assert response.status == 400, (body, problem)
        assert [e["field"] for e in problem["errors"]] == [field]

    response = await client.post(f"{path}/replay", json={"failureId": "12345"}, headers=admin)
    assert response.status == 404
    assert [e["field"] for e in (await response.json())["errors"]] == ["failureId"]
    response = await client.post(f"{path}/replay", json={"failureId": "x"}, headers=admin)
    assert response.status == 400
    assert [e["field"] for e in (await response.json())["errors"]] == ["failureId"]
    response = await client.post(f"{path}/replay", json={}, headers=admin)
    assert response.status == 200
    assert (await response.json()) == {"replayed": 0}
    response = await client.get(f"{path}/failures?cursor=abc", headers=admin)
    assert response.status == 400
    assert [e["field"] for e in (await response.json())["errors"]] == ["cursor"]

    for method, suffix in [("GET", ""), ("PATCH", ""), ("POST", "/test"), ("GET", "/failures")]:
        response = await client.request(
            method, f"/v1/webhooks/wh_missing{suffix}", json={}, headers=admin
        )
        assert response.status == 404, (method, suffix)
        assert [e["field"] for e in (await response.json())["errors"]] == ["webhookId"]
    response = await client.get("/v1/webhooks/bad%20id", headers=admin)
    assert response.status == 400


async def test_the_streams_go_once_no_endpoint_wants_them(
    make_hooks: Any, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher, "DROP_AFTER_S", 0.5)
    hooks = await make_hooks()
    keys = Keyspace(16)
    made = await hooks.create("http://127.0.0.1:9/in", ["artifact.occupied", "view.counted"])
    assert all(sync_redis.exists(keys.outbox(t)) for t in keys.tags)
    await hooks.call("DELETE", f"/v1/webhooks/{made['webhookId']}")
    await until(
        lambda: not any(sync_redis.exists(keys.outbox(t)) for t in keys.tags),
        what="the outboxes dropped",
    )
    await hooks.beat("doc-1", "alice")  # the writers create nothing while there is none
    assert not any(sync_redis.exists(keys.outbox(t)) for t in keys.tags)
    stream = keys.views_stream(keys.tag_of("doc-1"))
    await hooks.view("doc-1", "v1", "alice")
    assert [g["name"].decode() for g in sync_redis.xinfo_groups(stream)] == ["ledger"]


async def test_the_engagement_events_are_subscribable_and_in_the_openapi_enum(
    client: Any, auth: Callable[..., dict[str, str]]
) -> None:
    response = await _create(client, auth, events=["version.seen", "version.read"])
    assert response.status == 201, await response.text()
    assert sorted((await response.json())["events"]) == ["version.read", "version.seen"]
    document = await (await client.get("/openapi.json")).json()
    for name in ("WebhookIn", "WebhookPatch"):
        items = document["components"]["schemas"][name]["properties"]["events"]["items"]
        assert {"version.seen", "version.read", "view.counted"} <= set(items["enum"])
        assert set(items["enum"]) == set(EVENT_TYPES)
