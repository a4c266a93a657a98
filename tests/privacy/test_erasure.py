"""Erasure: the user is gone from every Redis key and every table, counts stay, and the
erasure is observable (204 inline, 202 then complete)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgpack
import redis

from presence_svc.http.resources import DATABASE, PRESENCE, REDIS, SETTINGS, VIEWS
from presence_svc.ledger.drain import LedgerDrain
from presence_svc.ledger.engagement_flush import EngagementFlush
from presence_svc.ledger.store import LedgerQuery
from presence_svc.privacy import jobs
from presence_svc.privacy.erasure import TOMBSTONE_PREFIX
from presence_svc.stats.engagement_fold import EngagementFold
from tests.conftest import AppClient, MakeClient
from tests.privacy.scan import database_findings, redis_findings

Auth = Callable[..., dict[str, str]]

USER = "alice-7f3a"
SECRET_STATE = "cursor-of-alice-9c1d"
SESSION = "tab-alice-5e6f"
NEEDLES = [USER, SECRET_STATE, SESSION]


async def _json(client: AppClient, path: str, headers: dict[str, str]) -> Any:
    response = await client.get(path, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def _counts(client: AppClient, auth: Auth) -> dict[str, Any]:
    dashboard = auth("d", scope="dashboard")
    out = {}
    for artifact in ("doc-1", "doc-2"):
        stats = await _json(client, f"/v1/artifacts/{artifact}/stats", dashboard)
        out[artifact] = (
            stats["views"],
            stats["uniqueViewers"],
            sorted((v["versionId"], v["views"], v["uniqueViewers"]) for v in stats["versions"]),
        )
    return out


async def _engaged(client: AppClient, auth: Auth) -> int:
    stats = await _json(client, "/v1/artifacts/doc-1/stats", auth("d", scope="dashboard"))
    engaged: int = stats["engagedMs"]
    return engaged


async def _alice_everywhere(client: AppClient, auth: Auth) -> LedgerDrain:
    """Alice: a profile, a session with state, views, a recently-here entry; her views
    partly in the ledger and partly still in the stream. Bob views too."""
    app = client.server.app
    admin, alice, bob = auth("root", scope="admin"), auth(USER), auth("bob")
    await client.put(f"/v1/users/{USER}", json={"name": "Alice Liddell"}, headers=admin)
    body = {"artifactId": "doc-1", "sessionId": SESSION, "state": {"c": SECRET_STATE}}
    assert (await client.post("/v1/heartbeat", json=body, headers=alice)).status == 200
    gone = {"artifactId": "doc-3", "sessionId": SESSION + "-x"}
    assert (await client.post("/v1/heartbeat", json=gone, headers=alice)).status == 200
    assert (await client.post("/v1/leave", json=gone, headers=alice)).status in (200, 204)
    drain = LedgerDrain(app[REDIS], app[DATABASE].ledger, app[SETTINGS], consumer="t")
    await drain.join()
    for artifact, version, headers in (
        ("doc-1", "v1", alice),
        ("doc-2", "v1", alice),
        ("doc-1", "v1", bob),
    ):
        session = SESSION if headers is alice else "tab-bob-1234"
        view = {"artifactId": artifact, "versionId": version, "sessionId": session}
        assert (await client.post("/v1/views", json=view, headers=headers)).status == 200
    await drain.drain_once()
    await drain.trim_and_measure()  # alice's entries: flagged deleted inside stream nodes
    for artifact, version, headers in (("doc-2", "v2", alice), ("doc-2", "v2", bob)):
        session = SESSION if headers is alice else "tab-bob-1234"
        view = {"artifactId": artifact, "versionId": version, "sessionId": session}
        assert (await client.post("/v1/views", json=view, headers=headers)).status == 200
    # Engaged time on doc-1 v1: her day totals in Redis, part of them flushed to the
    # database, and more in her session's accumulator, not credited yet (the fold, 0.3 s).
    engaged = {"artifactId": "doc-1", "sessionId": SESSION, "versionId": "v1", "engagedMs": 900}
    flush = EngagementFlush(app[REDIS], app[DATABASE].engagement, app[SETTINGS])
    deadline = time.monotonic() + 10
    while True:  # a report after the fold is due credits what came before
        assert (await client.post("/v1/heartbeat", json=engaged, headers=alice)).status == 200
        if await flush.flush_once() >= 1:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert (await client.post("/v1/heartbeat", json=engaged, headers=alice)).status == 200
    return drain


def _accumulators(sync_redis: redis.Redis) -> int:
    """Engaged-time accumulators held (in the session records, elements 5-8:
    lib/session_record.lua) and due to be folded."""
    held = 0
    for key in sync_redis.scan_iter(match="ps:*:h"):
        for field, raw in sync_redis.hgetall(key).items():
            held += field.startswith(b"#") and len(msgpack.unpackb(raw)) > 4
    return held + sum(sync_redis.zcard(k) for k in sync_redis.scan_iter(match="vw:*:efold"))


async def test_erasure_leaves_the_user_only_as_a_tombstone_and_keeps_every_count(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, ledger_url: str
) -> None:
    client = await make_client(ledger_url=ledger_url, engagement_fold_s=0.3)
    drain = await _alice_everywhere(client, auth)
    before = await _counts(client, auth)
    engaged_before = await _engaged(client, auth)
    assert redis_findings(sync_redis, [n.encode() for n in NEEDLES])  # the scan sees her
    assert await database_findings(ledger_url, [USER, "Alice Liddell"])
    assert _accumulators(sync_redis) >= 2  # her session's time, not credited yet

    response = await client.delete(f"/v1/users/{USER}", headers=auth("root", scope="admin"))
    assert response.status == 204, await response.text()
    await drain.drain_once()  # her last view was still in the stream: under the tombstone
    # Her accumulated time is credited to nobody: the fold finds her session gone.
    fold = EngagementFold(client.server.app[REDIS], client.server.app[SETTINGS])
    deadline = time.monotonic() + 10
    while _accumulators(sync_redis):
        assert await fold.fold_once() == 0
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert await _engaged(client, auth) == engaged_before

    assert redis_findings(sync_redis, [n.encode() for n in NEEDLES]) == []
    assert await database_findings(ledger_url, [USER, SESSION, "Alice Liddell"]) == []
    assert await _counts(client, auth) == before
    ledger = client.server.app[DATABASE].ledger
    rows = await ledger.query_views(LedgerQuery(), 100)
    assert len(rows) == 5
    tombstones = {r.user_id for r in rows if r.user_id.startswith(TOMBSTONE_PREFIX)}
    assert len(tombstones) == 1
    assert all(r.session_id is None for r in rows if r.user_id in tombstones)
    assert sorted(r.user_id for r in rows if r.user_id not in tombstones) == ["bob", "bob"]
    # what she left shows nowhere: viewers, recent, presence, where-now
    viewers = await _json(
        client, "/v1/artifacts/doc-1/versions/v1/viewers", auth("d", scope="dashboard")
    )
    assert [v["userId"] for v in viewers["viewers"]] == ["bob"]
    recent = await _json(client, f"/v1/users/{USER}/recent", auth(USER))
    assert recent["items"] == []
    where = await _json(client, f"/v1/users/{USER}/presence", auth(USER))
    assert (where["online"], where["recent"]) == ([], [])


async def _seed_views(client: AppClient, user: str, versions: int) -> None:
    """Views as ``POST /v1/views`` records them (the user's notes, then the view), sent
    1 000 script calls at a time."""
    views = client.server.app[VIEWS]
    calls = []
    for i in range(versions):
        artifact, version = f"doc-{i % 50}", f"v{i}"
        calls.append(views.note_call(user, artifact, version))
        calls.append(views.record_call(artifact, version, user, None))
    for start in range(0, len(calls), 1000):
        results = await views.redis.run_many(calls[start : start + 1000])
        assert not [r for r in results if isinstance(r, Exception)]


async def _wait_complete(client: AppClient, location: str, admin: dict[str, str]) -> Any:
    deadline = time.monotonic() + 30
    while True:
        status = await _json(client, location, admin)
        if status["status"] == "complete":
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)


async def test_a_large_erasure_answers_202_survives_a_restart_and_completes(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    admin = auth("root", scope="admin")
    versions = (2 * jobs.INLINE_STEPS + 2) * 250  # more than two requests erase themselves
    first = await make_client()  # no worker: nothing finishes it in the background
    await _seed_views(first, USER, versions)
    await _seed_views(first, "bob", 20)
    before = await _counts(first, auth)

    response = await first.delete(f"/v1/users/{USER}", headers=admin)
    assert response.status == 202, await response.text()
    pending = await response.json()
    location = response.headers["Location"]
    assert location == f"/v1/erasures/{pending['erasureId']}"
    assert (pending["status"], pending["completedAt"]) == ("pending", None)
    again = await first.delete(f"/v1/users/{USER}", headers=admin)  # same erasure
    assert (again.status, (await again.json())["erasureId"]) == (202, pending["erasureId"])
    assert (await _json(first, location, admin))["status"] == "pending"
    await first.close()

    # a restart: the worker takes it over (its drain may hold her views a moment: 1 s)
    second = await make_client(run_worker=True, ledger_reclaim_idle_s=1.0)
    done = await _wait_complete(second, location, admin)
    assert done["requestedAt"] == pending["requestedAt"]
    assert done["completedAt"] >= done["requestedAt"]
    assert redis_findings(sync_redis, [USER.encode()]) == []
    assert await _counts(second, auth) == before
    assert (await second.delete(f"/v1/users/{USER}", headers=admin)).status == 204


async def test_erasure_status_answers_bad_and_unknown_ids_and_only_admins(
    client: AppClient, auth: Auth
) -> None:
    admin = auth("root", scope="admin")
    response = await client.get("/v1/erasures/no%20such", headers=admin)
    assert response.status == 400
    assert "erasureId" in await response.text()
    assert (await client.get("/v1/erasures/0.abc", headers=admin)).status == 404
    assert (await client.get("/v1/erasures/0.abc", headers=auth("alice"))).status == 403
    assert (await client.get("/v1/erasures/0.abc")).status == 401


async def test_erasure_rewrites_her_presence_changes_in_the_webhook_outboxes(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, ledger_url: str
) -> None:
    """With webhooks on, the writers append every presence change (her joins and leaves,
    her session's state) to the partitions' outboxes: erasure rewrites them too, keeping
    each change for delivery."""
    client = await make_client(ledger_url=ledger_url, engagement_fold_s=0.3)
    keys = client.server.app[PRESENCE].keys
    outboxes = [keys.outbox(tag) for tag in keys.tags]
    for outbox in outboxes:
        sync_redis.xgroup_create(outbox, "webhooks", id="0", mkstream=True)
    drain = await _alice_everywhere(client, auth)
    entries = sum(sync_redis.xlen(o) for o in outboxes)
    assert entries >= 3  # her two joins and her leave
    seen = _seen_users(sync_redis, outboxes)  # her first views: version.seen
    assert seen.count(USER) == 3
    assert seen.count("bob") == 2
    assert redis_findings(sync_redis, [n.encode() for n in NEEDLES])

    response = await client.delete(f"/v1/users/{USER}", headers=auth("root", scope="admin"))
    assert response.status == 204, await response.text()
    await drain.drain_once()

    assert redis_findings(sync_redis, [n.encode() for n in NEEDLES]) == []
    # her changes are still there to deliver (a leave for the erasure too), under the tombstone
    assert sum(sync_redis.xlen(o) for o in outboxes) >= entries
    seen = _seen_users(sync_redis, outboxes)
    assert USER not in seen
    assert seen.count("bob") == 2
    assert sum(1 for u in seen if u.startswith(TOMBSTONE_PREFIX)) == 3


def _seen_users(sync_redis: redis.Redis, outboxes: list[str]) -> list[str]:
    """The users of the engagement events (field ``e``) in the outboxes."""
    users = []
    for outbox in outboxes:
        for _, fields in sync_redis.xrange(outbox):
            if b"e" in fields:
                users.append(msgpack.unpackb(fields[b"e"])[1])
    return users
