"""The per-minute peaks the presence writers keep (lua/lib/timeline.lua), on each Redis
version: the scripted-crowd tests beside this one need a Redis whose clock libfaketime
moves, which Debian's Redis 7 (jemalloc calling clock_gettime as it starts) cannot run
under, so this one reads the minutes of now from the suite's own servers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import AppClient

Auth = Callable[..., dict[str, str]]
DOC = "doc-versions"


@pytest.mark.every_redis
async def test_the_writers_keep_each_minutes_peak_on_each_redis(
    client: AppClient, auth: Auth
) -> None:
    for user, tab in (("alice", "a1"), ("alice", "a2"), ("bob", "b1")):
        body = {"artifactId": DOC, "sessionId": f"tab-{tab}-0123456789"}
        assert (await client.post("/v1/heartbeat", json=body, headers=auth(user))).status == 200
    gone = {"artifactId": DOC, "sessionId": "tab-b1-0123456789"}
    assert (await client.post("/v1/leave", json=gone, headers=auth("bob"))).status == 200
    response = await client.get(
        f"/v1/artifacts/{DOC}/timeline", params={"step": "1m"}, headers=auth("d", scope="dashboard")
    )
    assert response.status == 200
    timeline = await response.json()
    points = [(p["online"], p["sessions"]) for p in timeline["points"]]
    assert len(points) in (60, 61)  # the last hour by default
    assert timeline["peak"]["online"] == 2
    assert max(sessions for _, sessions in points) == 3
    assert points[:-2] == [(0, 0)] * (len(points) - 2)  # nothing before the crowd came
    assert points[-1] in ((2, 3), (1, 2))  # the peak, or (a minute later) what the leave left
