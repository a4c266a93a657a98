"""``version.seen`` and ``version.read`` to a real receiver on loopback: appended by the
script that makes the change (record_view.lua, lib/engage.lua), so each goes out once, a
hidden viewer without their id, and nothing at all when no endpoint subscribes."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
import redis

from presence_svc.http.resources import PRESENCE
from presence_svc.webhooks.events import engagement_event
from tests.webhooks.receiver import Receiver, receiving, until

ENGAGEMENT = ["version.seen", "version.read"]


async def _counted_view(hooks: Any, artifact: str, version: str, user: str) -> None:
    """A view that is counted (the debounce window in these tests is 50 ms)."""
    body = {"artifactId": artifact, "versionId": version}
    for _ in range(200):
        response = await hooks.client.post("/v1/views", json=body, headers=hooks.auth(user))
        assert response.status == 200, await response.text()
        if (await response.json())["counted"]:
            return
        await asyncio.sleep(0.03)
    raise AssertionError("the view was never counted")


async def _engaged(hooks: Any, user: str, engaged_ms: int | None, version: str = "v1") -> None:
    body: dict[str, Any] = {"artifactId": "doc-1", "sessionId": f"tab-{user}-0001"}
    body["versionId"] = version
    if engaged_ms is not None:
        body["engagedMs"] = engaged_ms
    response = await hooks.client.post("/v1/heartbeat", json=body, headers=hooks.auth(user))
    assert response.status == 200, await response.text()


async def _hide_views(hooks: Any, user: str) -> None:
    response = await hooks.client.put(
        f"/v1/users/{user}/privacy", json={"viewHistory": "hidden"}, headers=hooks.auth(user)
    )
    assert response.status == 200, await response.text()


def _mine(receiver: Receiver, kind: str) -> list[tuple[Any, ...]]:
    return [
        (r.data["artifactId"], r.data["versionId"], r.data["userId"], r.data["latest"])
        for r in receiver.of_type(kind)
    ]


async def test_a_first_view_sends_version_seen_once_with_whether_it_is_the_latest(
    make_hooks: Any,
) -> None:
    hooks = await make_hooks(view_debounce_s=0.05)
    async with receiving() as receiver:
        made = await hooks.create(receiver.url, [*ENGAGEMENT, "view.counted"])
        receiver.secrets.append(made["secret"])
        await hooks.call("PUT", "/v1/artifacts/doc-1/latest", json={"versionId": "v2"})
        await _counted_view(hooks, "doc-1", "v1", "alice")
        await _counted_view(hooks, "doc-1", "v1", "alice")  # counted again: not seen again
        await _counted_view(hooks, "doc-1", "v2", "alice")  # another version: seen
        await _counted_view(hooks, "doc-1", "v2", "bob")
        await until(lambda: len(receiver.of_type("view.counted")) == 4, what="four views")
        await until(lambda: len(receiver.of_type("version.seen")) == 3, what="three seen")
        await asyncio.sleep(0.3)  # a second seen of alice's v1 would have come with its view
        assert _mine(receiver, "version.seen") == [
            ("doc-1", "v1", "alice", False),
            ("doc-1", "v2", "alice", True),
            ("doc-1", "v2", "bob", True),
        ]
        for got in receiver.of_type("version.seen"):
            assert set(got.data) == {"artifactId", "versionId", "userId", "latest"}
        assert receiver.bad_signatures == 0


@pytest.mark.every_redis
async def test_crossing_read_after_sends_version_read_once_with_the_engaged_time(
    make_hooks: Any,
) -> None:
    hooks = await make_hooks(read_after_s=1.0, heartbeat_interval_s=10.0, engagement_fold_s=0.0)
    async with receiving() as receiver:
        made = await hooks.create(receiver.url, ["version.read"])
        receiver.secrets.append(made["secret"])
        await hooks.call("PUT", "/v1/artifacts/doc-1/latest", json={"versionId": "v1"})
        await _counted_view(hooks, "doc-1", "v1", "alice")
        await _engaged(hooks, "alice", None)
        await _engaged(hooks, "alice", 600)  # 600 ms: not read yet
        await _engaged(hooks, "alice", 600)  # 1 200 ms: read
        await _engaged(hooks, "alice", 600)  # already read: nothing more
        await until(lambda: len(receiver.of_type("version.read")) == 1, what="one read")
        await asyncio.sleep(0.3)
        (read,) = receiver.of_type("version.read")
        assert read.data == {
            "artifactId": "doc-1",
            "versionId": "v1",
            "userId": "alice",
            "latest": True,
            "engagedMs": 1200,
        }
        assert receiver.of_type("version.seen") == []  # not subscribed
        stats = await hooks.call("GET", "/v1/artifacts/doc-1/stats")
        (v1,) = stats["versions"]
        assert v1["readers"] == 1  # the moment `readers` counted her


async def test_a_viewer_with_hidden_view_history_goes_out_with_user_id_null(
    make_hooks: Any,
) -> None:
    hooks = await make_hooks(read_after_s=1.0, heartbeat_interval_s=10.0, engagement_fold_s=0.0)
    await _hide_views(hooks, "carol")
    async with receiving() as receiver:
        made = await hooks.create(receiver.url, ENGAGEMENT)
        receiver.secrets.append(made["secret"])
        await _counted_view(hooks, "doc-1", "v1", "carol")
        await _engaged(hooks, "carol", None)
        await _engaged(hooks, "carol", 1500)
        await until(lambda: len(receiver.unique()) == 2, what="seen and read")
        assert [(r.type, r.data["userId"]) for r in receiver.unique()] == [
            ("version.seen", None),
            ("version.read", None),
        ]
        assert not any("carol" in str(r.data) for r in receiver.got)


async def test_nothing_is_written_or_sent_when_no_endpoint_subscribes(
    make_hooks: Any, sync_redis: redis.Redis
) -> None:
    hooks = await make_hooks(read_after_s=1.0, heartbeat_interval_s=10.0, engagement_fold_s=0.0)
    keys = hooks.client.server.app[PRESENCE].keys
    outboxes = [keys.outbox(tag) for tag in keys.tags]
    async with receiving() as views, receiving() as presence:
        # An endpoint for views only: no outbox exists, so neither event is even written.
        made = await hooks.create(views.url, ["view.counted"])
        views.secrets.append(made["secret"])
        await _counted_view(hooks, "doc-1", "v1", "alice")
        await _engaged(hooks, "alice", None)
        await _engaged(hooks, "alice", 1500)  # crosses read-after
        await until(lambda: len(views.unique()) == 1, what="the view")
        assert sync_redis.exists(*outboxes) == 0

        # One for presence only: the outbox exists and both are written, sent to nobody.
        other = await hooks.create(presence.url, ["artifact.occupied", "artifact.vacated"])
        presence.secrets.append(other["secret"])
        await _counted_view(hooks, "doc-2", "v1", "bob")
        body = {"artifactId": "doc-2", "sessionId": "tab-bob-0001", "versionId": "v1"}
        for engaged in (None, 1500):
            beat = body if engaged is None else {**body, "engagedMs": engaged}
            response = await hooks.client.post(
                "/v1/heartbeat", json=beat, headers=hooks.auth("bob")
            )
            assert response.status == 200
        stats = await hooks.call("GET", "/v1/artifacts/doc-2/stats")
        assert stats["versions"][0]["readers"] == 1  # bob crossed read-after
        await hooks.leave("doc-2", "bob", "tab-bob-0001")
        # vacated comes after the seen and the read in the outbox: they were handled
        await until(lambda: len(presence.unique()) == 2, what="occupied and vacated")
        assert [r.type for r in presence.unique()] == ["artifact.occupied", "artifact.vacated"]
        await until(lambda: len(views.unique()) == 2, what="bob's view")
        assert {r.type for r in views.unique()} == {"view.counted"}


@pytest.mark.parametrize(
    "items",
    [
        ["unseen", "alice", "doc-1", "v1", 1, 0, 0],  # an unknown kind
        ["seen", "alice", "doc-1"],  # too short
        ["read", "alice", "doc-1", "v1", "soon", 0, 0],  # not a time
    ],
)
def test_a_malformed_engagement_entry_is_refused_not_guessed(items: list[Any]) -> None:
    with pytest.raises(ValueError, match="not an engagement entry"):
        engagement_event(("ps:{0}:ob", b"1-0"), msgpack.packb(items))
    with pytest.raises(ValueError, match="not an engagement entry"):
        engagement_event(("ps:{0}:ob", b"1-0"), b"\xc1")


def test_an_engagement_entry_becomes_its_event_with_a_stable_id() -> None:
    packed = msgpack.packb(["read", "", "doc-1", "v2", 1_764_473_771_420, 1, 31_000])
    event = engagement_event(("ps:{a1}:ob", b"1764473771420-0"), packed)
    again = engagement_event(("ps:{a1}:ob", b"1764473771420-0"), packed)
    assert event.event_id == again.event_id == "ev_a1_1764473771420-0_0"
    assert (event.event_type, event.at_ms) == ("version.read", 1_764_473_771_420)
    assert event.data == {
        "artifactId": "doc-1",
        "versionId": "v2",
        "userId": None,
        "latest": True,
        "engagedMs": 31_000,
    }
