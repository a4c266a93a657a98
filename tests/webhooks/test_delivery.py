"""Deliveries to a real receiver on loopback: the events, signed; in order per artifact
through failures; Retry-After; timeouts; a hanging endpoint that delays no other;
failures and their replay; disabling; rotation; interval mode."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tests.webhooks.receiver import Receiver, receiving, until

PRESENCE = ["artifact.occupied", "artifact.vacated", "presence.join", "presence.leave"]


def _presence_of(receiver: Receiver, artifact: str) -> list[tuple[str, str | None]]:
    return [
        (r.type, r.data.get("userId") or r.data.get("reason"))
        for r in receiver.unique()
        if r.data.get("artifactId") == artifact and r.type != "view.counted"
    ]


async def test_presence_and_view_events_arrive_signed_once_each_with_opaque_ids(
    make_hooks: Any,
) -> None:
    hooks = await make_hooks()
    async with receiving() as receiver:
        made = await hooks.create(receiver.url, [*PRESENCE, "view.counted"])
        receiver.secrets.append(made["secret"])
        await hooks.beat("doc-1", "alice")
        await hooks.beat("doc-1", "bob")
        await hooks.view("doc-1", "v1", "alice")
        await hooks.leave("doc-1", "alice")
        await hooks.leave("doc-1", "bob")
        await until(lambda: len(receiver.unique()) == 7, what="seven events")
        assert _presence_of(receiver, "doc-1") == [
            ("artifact.occupied", None),
            ("presence.join", "alice"),
            ("presence.join", "bob"),
            ("presence.leave", "alice"),
            ("presence.leave", "bob"),
            ("artifact.vacated", "left"),
        ]
        (view,) = receiver.of_type("view.counted")
        assert view.data["userId"] == "alice"
        assert view.data["versionId"] == "v1"
        assert receiver.bad_signatures == 0
        assert len(receiver.ids()) == len(set(receiver.ids()))  # nothing was retried
        metrics = await (await hooks.client.get("/metrics")).text()
        assert 'presence_webhook_deliveries_total{outcome="delivered"}' in metrics
        for got in receiver.got:
            assert set(got.data) <= {
                "artifactId",
                "userId",
                "versionId",
                "status",
                "reason",
                "online",
                "viewId",
            }


async def test_an_endpoint_gets_only_its_types_and_its_artifact_prefix(make_hooks: Any) -> None:
    hooks = await make_hooks()
    async with receiving() as receiver:
        made = await hooks.create(receiver.url, ["artifact.occupied"], artifactPrefix="team-")
        receiver.secrets.append(made["secret"])
        await hooks.beat("doc-9", "alice")
        await hooks.beat("team-1", "alice")
        await until(lambda: len(receiver.unique()) == 1)
        await hooks.beat("team-2", "bob")
        await until(lambda: len(receiver.unique()) == 2)
        assert [(r.type, r.data["artifactId"]) for r in receiver.unique()] == [
            ("artifact.occupied", "team-1"),
            ("artifact.occupied", "team-2"),
        ]


async def test_events_stay_in_order_per_artifact_when_first_attempts_fail(make_hooks: Any) -> None:
    # Only the receiver's 500s fail here: a receiver slowed past the short test timeout by
    # a loaded machine would fail attempts too, and exhaust the three retries.
    hooks = await make_hooks(webhook_timeout_s=5.0)
    async with receiving() as receiver:
        receiver.behave = lambda event_id, body, n: web.Response(status=500) if n == 1 else None
        made = await hooks.create(receiver.url, PRESENCE)
        receiver.secrets.append(made["secret"])
        expected: dict[str, list[tuple[str, str | None]]] = {}
        for artifact in ("doc-a", "doc-b"):
            expected[artifact] = []
            for _ in range(3):
                await hooks.beat(artifact, "alice")
                await hooks.leave(artifact, "alice")
                expected[artifact] += [
                    ("artifact.occupied", None),
                    ("presence.join", "alice"),
                    ("presence.leave", "alice"),
                    ("artifact.vacated", "left"),
                ]
        # Each artifact's 12 events go one after another, each after a failed attempt and
        # its backoff (~3 s in all on an idle machine): a deadline for a loaded one, and
        # what came by then if it passes (twice, under load, far fewer than 24 had).
        try:
            await until(lambda: len(receiver.unique()) == 24, timeout_s=40.0, what="24 events")
        except AssertionError as exc:
            started = receiver.attempts[0][1] if receiver.attempts else 0.0
            came = [(r.type, r.data.get("artifactId")) for r in receiver.unique()]
            tries = [(i[-6:], round(t - started, 2)) for i, t in receiver.attempts]
            raise AssertionError(f"{exc}; delivered {came}; attempts {tries}") from None
        for artifact, events in expected.items():
            assert _presence_of(receiver, artifact) == events
        # Each event failed once and was retried: two attempts per id.
        assert len(receiver.attempts) == 48


async def test_retry_after_is_respected_and_a_timeout_is_retried(make_hooks: Any) -> None:
    hooks = await make_hooks()
    async with receiving() as receiver:

        def behave(event_id: str, body: dict[str, Any], n: int) -> Any:
            if body["type"] == "artifact.occupied" and n == 1:
                return web.Response(status=429, headers={"Retry-After": "1"})
            if body["type"] == "presence.join" and n == 1:
                return "hang"
            return None

        receiver.behave = behave
        made = await hooks.create(receiver.url, ["artifact.occupied", "presence.join"])
        receiver.secrets.append(made["secret"])
        await hooks.beat("doc-r", "alice")
        await until(lambda: len(receiver.unique()) == 2)
        occupied = [
            t
            for i, t in receiver.attempts
            if i == receiver.of_type("artifact.occupied")[0].event_id
        ]
        assert occupied[1] - occupied[0] >= 0.95  # the schedule alone says 0.1 s
        joined = [
            t for i, t in receiver.attempts if i == receiver.of_type("presence.join")[0].event_id
        ]
        assert len(joined) == 2  # the first hung past the 0.5 s timeout


async def test_a_hanging_endpoint_delays_no_other(make_hooks: Any) -> None:
    hooks = await make_hooks(webhook_timeout_s=30.0, webhook_concurrency=4)
    async with receiving() as healthy, receiving() as hanging:
        hanging.behave = lambda event_id, body, n: "hang"
        for receiver in (healthy, hanging):
            receiver.secrets.append((await hooks.create(receiver.url, PRESENCE))["secret"])
        for i in range(10):
            await hooks.beat(f"doc-{i}", "alice")
        await until(
            lambda: len(healthy.unique()) == 20,
            timeout_s=10,
            what=f"the healthy 20 {healthy.ids()} {hanging.attempts}",
        )
        assert len(hanging.got) == 0
        assert len(hanging.attempts) == 4  # PRESENCE_WEBHOOK_CONCURRENCY in flight, no more


async def test_failures_are_listed_and_replayed_and_a_failing_endpoint_is_disabled(
    make_hooks: Any,
) -> None:
    hooks = await make_hooks(webhook_disable_after_s=1.5)
    async with receiving() as receiver:
        broken = True
        receiver.behave = lambda event_id, body, n: web.Response(status=500) if broken else None
        made = await hooks.create(receiver.url, ["artifact.occupied"])
        receiver.secrets.append(made["secret"])
        path = f"/v1/webhooks/{made['webhookId']}"
        await hooks.beat("doc-f", "alice")

        async def failures() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = (await hooks.call("GET", f"{path}/failures"))["items"]
            return items

        found: list[dict[str, Any]] = []
        while not found:
            found = await failures()
        (failure,) = found
        assert failure["attempts"] == 4  # the first try and three retries
        assert failure["lastError"].startswith("HTTP 500")
        assert failure["event"]["type"] == "artifact.occupied"
        assert failure["event"]["data"] == {"artifactId": "doc-f", "online": 1}
        health = (await hooks.call("GET", path))["health"]
        assert health["status"] == "failing"
        assert health["failures"] == 1

        # Still failing past PRESENCE_WEBHOOK_DISABLE_AFTER_S: disabled.
        await hooks.beat("doc-g", "alice")
        endpoint: dict[str, Any] = {}

        async def disabled() -> bool:
            nonlocal endpoint
            endpoint = await hooks.call("GET", path)
            return not endpoint["enabled"]

        beats = 0
        while not await disabled():
            beats += 1
            await hooks.beat(f"doc-g{beats}", "bob")
            await asyncio.sleep(0.2)
        assert endpoint["disabledReason"] == "failing"
        assert endpoint["health"]["status"] == "disabled"

        broken = False
        await hooks.call("PATCH", path, json={"enabled": True})
        replayed = await hooks.call(
            "POST", f"{path}/replay", json={"failureId": failure["failureId"]}
        )
        assert replayed == {"replayed": 1}
        await until(lambda: failure["eventId"] in receiver.ids(), what="the replayed event")
        assert (await hooks.call("POST", f"{path}/replay", json={}))["replayed"] >= 0
        await until(lambda: {"doc-f", "doc-g"} <= {r.data["artifactId"] for r in receiver.got})


async def test_both_secrets_sign_during_a_rotation_and_only_the_new_after(
    make_hooks: Any,
) -> None:
    hooks = await make_hooks()
    async with receiving() as receiver:
        made = await hooks.create(receiver.url, ["artifact.occupied"])
        old = made["secret"]
        path = f"/v1/webhooks/{made['webhookId']}"
        rotated = await hooks.call("PATCH", path, json={"rotateSecret": True, "secretOverlapS": 60})
        receiver.secrets[:] = [old]  # a receiver not yet updated still verifies
        await hooks.beat("doc-s1", "alice")
        await until(lambda: len(receiver.got) == 1)
        assert len(receiver.got[0].signatures) == 2
        receiver.secrets[:] = [rotated["secret"]]  # nor does one already updated fail
        await hooks.beat("doc-s2", "alice")
        await until(lambda: len(receiver.got) == 2)

        # A rotation without overlap: the old secret (now the rotated one) signs no more.
        newest = await hooks.call("PATCH", path, json={"rotateSecret": True, "secretOverlapS": 0})
        await hooks.beat("doc-s3", "alice")
        await until(lambda: receiver.bad_signatures >= 1, what="a refused delivery")
        receiver.secrets[:] = [newest["secret"]]
        await until(lambda: len(receiver.got) == 3)
        assert len(receiver.got[2].signatures) == 1


async def test_the_test_event_reports_how_the_receiver_answered(make_hooks: Any) -> None:
    hooks = await make_hooks()
    async with receiving() as receiver:
        made = await hooks.create(receiver.url, ["artifact.occupied"])
        receiver.secrets.append(made["secret"])
        answer = await hooks.call("POST", f"/v1/webhooks/{made['webhookId']}/test")
        assert answer["delivered"] is True
        assert answer["status"] == 204
        assert receiver.ids() == [answer["eventId"]]
        assert receiver.got[0].type == "webhook.test"
        receiver.behave = lambda event_id, body, n: web.Response(status=503, text="down")
        answer = await hooks.call("POST", f"/v1/webhooks/{made['webhookId']}/test")
        assert answer["delivered"] is False
        assert answer["status"] == 503
        assert "down" in answer["error"]


async def test_a_large_room_sends_its_joins_as_interval_events(make_hooks: Any) -> None:
    hooks = await make_hooks(
        large_room_users=3,
        large_room_interval_s=0.3,
    )
    async with receiving() as receiver:
        made = await hooks.create(receiver.url, ["presence.join"])
        receiver.secrets.append(made["secret"])
        for user in ("u1", "u2", "u3", "u4"):
            await hooks.beat("room", user)

        def joined_in_intervals() -> list[str]:
            intervals = receiver.of_type("presence.interval")
            return [j["userId"] for r in intervals for j in r.data["joined"]]

        await until(lambda: joined_in_intervals() == ["u3", "u4"], what="u3 and u4 in intervals")
        assert [r.data["userId"] for r in receiver.of_type("presence.join")] == ["u1", "u2"]
        last = receiver.of_type("presence.interval")[-1]
        assert last.data["online"] == 4
        assert last.data["left"] == []


async def test_a_view_of_a_user_who_hid_their_view_history_goes_out_without_them(
    make_hooks: Any,
) -> None:
    hooks = await make_hooks()
    response = await hooks.client.put(
        "/v1/users/carol/privacy", json={"viewHistory": "hidden"}, headers=hooks.auth("carol")
    )
    assert response.status == 200
    async with receiving() as receiver:
        made = await hooks.create(receiver.url, ["view.counted"])
        receiver.secrets.append(made["secret"])
        await hooks.view("doc-1", "v1", "carol")
        await hooks.view("doc-1", "v1", "bob")
        await until(lambda: len(receiver.unique()) == 2, what="two views")
        assert sorted((r.data["userId"] or "", r.data["versionId"]) for r in receiver.unique()) == [
            ("", "v1"),
            ("bob", "v1"),
        ]


async def test_occupied_and_vacated_follow_the_counts_with_invisible_users(
    make_hooks: Any,
) -> None:
    """An invisible user counts: their arrival occupies the room and their departure
    vacates it, though neither is announced as a join or a leave."""
    hooks = await make_hooks()
    response = await hooks.client.put(
        "/v1/users/carol/privacy", json={"presence": "hidden"}, headers=hooks.auth("carol")
    )
    assert response.status == 200
    async with receiving() as receiver:
        made = await hooks.create(receiver.url, PRESENCE)
        receiver.secrets.append(made["secret"])
        await hooks.beat("doc-h", "carol")  # hidden: occupied, no join
        await hooks.beat("doc-h", "bob")  # a join, the room was occupied already
        await hooks.leave("doc-h", "bob")
        await hooks.leave("doc-h", "carol")  # the last one: vacated, no leave
        await until(lambda: len(receiver.unique()) == 4, what="four events")
        assert _presence_of(receiver, "doc-h") == [
            ("artifact.occupied", None),
            ("presence.join", "bob"),
            ("presence.leave", "bob"),
            ("artifact.vacated", "left"),
        ]
