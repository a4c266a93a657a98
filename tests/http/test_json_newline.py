"""JSON answers end with a newline, so `curl` in a terminal leaves the prompt on a line of
its own; msgpack answers are left as they are."""

from __future__ import annotations

import json
from collections.abc import Callable

import msgspec

from tests.conftest import AppClient

Auth = Callable[..., dict[str, str]]


async def test_json_answers_end_with_one_newline(client: AppClient, auth: Auth) -> None:
    heartbeat = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
    answers = [
        await client.post("/v1/heartbeat", json=heartbeat, headers=auth("alice")),
        await client.get("/v1/artifacts/doc-1/online", headers=auth("alice")),
        await client.get("/healthz"),
        await client.get("/openapi.json"),
        await client.post("/v1/heartbeat", json={"artifactId": "doc-1"}, headers=auth("a")),
        await client.get("/v1/artifacts/doc-1/online"),  # no token: 401
        await client.get("/nowhere"),
    ]
    assert [a.status for a in answers] == [200, 200, 200, 200, 400, 401, 404]
    for answer in answers:
        body = await answer.read()
        assert answer.content_type in ("application/json", "application/problem+json")
        assert body.endswith(b"\n"), (answer.url, body[-40:])
        assert not body.endswith(b"\n\n")
        json.loads(body)


async def test_msgpack_answers_get_no_newline(client: AppClient, auth: Auth) -> None:
    answer = await client.get(
        "/v1/artifacts/doc-1/online",
        headers={**auth("alice"), "Accept": "application/msgpack"},
    )
    body = await answer.read()
    assert msgspec.msgpack.decode(body) == {
        "artifactId": "doc-1",
        "online": 0,
        "sessions": 0,
        "active": 0,
        "away": 0,
    }
