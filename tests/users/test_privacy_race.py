"""Two changes of one user's privacy settings at once: from two processes sharing one
SQLite file (``serve --processes N``), each changing a different setting, both hold; and
whatever order their copies reach Redis in, Redis ends as the directory says."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from presence_svc.http.resources import PRIVACY
from presence_svc.redis.keys import Keyspace
from presence_svc.users.privacy import Privacy
from tests.conftest import MakeClient, opened_database
from tests.stats.test_views import view


async def test_a_privacy_change_keeps_the_other_setting_another_process_changed_meanwhile(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    async with opened_database(f"sqlite:///{path}") as database:
        # Another process is writing: alice hides her presence, not committed yet.
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute(
            "INSERT INTO privacy (user_id, view_history, presence, updated_at) "
            "VALUES ('alice', 'visible', 'hidden', 1)"
        )
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def traced(sql: str) -> None:  # on the file's thread: this process's statements
            if "privacy" in sql:
                loop.call_soon_threadsafe(started.set)

        await database.connection.run(lambda conn: conn.set_trace_callback(traced))
        # This process hides her view history while the other's write is under way.
        change = asyncio.create_task(
            database.users.update_privacy("alice", "hidden", None, at_ms=2)
        )
        await asyncio.wait_for(started.wait(), 30)
        other.execute("COMMIT")
        other.close()
        stored = await asyncio.wait_for(change, 30)
        await database.connection.run(lambda conn: conn.set_trace_callback(None))
        assert (stored.view_history, stored.presence) == ("hidden", "hidden")
        again = await database.users.get_privacy("alice")
        assert (again.view_history, again.presence) == ("hidden", "hidden")


async def test_two_privacy_changes_at_once_leave_redis_as_the_directory_says(
    make_client: MakeClient,
    auth: Callable[..., dict[str, str]],
    sync_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Alice hides everything and, at once, shows everything again: the second change is
    stored last, but the first one's copy to Redis (the hidden-users mirror, her viewer
    records' marks) is held until the second has answered. She ends listed, as her
    settings say, in the presence list and among the version's viewers."""
    client = await make_client(online_timeout_s=30.0, retention_s=60.0)
    alice, board = auth("alice"), auth("board", scope="dashboard")
    assert (await view(client, auth, "alice"))["counted"] is True
    response = await client.post(
        "/v1/heartbeat", json={"artifactId": "doc-1", "sessionId": "tab-aaaa1"}, headers=alice
    )
    assert response.status == 200
    mirror = client.app[PRIVACY]
    put = mirror.put
    held: list[Privacy] = []

    async def held_once(privacy: Privacy) -> None:
        if not held:
            held.append(privacy)
            shown = await client.put(
                "/v1/users/alice/privacy",
                json={"viewHistory": "visible", "presence": "visible"},
                headers=alice,
            )
            assert shown.status == 200, await shown.text()
        await put(privacy)

    monkeypatch.setattr(mirror, "put", held_once)
    response = await client.put(
        "/v1/users/alice/privacy",
        json={"viewHistory": "hidden", "presence": "hidden"},
        headers=alice,
    )
    assert response.status == 200, await response.text()
    assert held[0].flags == 3  # the held copy was the hiding one
    answer = await response.json()

    stored = await (await client.get("/v1/users/alice/privacy", headers=alice)).json()
    assert (stored["viewHistory"], stored["presence"]) == ("visible", "visible")
    assert sync_redis.hget(Keyspace.hidden_users(), "alice") is None
    page = await (await client.get("/v1/artifacts/doc-1/presence", headers=board)).json()
    assert "alice" in [u["userId"] for u in page["users"]]
    response = await client.get("/v1/artifacts/doc-1/versions/v1/viewers", headers=board)
    assert "alice" in [v["userId"] for v in (await response.json())["viewers"]]
    # and the held change answers the settings as they are now
    assert (answer["viewHistory"], answer["presence"]) == ("visible", "visible")
