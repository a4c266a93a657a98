"""A heartbeat over the API, as the live tests send them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import AppClient

Auth = Callable[..., dict[str, str]]


async def beat(
    client: AppClient, auth: Auth, user: str, session: str, artifact: str = "doc-1", **body: Any
) -> dict[str, Any]:
    """``POST /v1/heartbeat`` by ``user`` (``body``: more fields, e.g. ``versionId``); its
    answer, which must be a 200."""
    response = await client.post(
        "/v1/heartbeat",
        json={"artifactId": artifact, "sessionId": session, **body},
        headers=auth(user),
    )
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result
