"""Tokens: who may act as whom, and read what."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable

import jwt
import pytest

from presence_svc.auth import TokenCodec
from presence_svc.settings import Settings
from tests.conftest import SECRET, AppClient, MakeClient

Auth = Callable[..., dict[str, str]]
BODY = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _bad_tokens() -> dict[str, str]:
    future = int(time.time()) + 600
    return {
        "garbled": "not.a.token",
        "expired": TokenCodec(SECRET).issue("alice", ttl_s=-60),  # beyond the 30 s leeway
        "other-secret": TokenCodec("another-secret-of-plenty-length-0123456789").issue("alice"),
        "alg-none": ".".join(
            [_b64({"alg": "none", "typ": "JWT"}), _b64({"sub": "alice", "exp": future}), ""]
        ),
        "alg-hs512": jwt.encode({"sub": "alice", "exp": future}, SECRET, algorithm="HS512"),
        "no-exp": jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
        "no-sub": jwt.encode({"exp": future}, SECRET, algorithm="HS256"),
        "bad-sub": jwt.encode({"sub": "a b", "exp": future}, SECRET, algorithm="HS256"),
        "bad-scope": jwt.encode({"sub": "a", "exp": future, "scope": 7}, SECRET, algorithm="HS256"),
    }


@pytest.mark.parametrize("kind", list(_bad_tokens()))
async def test_invalid_token_is_401(client: AppClient, kind: str) -> None:
    token = _bad_tokens()[kind]
    response = await client.post(
        "/v1/heartbeat", json=BODY, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 401
    assert response.content_type == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer  "])
async def test_missing_or_malformed_header_is_401(client: AppClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await client.post("/v1/heartbeat", json=BODY, headers=headers)
    assert response.status == 401


async def test_client_token_is_limited_to_its_artifacts(client: AppClient, auth: Auth) -> None:
    limited = auth("alice", artifacts=["doc-1"])
    assert (await client.post("/v1/heartbeat", json=BODY, headers=limited)).status == 200
    other = {**BODY, "artifactId": "doc-2"}
    assert (await client.post("/v1/heartbeat", json=other, headers=limited)).status == 403
    assert (await client.get("/v1/artifacts/doc-2/online", headers=limited)).status == 403
    assert (await client.get("/v1/artifacts/doc-2/presence", headers=limited)).status == 403
    response = await client.get("/v1/online?artifactId=doc-1&artifactId=doc-2", headers=limited)
    assert response.status == 403
    assert (await client.get("/v1/artifacts/doc-1/online", headers=limited)).status == 200


async def test_dashboard_token_reads_but_cannot_write(client: AppClient, auth: Auth) -> None:
    dashboard = auth("board", scope="dashboard")
    assert (await client.post("/v1/heartbeat", json=BODY, headers=dashboard)).status == 403
    assert (await client.post("/v1/leave", json=BODY, headers=dashboard)).status == 403
    assert (await client.get("/v1/artifacts/doc-1/presence", headers=dashboard)).status == 200


async def test_users_directory_needs_admin(client: AppClient, auth: Auth) -> None:
    """Writes need an admin; a profile (with its privacy settings) is read by its own user
    or an admin only."""
    for scope in ("client", "dashboard"):
        headers = auth("alice", scope=scope)
        assert (
            await client.put("/v1/users/alice", json={"name": "A"}, headers=headers)
        ).status == 403
        assert (await client.get("/v1/users/bob", headers=headers)).status == 403
        assert (await client.get("/v1/users/alice", headers=headers)).status == 404  # her own
        assert (await client.delete("/v1/users/alice", headers=headers)).status == 403


async def test_beacon_leave_may_carry_its_token_in_the_body(
    client: AppClient, auth: Auth, tokens: TokenCodec
) -> None:
    await client.post("/v1/heartbeat", json=BODY, headers=auth("alice"))
    body = json.dumps({**BODY, "token": tokens.issue("alice")})
    response = await client.post(
        "/v1/leave", data=body, headers={"Content-Type": "text/plain;charset=UTF-8"}
    )
    assert response.status == 200
    assert await response.json() == {"online": 0, "sessions": 0, "active": 0, "away": 0}
    forged = json.dumps({**BODY, "token": "x.y.z"})
    response = await client.post("/v1/leave", data=forged, headers={"Content-Type": "text/plain"})
    assert response.status == 401


async def test_a_cached_token_still_expires(make_client: MakeClient) -> None:
    client = await make_client(jwt_leeway_s=0)
    # exp is in whole seconds from a whole-second iat: a ttl of 1 may end at once
    token = TokenCodec(SECRET).issue("alice", ttl_s=3)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.post("/v1/heartbeat", json=BODY, headers=headers)).status == 200
    deadline = time.monotonic() + 10
    while True:  # the verified token is cached; its exp must still end it
        status = (await client.post("/v1/heartbeat", json=BODY, headers=headers)).status
        if status == 401 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert status == 401


async def test_a_tampered_copy_of_a_cached_token_is_refused(client: AppClient) -> None:
    token = TokenCodec(SECRET).issue("alice")
    good = {"Authorization": f"Bearer {token}"}
    assert (await client.post("/v1/heartbeat", json=BODY, headers=good)).status == 200
    header, _, signature = token.rpartition(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    bad = {"Authorization": f"Bearer {header}.{flipped}"}
    assert (await client.post("/v1/heartbeat", json=BODY, headers=bad)).status == 401
    assert (await client.post("/v1/heartbeat", json=BODY, headers=good)).status == 200


def test_the_token_cache_is_bounded() -> None:
    codec = TokenCodec(SECRET, cache_size=2)
    tokens = [codec.issue(f"user-{i}") for i in range(5)]
    for token in tokens:
        codec.verify(token)
    assert len(codec._verified) == 2
    assert all(codec.verify(t).user_id == f"user-{i}" for i, t in enumerate(tokens))


def test_a_room_of_tabs_is_kept_whole_and_no_more() -> None:
    """A cache as large as a room holds every token of it (each heartbeat after the first
    is answered from it, not verified again), and more tokens than its size do not grow
    it: the least recently used go. The default holds a room of 20 000 users' tabs."""
    assert Settings().token_cache_size >= 20_000
    codec = TokenCodec(SECRET, cache_size=2_000)
    room = [codec.issue(f"user-{i}") for i in range(2_500)]
    first = [codec.verify(token) for token in room[:2_000]]
    again = [codec.verify(token) for token in reversed(room[:2_000])]
    assert all(a is b for a, b in zip(first, reversed(again), strict=True))  # all kept
    for token in room[2_000:]:  # 500 more tabs than it holds
        codec.verify(token)
    assert len(codec._verified) == 2_000
    # the least recently used went (verified afresh when they come back), the rest stay
    assert room[1_999] not in codec._verified  # used longest ago, by the reversed round
    assert room[0] in codec._verified
    assert codec.verify(room[0]) is first[0]
    assert codec.verify(room[1_999]).user_id == "user-1999"
    assert len(codec._verified) == 2_000
