"""The presence read routes' own paths (one count, pages) as restructured for speed: each
answer is its own artifact's, however many requests share one Redis pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis

from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import RedisConnection
from presence_svc.settings import Settings
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


LONG_IDS = ["ann", "b" * 40, "c" * 128, "d" * 300]
"""User ids as the page script reads them from packed infos: short (a fixstr), past 31
bytes (a str8), the longest the API takes, and past 255 bytes (no token names such a user;
the script unpacks those infos whole)."""


async def _rows(store: PresenceStore, artifact: str) -> list[tuple[Any, ...]]:
    page = await store.page(artifact, 4, None, sessions=True)
    return [
        (
            r.user_id,
            r.version_id,
            r.state,
            r.sessions,
            r.status,
            # in the hash's order: a field past 64 bytes (the longest id) makes it a
            # table without one
            sorted((m.status, m.version_id or "", m.state) for m in r.metas or []),
        )
        for r in page.rows
    ]


async def test_rows_are_the_same_in_a_small_and_a_large_room_for_any_user_id(
    redis_conn: RedisConnection, settings: Settings, sync_redis: redis.Redis
) -> None:
    store = PresenceStore(redis_conn, settings.replace(online_timeout_s=30.0, retention_s=60.0))
    for artifact in ("doc-small", "doc-large"):
        for n, user in enumerate(LONG_IDS):
            state = f'{{"n":{n}}}'.encode()
            await store.heartbeat(artifact, f"tab-{n}-a", user, f"v{n}", state)
            if n % 2:  # a second tab, away, and a third one that is hidden
                await asyncio.sleep(0.005)  # seen later than the first: the row's version
                await store.heartbeat(artifact, f"tab-{n}-b", user, None, None, away=True)
                await store.heartbeat(artifact, f"tab-{n}-c", user, "vh", None, hidden=True)
        await store.heartbeat(artifact, "tab-ghost", "ghost", "v9", None, hidden=True)
    for n in range(80):  # later comers make one room large; they come after on its pages
        await store.heartbeat("doc-large", f"tab-fill-{n}", f"fill-{n:03d}", None, None)
    assert sync_redis.hexists(store.keys.artifact("doc-large").info, "~L")
    assert not sync_redis.hexists(store.keys.artifact("doc-small").info, "~L")
    expected = [
        ("ann", "v0", {"n": 0}, 1, "active", [("active", "v0", {"n": 0})]),
        (
            "b" * 40,
            None,
            None,
            2,
            "active",
            [("active", "v1", {"n": 1}), ("away", "", None)],
        ),
        ("c" * 128, "v2", {"n": 2}, 1, "active", [("active", "v2", {"n": 2})]),
        (
            "d" * 300,
            None,
            None,
            2,
            "active",
            [("active", "v3", {"n": 3}), ("away", "", None)],
        ),
    ]
    small, large = await _rows(store, "doc-small"), await _rows(store, "doc-large")
    # the most recent session gives the row's version and state (the away tab, which beat
    # last); the hidden tab is neither listed nor counted, the hidden user not listed
    assert small == expected
    assert large == expected
