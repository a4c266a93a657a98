"""The presence read routes' own paths (one count, pages) as restructured for speed: each
answer is its own artifact's, however many requests share one Redis pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.conftest import AppClient
from tests.live.heartbeats import beat

pytestmark = pytest.mark.every_redis  # see tests/conftest.py

Auth = Callable[..., dict[str, str]]


async def test_concurrent_counts_of_many_artifacts_each_get_their_own(
    client: AppClient, auth: Auth
) -> None:
    # artifact doc-n has n users (one away when n > 2), so every answer is distinct
    for n in range(1, 7):
        for u in range(n):
            extra = {"status": "away"} if n > 2 and u == 0 else {}
            await beat(client, auth, f"user-{n}-{u}", f"tab-{n}-{u:04d}", f"doc-{n}", **extra)

    async def count(n: int) -> dict[str, object]:
        response = await client.get(f"/v1/artifacts/doc-{n}/online", headers=auth("carol"))
        assert response.status == 200, await response.text()
        return dict(await response.json())

    # sent together: the counts join one pipeline on the server
    answers = await asyncio.gather(*(count(n) for n in [*range(1, 8)] * 4))
    for n, answer in zip([*range(1, 8)] * 4, answers, strict=True):
        users = n if n < 7 else 0
        away = 1 if 2 < n < 7 else 0
        assert answer == {
            "artifactId": f"doc-{n}",
            "online": users,
            "sessions": users,
            "active": users - away,
            "away": away,
        }
