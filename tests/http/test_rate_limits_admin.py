"""The ``admin`` route class: the administrative writes a token below admin may make (a
publisher's ``PUT .../latest``, a user's own ``PUT .../privacy``) have a bucket of their own,
apart from the reads; admin tokens are never limited."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiohttp import ClientResponse

from presence_svc.ratelimits import Bucket, RouteClass, parse_rate_limits
from presence_svc.settings import ConfigError, Settings
from tests.conftest import AppClient, MakeClient

Auth = Callable[..., dict[str, str]]


async def _latest(client: AppClient, headers: dict[str, str], version: str) -> ClientResponse:
    body = {"versionId": version}
    return await client.put("/v1/artifacts/doc-1/latest", json=body, headers=headers)


async def _privacy(client: AppClient, headers: dict[str, str], body: object) -> ClientResponse:
    return await client.put("/v1/users/alice/privacy", json=body, headers=headers)


async def _assert_limited(response: ClientResponse, route_class: str, burst: int) -> None:
    assert response.status == 429, await response.text()
    problem = await response.json()
    assert problem["type"] == "urn:presence-svc:problem:rate-limited"
    assert route_class in problem["detail"]
    assert 55 <= int(response.headers["Retry-After"]) <= 60  # a token a minute
    assert response.headers["RateLimit-Policy"] == f'"{route_class}";q={burst};w={60 * burst}'
    assert response.headers["RateLimit"].startswith(f'"{route_class}";r=0;t=')


async def test_a_publishers_latest_versions_meet_the_admin_limit_apart_from_its_reads(
    make_client: MakeClient, auth: Auth
) -> None:
    limits = parse_rate_limits("admin=1/m:burst=2,read=1/m:burst=1")
    client = await make_client(rate_limits=limits)
    cms = auth("cms", scope="publisher")
    assert (await _latest(client, cms, "v1")).status == 200
    assert (await _latest(client, cms, "v2")).status == 200
    await _assert_limited(await _latest(client, cms, "v3"), "admin", 2)
    # The admin bucket is empty: the reads' is full, and the other way round.
    latest = await client.get("/v1/artifacts/doc-1/latest", headers=cms)
    assert latest.status == 200
    assert (await latest.json())["versionId"] == "v2"  # the refused write wrote nothing
    await _assert_limited(await client.get("/v1/artifacts/doc-1/latest", headers=cms), "read", 1)
    other = auth("cms-2", scope="publisher")
    assert (await client.get("/v1/artifacts/doc-1/latest", headers=other)).status == 200
    await _assert_limited(await client.get("/v1/artifacts/doc-1/latest", headers=other), "read", 1)
    assert (await _latest(client, other, "v3")).status == 200  # its own admin bucket is full
    # Admin tokens are never limited.
    ops = auth("ops", scope="admin")
    assert [(await _latest(client, ops, f"v{i}")).status for i in range(10)] == [200] * 10


async def test_a_users_privacy_writes_meet_the_admin_limit_and_bad_input_takes_no_token(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(rate_limits=parse_rate_limits("admin=1/m:burst=2"))
    alice = auth("alice")
    for _ in range(3):  # refused for its body: no token taken
        assert (await _privacy(client, alice, {"presence": "sometimes"})).status == 400
    assert (await _privacy(client, alice, {"presence": "hidden"})).status == 200
    assert (await _privacy(client, alice, {"viewHistory": "hidden"})).status == 200
    await _assert_limited(await _privacy(client, alice, {"presence": "visible"}), "admin", 2)
    # Her reads have their own bucket; the refused write changed nothing.
    settings = await client.get("/v1/users/alice/privacy", headers=alice)
    assert settings.status == 200
    assert (await settings.json())["presence"] == "hidden"
    ops = auth("ops", scope="admin")
    for _ in range(5):
        assert (await _privacy(client, ops, {"presence": "visible"})).status == 200


def test_the_admin_class_is_read_from_presence_rate_limits() -> None:
    assert Settings().rate_limits.get(RouteClass.ADMIN) == Bucket(rate=20, burst=300)
    limits = Settings.from_env({"PRESENCE_RATE_LIMITS": "admin=5/s:burst=7"}).rate_limits
    assert limits.get(RouteClass.ADMIN) == Bucket(rate=5, burst=7)
    assert limits.get(RouteClass.READ) == Bucket(rate=50, burst=200)  # the others keep theirs
    off = Settings.from_env({"PRESENCE_RATE_LIMITS": "admin=off"}).rate_limits
    assert off.get(RouteClass.ADMIN) is None
    assert str(off) == "heartbeat=20/s:burst=60,view=10/s:burst=50,read=50/s:burst=200,admin=off"
    with pytest.raises(ConfigError, match="PRESENCE_RATE_LIMITS"):
        Settings.from_env({"PRESENCE_RATE_LIMITS": "admin=0/s"})


async def test_admin_off_leaves_the_admin_writes_unlimited(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(rate_limits=parse_rate_limits("admin=off,read=1/m:burst=1"))
    cms = auth("cms", scope="publisher")
    assert [(await _latest(client, cms, f"v{i}")).status for i in range(20)] == [200] * 20
