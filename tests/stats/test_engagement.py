"""Engaged time through HTTP against the real Redis: clamping, totals per version, readers,
the histogram, the page-close beacon, and what other features keep in a viewer's entry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import redis

from presence_svc.redis.keys import Keyspace
from presence_svc.stats.engagement import SLACK_MS
from tests.conftest import AppClient, MakeClient

Auth = Callable[..., dict[str, str]]
SESSION = "tab-engage1"


@pytest.fixture
async def client(make_client: MakeClient) -> AppClient:
    # timeouts long enough that a report's ceiling (the online timeout) is not what binds;
    # every report credited at once (deferred crediting: test_engagement_fold.py)
    return await make_client(
        online_timeout_s=30.0,
        heartbeat_interval_s=10.0,
        retention_s=60.0,
        read_after_s=3.0,
        engagement_fold_s=0.0,
    )


async def beat(client: AppClient, auth: Auth, user: str, engaged: Any = None, **body: Any) -> int:
    payload = {"artifactId": "doc-1", "sessionId": SESSION, **body}
    if engaged is not None:
        payload["engagedMs"] = engaged
    response = await client.post("/v1/heartbeat", json=payload, headers=auth(user))
    return response.status


async def view(client: AppClient, auth: Auth, user: str, version: str = "v1") -> None:
    body = {"artifactId": "doc-1", "versionId": version, "sessionId": SESSION}
    response = await client.post("/v1/views", json=body, headers=auth(user))
    assert response.status == 200, await response.text()


async def viewers(client: AppClient, auth: Auth, version: str = "v1") -> dict[str, int]:
    response = await client.get(
        f"/v1/artifacts/doc-1/versions/{version}/viewers", headers=auth("d", scope="dashboard")
    )
    assert response.status == 200, await response.text()
    return {v["userId"]: v["engagedMs"] for v in (await response.json())["viewers"]}


async def stats(client: AppClient, auth: Auth) -> dict[str, Any]:
    response = await client.get("/v1/artifacts/doc-1/stats", headers=auth("d", scope="dashboard"))
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


@pytest.mark.every_redis
async def test_an_inflated_delta_is_clamped_to_the_time_since_the_last_report(
    client: AppClient, auth: Auth
) -> None:
    await view(client, auth, "alice")
    started = time.monotonic()
    assert await beat(client, auth, "alice", versionId="v1") == 200
    assert await beat(client, auth, "alice", 600_000, versionId="v1") == 200
    assert await beat(client, auth, "alice", 600_000, versionId="v1") == 200
    elapsed_ms = (time.monotonic() - started) * 1000
    credited = (await viewers(client, auth))["alice"]
    # two reports, each at most the time since the one before plus the slack
    assert 0 < credited <= elapsed_ms + 2 * SLACK_MS + 50
    assert credited < 600_000


async def test_a_report_above_the_ceiling_is_cut_to_the_online_timeout(
    make_client: MakeClient, auth: Auth
) -> None:
    """The ceiling, not the time clamp: with a 1 s online timeout (the ceiling) a report of
    1.8 s right after the previous one is within the time clamp (elapsed + 2 s slack) but
    above the ceiling, so 1 s is credited."""
    client = await make_client(
        online_timeout_s=1.0,
        heartbeat_interval_s=0.5,
        retention_s=60.0,
        read_after_s=30.0,
        engagement_fold_s=0.0,
    )
    assert SLACK_MS > 1_800  # the time clamp alone would let 1.8 s through
    await view(client, auth, "alice")
    assert await beat(client, auth, "alice", versionId="v1") == 200
    assert await beat(client, auth, "alice", 1_800, versionId="v1") == 200
    assert (await viewers(client, auth))["alice"] == 1_000
    assert await beat(client, auth, "alice", 1_800, versionId="v1") == 200
    assert await beat(client, auth, "alice", 400, versionId="v1") == 200  # under it: all of it
    assert (await viewers(client, auth))["alice"] == 2_400
    assert (await stats(client, auth))["engagedMs"] == 2_400


@pytest.mark.every_redis
async def test_totals_per_version_readers_once_and_the_histogram(
    client: AppClient, auth: Auth
) -> None:
    await view(client, auth, "alice", "v1")
    await view(client, auth, "alice", "v2")
    await view(client, auth, "bob", "v1")
    await beat(client, auth, "alice", versionId="v1")
    for _ in range(7):  # 7 x 1.9 s = 13.3 s: through readers (3 s) and into the 10 s bucket
        assert await beat(client, auth, "alice", 1_900, versionId="v1") == 200
    # the session moves to v2: its reports count there
    assert await beat(client, auth, "alice", 1_000, versionId="v2") == 200
    assert await beat(client, auth, "alice", 500) == 200  # no versionId: the session's (v2)
    assert await viewers(client, auth, "v1") == {"alice": 13_300, "bob": 0}
    assert await viewers(client, auth, "v2") == {"alice": 1_500}
    out = await stats(client, auth)
    assert out["engagedMs"] == 14_800
    by_version = {v["versionId"]: v for v in out["versions"]}
    v1, v2 = by_version["v1"], by_version["v2"]
    assert (v1["engagedMs"], v1["readers"], v1["uniqueViewers"]) == (13_300, 1, 2)
    assert (v2["engagedMs"], v2["readers"]) == (1_500, 0)
    hist = {b["fromS"]: b["viewers"] for b in v1["histogram"]}
    assert hist == {0: 0, 10: 1, 30: 0, 60: 0, 300: 0, 900: 0}
    assert {b["fromS"]: b["viewers"] for b in v2["histogram"]}[0] == 1


async def test_engaged_time_without_a_view_of_the_version_is_dropped(
    client: AppClient, auth: Auth
) -> None:
    await view(client, auth, "alice", "v1")
    await beat(client, auth, "carol", versionId="v1", sessionId="tab-carol1")
    no_view = await beat(client, auth, "carol", 1_000, versionId="v1", sessionId="tab-carol1")
    assert no_view == 200  # carol has no view: dropped
    await beat(client, auth, "alice", versionId="v9")
    assert await beat(client, auth, "alice", 1_000, versionId="v9") == 200  # v9 never viewed
    assert await viewers(client, auth, "v1") == {"alice": 0}
    assert (await stats(client, auth))["engagedMs"] == 0


async def test_the_page_close_beacon_credits_the_sessions_version(
    client: AppClient, auth: Auth, tokens: Any
) -> None:
    await view(client, auth, "alice", "v1")
    await beat(client, auth, "alice", versionId="v1")
    token = tokens.issue("alice")
    beacon = msgspec.json.encode(
        {
            "artifactId": "doc-1",
            "sessionId": SESSION,
            "grace": True,
            "token": token,
            "engagedMs": 1_200,
        }
    )
    response = await client.post("/v1/leave", data=beacon, headers={"Content-Type": "text/plain"})
    assert response.status == 200, await response.text()
    assert await viewers(client, auth) == {"alice": 1_200}


@pytest.mark.parametrize("bad", [-1, 1.5, "10", 86_400_001, True])
@pytest.mark.parametrize("path", ["/v1/heartbeat", "/v1/leave"])
async def test_bad_engaged_ms_is_a_400_naming_it(
    client: AppClient, auth: Auth, path: str, bad: Any
) -> None:
    body = {"artifactId": "doc-1", "sessionId": SESSION, "engagedMs": bad}
    response = await client.post(path, json=body, headers=auth("alice"))
    assert response.status == 400
    problem = await response.json()
    assert [e["field"] for e in problem["errors"]] == ["engagedMs"]


async def test_later_elements_of_a_viewer_entry_are_kept(
    client: AppClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    await view(client, auth, "alice", "v1")
    key = Keyspace(16).version_viewers("doc-1", "v1")
    views, first, last = msgspec.msgpack.decode(sync_redis.hget(key, "alice"))
    # another feature's element 5 (a hidden-viewer flag) beside no engaged time yet
    sync_redis.hset(key, "alice", msgspec.msgpack.encode([views, first, last, None, True]))
    await beat(client, auth, "alice", versionId="v1")
    await beat(client, auth, "alice", 700, versionId="v1")
    assert msgspec.msgpack.decode(sync_redis.hget(key, "alice"))[3:] == [700, True]
    await asyncio.sleep(1.05)  # past the view debounce (1 s in the test settings)
    await view(client, auth, "alice", "v1")
    entry = msgspec.msgpack.decode(sync_redis.hget(key, "alice"))
    assert entry[0] == views + 1
    # the view keeps the engaged time; the flag is the view's to set, from alice's privacy
    # settings (visible: cleared, see tests/stats/test_hidden_views.py)
    assert entry[3:] == [700]


def test_the_engaged_heartbeat_packed_for_the_pipe_is_the_call_a_cluster_sends(
    settings: Any,
) -> None:
    from presence_svc.live.store import PresenceStore
    from presence_svc.redis.connection import connect
    from presence_svc.redis.resp import pack_evalsha
    from presence_svc.stats.engagement import EngagementRules

    store, rules = PresenceStore(connect(settings), settings), EngagementRules(settings)
    for engaged in (None, rules.engagement(1_500)):
        call = store.heartbeat_call("doc-1", SESSION, "alice", "v1", b'{"p":1}', True, engaged)
        assert call.resp() == pack_evalsha(call.script.sha, call.keys, call.args)
    leave = store._scripts.leave_engaged.call_engaged(
        store.keys.artifact("doc-1"), store._times, b"#12345678", "alice", 0, rules.engagement(9)
    )
    assert leave.resp() == pack_evalsha(leave.script.sha, leave.keys, leave.args)
    assert rules.engagement(0) is None  # a plain heartbeat: the plain writer
