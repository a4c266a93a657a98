"""Interval mode of large rooms over real HTTP and a real Redis: the switch into and out of
it (with hysteresis), counts exact at each ``interval`` event, the cap and ``more``, and
resuming. The threshold is set low (10 users) and the interval short so it runs in seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import ConfigError, Settings
from tests.conftest import AppClient, MakeClient
from tests.live.heartbeats import beat
from tests.sse import Event, EventStream

Auth = Callable[..., dict[str, str]]
ROOM = 10
"""PRESENCE_LARGE_ROOM_USERS in these tests: interval mode from 10 users, exact below 8."""


@pytest.fixture
async def streams() -> AsyncIterator[list[EventStream]]:
    opened: list[EventStream] = []
    yield opened
    for stream in opened:
        await stream.close()


LONG_LIVED = {"heartbeat_interval_s": 15.0, "online_timeout_s": 60.0, "retention_s": 120.0}
"""Sessions outlive the test: no timeout mixes with the joins and leaves it makes."""


@pytest.fixture
async def room(make_client: MakeClient) -> AppClient:
    return await make_client(large_room_users=ROOM, large_room_interval_s=0.3, **LONG_LIVED)


async def open_stream(
    client: AppClient, auth: Auth, streams: list[EventStream], **headers: str
) -> EventStream:
    response = await client.get(
        "/v1/artifacts/doc-1/events?limit=500",
        headers={**auth("board", scope="dashboard"), **headers},
    )
    assert response.status == 200, await response.text()
    stream = EventStream(response)
    streams.append(stream)
    return stream


async def leave(client: AppClient, auth: Auth, user: str) -> None:
    response = await client.post(
        "/v1/leave", json={"artifactId": "doc-1", "sessionId": f"tab-{user}"}, headers=auth(user)
    )
    assert response.status == 200, await response.text()


async def join(client: AppClient, auth: Auth, *users: str) -> None:
    await asyncio.gather(*(beat(client, auth, u, f"tab-{u}") for u in users))


def users(n: int, start: int = 0) -> list[str]:
    return [f"user-{i:03d}" for i in range(start, start + n)]


class Model:
    """What a client keeps: the sync's list, patched by each ``interval``."""

    def __init__(self, sync: Event) -> None:
        assert sync.event == "sync"
        self.online: set[str] = {u["userId"] for u in sync.data["users"]}

    def apply(self, event: Event) -> None:
        assert event.event == "interval", event
        self.online |= {u["userId"] for u in event.data["joined"]}
        self.online -= {u["userId"] for u in event.data["left"]}


@pytest.mark.every_redis
async def test_a_room_switches_to_interval_mode_at_the_threshold_and_back_below_80_percent(
    room: AppClient, auth: Auth, streams: list[EventStream]
) -> None:
    stream = await open_stream(room, auth, streams)
    first = await stream.next()
    assert (first.event, first.data["mode"]) == ("sync", "exact")
    await join(room, auth, *users(ROOM - 1))
    for _ in range(ROOM - 1):  # a small room: one join per user, as always
        await stream.next_of("join")

    await join(room, auth, "user-900")  # the 10th user: interval mode
    switched = await stream.next_of("sync")
    assert switched.data["mode"] == "interval"
    assert switched.data["online"] == ROOM
    assert str(switched.id).split("-")[0] != str(first.id).split("-")[0]  # a new epoch
    model = Model(switched)

    await join(room, auth, *users(3, start=100))
    await leave(room, auth, "user-000")
    # Down to 8 users (80%): still interval mode, the border does not flap.
    for user in users(4, start=1):
        await leave(room, auth, user)
    while True:
        event = await stream.next()
        model.apply(event)  # interval events only: no per-user event in interval mode
        if event.data["online"] == 8:
            break
    assert len(model.online) == 8

    await leave(room, auth, "user-005")  # 7 < 8: back to exact
    back = await stream.next_of("sync")
    assert (back.data["mode"], back.data["online"]) == ("exact", 7)
    await leave(room, auth, "user-006")
    gone = await stream.next_of("leave")
    assert gone.data == {"userId": "user-006", "reason": "left"}


async def test_interval_counts_are_exact_at_each_interval_under_churn(
    room: AppClient, auth: Auth, streams: list[EventStream]
) -> None:
    await join(room, auth, *users(20))
    stream = await open_stream(room, auth, streams)
    sync = await stream.next()
    assert (sync.event, sync.data["mode"], sync.data["online"]) == ("sync", "interval", 20)
    model = Model(sync)
    intervals = 0
    for round_ in range(6):  # joins and leaves spread over several intervals
        await join(room, auth, *users(5, start=200 + 5 * round_))
        for user in users(3, start=3 * round_):
            await leave(room, auth, user)
        await asyncio.sleep(0.1)
    listed = await room.get(
        "/v1/artifacts/doc-1/presence?limit=500", headers=auth("board", scope="dashboard")
    )
    everyone = {u["userId"] for u in (await listed.json())["users"]}
    assert len(everyone) == 20 + 6 * 5 - 6 * 3
    while model.online != everyone:  # until the intervals have brought every change
        event = await stream.next()
        model.apply(event)
        intervals += 1
        # what a client built from the sync and the intervals is what the counts say
        assert event.data["online"] == len(model.online), event
        assert event.data["sessions"] == len(model.online)
        assert event.data["more"] is False
    assert intervals >= 2


async def test_an_interval_lists_at_most_100_joined_and_says_more(
    make_client: MakeClient, auth: Auth, streams: list[EventStream]
) -> None:
    client = await make_client(large_room_users=ROOM, large_room_interval_s=3.0, **LONG_LIVED)
    await join(client, auth, *users(ROOM))
    stream = await open_stream(client, auth, streams)
    assert (await stream.next()).data["mode"] == "interval"
    await join(client, auth, "user-099")
    await stream.next_of("interval")  # an interval just began: the burst fits in it
    await join(client, auth, *users(130, start=100))
    event = await stream.next_of("interval")
    assert event.data["online"] == ROOM + 131
    joined = event.data["joined"]
    assert len(joined) == 100
    assert event.data["more"] is True
    assert all(row["userId"].startswith("user-") and row["sessions"] == 1 for row in joined)
    assert event.data["namesJoined"] is True


async def test_joined_rows_carry_names_and_state_like_join_events(
    room: AppClient, auth: Auth, streams: list[EventStream]
) -> None:
    await join(room, auth, *users(ROOM))
    response = await room.put(
        "/v1/users/zoe", json={"name": "Zoe"}, headers=auth("root", scope="admin")
    )
    assert response.status == 200
    stream = await open_stream(room, auth, streams)
    await stream.next_of("sync")
    await beat(room, auth, "zoe", "tab-zoe-1", versionId="v2", state={"page": 4})
    event = await stream.next_of("interval")
    (row,) = event.data["joined"]
    assert (row["userId"], row["name"], row["versionId"]) == ("zoe", "Zoe", "v2")
    assert row["state"] == {"page": 4}


async def test_a_small_room_keeps_exact_events(
    room: AppClient, auth: Auth, streams: list[EventStream]
) -> None:
    stream = await open_stream(room, auth, streams)
    assert (await stream.next()).data["mode"] == "exact"
    await beat(room, auth, "amy000", "tab-amy000")
    await beat(room, auth, "amy000", "tab-amy000", state={"typing": True})
    await leave(room, auth, "amy000")
    kinds = [(await stream.next()).event for _ in range(4)]
    assert kinds[0] == "join"
    assert {"state", "leave"} <= set(kinds)
    await asyncio.sleep(0.7)  # two intervals: no interval event in a small room
    assert all(e.event != "interval" for e in stream.events)


async def test_resume_in_interval_mode_replays_missed_intervals(
    room: AppClient, auth: Auth, streams: list[EventStream]
) -> None:
    await join(room, auth, *users(ROOM))
    stream = await open_stream(room, auth, streams)
    await stream.next_of("sync")
    await join(room, auth, "user-500")
    seen = await stream.next_of("interval")
    # a second listener keeps the artifact streamed (and its ring) while the first is away
    keeper = await open_stream(room, auth, streams)
    await keeper.next_of("sync")
    await stream.close()
    await join(room, auth, "user-501")
    await keeper.wait_until(
        lambda: any(e.event == "interval" and e.data["online"] == ROOM + 2 for e in keeper.events)
    )
    resumed = await open_stream(room, auth, streams, **{"Last-Event-ID": str(seen.id)})
    missed = await resumed.next()
    assert missed.event == "interval"
    assert [u["userId"] for u in missed.data["joined"]] == ["user-501"]
    now = await resumed.next()
    assert (now.event, now.id, now.data["online"]) == ("count", None, ROOM + 2)

    # an id from before a mode switch gets a sync with the new mode
    for user in users(5):
        await leave(room, auth, user)
    await keeper.wait_until(
        lambda: any(e.event == "sync" and e.data["mode"] == "exact" for e in keeper.events)
    )
    again = await open_stream(room, auth, streams, **{"Last-Event-ID": str(seen.id)})
    sync = await again.next()
    assert (sync.event, sync.data["mode"], sync.data["online"]) == ("sync", "exact", ROOM - 3)


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"PRESENCE_LARGE_ROOM_USERS": "1"}, "PRESENCE_LARGE_ROOM_USERS"),
        ({"PRESENCE_LARGE_ROOM_USERS": "lots"}, "PRESENCE_LARGE_ROOM_USERS"),
        ({"PRESENCE_LARGE_ROOM_INTERVAL_S": "0"}, "PRESENCE_LARGE_ROOM_INTERVAL_S"),
        ({"PRESENCE_LARGE_ROOM_INTERVAL_S": "61"}, "PRESENCE_LARGE_ROOM_INTERVAL_S"),
        ({"PRESENCE_LARGE_ROOM_INTERVAL_S": "nan"}, "PRESENCE_LARGE_ROOM_INTERVAL_S"),
    ],
)
def test_bad_large_room_settings_are_rejected_by_name(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env(env)


def test_large_room_settings_are_read() -> None:
    settings = Settings.from_env(
        {"PRESENCE_LARGE_ROOM_USERS": "20", "PRESENCE_LARGE_ROOM_INTERVAL_S": "0.5"}
    )
    assert (settings.large_room_users, settings.large_room_interval_s) == (20, 0.5)


async def test_a_redis_restart_in_interval_mode_resyncs_in_interval_mode(
    make_client: MakeClient, auth: Auth, streams: list[EventStream], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "own-redis")
    url = server.start()
    try:
        client = await make_client(
            redis_url=url, large_room_users=ROOM, large_room_interval_s=0.3, **LONG_LIVED
        )
        await join(client, auth, *users(ROOM + 2))
        stream = await open_stream(client, auth, streams)
        first = await stream.next()
        assert (first.event, first.data["mode"]) == ("sync", "interval")
        server.stop()
        server.start()
        resync = await stream.next_of("sync", within_s=20)
        assert resync.id != first.id
        assert (resync.data["mode"], resync.data["online"]) == ("interval", ROOM + 2)
        await join(client, auth, "user-700")
        after = await stream.next()
        assert after.event == "interval", after
        assert [u["userId"] for u in after.data["joined"]] == ["user-700"]
        assert after.data["online"] == ROOM + 3
    finally:
        server.stop()
