"""An app with its in-process worker (so the dispatcher runs), delivering to loopback
receivers over plain HTTP, with a short retry schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from presence_svc.ratelimits import parse_rate_limits
from tests.conftest import AppClient, MakeClient

FAST = {
    "run_worker": True,
    "webhook_allow_http": True,
    "webhook_allow_private": True,
    "webhook_retry_schedule": (0.1, 0.2, 0.3),
    "webhook_timeout_s": 0.5,
    "rate_limits": parse_rate_limits("off"),
    # Nobody times out mid-test on a slow machine: leaves are the test's own.
    "online_timeout_s": 30.0,
    "away_timeout_s": 60.0,
    "retention_s": 120.0,
}


class Hooks:
    """The API as a test drives it: admin calls, heartbeats, leaves and views."""

    def __init__(self, client: AppClient, auth: Callable[..., dict[str, str]]) -> None:
        self.client = client
        self.auth = auth
        self.admin = auth("root", scope="admin")

    async def create(self, url: str, events: list[str], **more: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/webhooks", json={"url": url, "events": events, **more}, headers=self.admin
        )
        body: dict[str, Any] = await response.json()
        assert response.status == 201, body
        return body

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        response = await self.client.request(method, path, headers=self.admin, **kw)
        assert response.status < 300, await response.text()
        return None if response.status == 204 else await response.json()

    async def beat(self, artifact: str, user: str, session: str | None = None) -> None:
        body = {"artifactId": artifact, "sessionId": session or f"tab-{user}-0001"}
        response = await self.client.post("/v1/heartbeat", json=body, headers=self.auth(user))
        assert response.status == 200, await response.text()

    async def leave(self, artifact: str, user: str, session: str | None = None) -> None:
        body = {"artifactId": artifact, "sessionId": session or f"tab-{user}-0001"}
        response = await self.client.post("/v1/leave", json=body, headers=self.auth(user))
        assert response.status == 200, await response.text()

    async def view(self, artifact: str, version: str, user: str) -> None:
        body = {"artifactId": artifact, "versionId": version}
        response = await self.client.post("/v1/views", json=body, headers=self.auth(user))
        assert response.status == 200, await response.text()


@pytest.fixture
def make_hooks(make_client: MakeClient, auth: Callable[..., dict[str, str]]) -> Any:
    async def make(**changes: Any) -> Hooks:
        return Hooks(await make_client(**{**FAST, **changes}), auth)

    return make
