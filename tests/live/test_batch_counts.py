"""Batch online counts from the counts the writers keep (lua/lib/counts.lua): exact at any
moment, whether the kept record still holds or a timeout has not been settled yet."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import redis

from presence_svc.http.resources import PRESENCE
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from tests.conftest import AppClient, MakeClient
from tests.live.heartbeats import beat

pytestmark = pytest.mark.every_redis  # see tests/conftest.py

Auth = Callable[..., dict[str, str]]
ZERO = {"online": 0, "sessions": 0, "active": 0, "away": 0}


async def batch(client: AppClient, auth: Auth, ids: list[str]) -> dict[str, Any]:
    """The batch answer in JSON, checked against the same batch in msgpack and against
    each artifact's own online count: all three agree."""
    query = "&".join(f"artifactId={a}" for a in ids)
    headers = auth("board", scope="dashboard")
    response = await client.get(f"/v1/online?{query}", headers=headers)
    assert response.status == 200
    assert response.content_type == "application/json"
    counts: dict[str, Any] = (await response.json())["counts"]
    packed = await client.get(
        f"/v1/online?{query}", headers={**headers, "Accept": "application/msgpack"}
    )
    assert msgspec.msgpack.decode(await packed.read())["counts"] == counts
    for artifact in dict.fromkeys(ids):
        one = await (await client.get(f"/v1/artifacts/{artifact}/online", headers=headers)).json()
        assert {k: one[k] for k in ZERO} == counts[artifact], artifact
    return counts


def record(sync_redis: redis.Redis, settings: Settings, artifact: str) -> bytes | None:
    """The counts record the writers keep for ``artifact`` (None: none)."""
    keys = Keyspace(settings.partitions)
    value = sync_redis.hget(keys.counts(keys.tag_of(artifact)), artifact)
    assert value is None or isinstance(value, bytes)
    return value


async def test_a_timeout_nobody_settled_is_out_of_the_batch_at_once(
    make_client: MakeClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    # A 3 s timeout (not the tests' 1 s), so that on a loaded machine bob's refresh still
    # comes before alice's timeout and the read before his own.
    timeout_s = 3.0
    client = await make_client(online_timeout_s=timeout_s)
    loop = asyncio.get_running_loop()
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    await beat(client, auth, "bob", "tab-bbbb1", "doc-1")
    await beat(client, auth, "bob", "tab-bbbb2", "doc-2")
    last_beat = loop.time()
    counts = await batch(client, auth, ["doc-1", "doc-2"])
    assert counts["doc-1"] == {"online": 2, "sessions": 2, "active": 2, "away": 0}
    await asyncio.sleep(timeout_s / 2)
    await beat(client, auth, "bob", "tab-bbbb1", "doc-1")  # a refresh: the fast path
    # alice (and bob's doc-2 tab) silent for longer than the timeout; no sweeper runs
    await asyncio.sleep(last_beat + timeout_s + 0.1 - loop.time())
    # the record still says what the last writer saw; the read knows better
    assert b'"online":2' in (record(sync_redis, settings, "doc-1") or b"")
    counts = await batch(client, auth, ["doc-1", "doc-2", "doc-1"])
    assert counts == {
        "doc-1": {"online": 1, "sessions": 1, "active": 1, "away": 0},
        "doc-2": ZERO,
    }


async def test_the_batch_follows_every_change_of_the_counts(client: AppClient, auth: Auth) -> None:
    ids = ["doc-1", "doc-2", "doc:3", "never-seen"]
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    await beat(client, auth, "alice", "tab-aaaa2", "doc-1")  # a second tab
    await beat(client, auth, "bob", "tab-bbbb1", "doc-1", status="away")
    await beat(client, auth, "carol", "tab-cccc1", "doc:3")
    counts = await batch(client, auth, ids)
    assert counts["doc-1"] == {"online": 2, "sessions": 3, "active": 1, "away": 1}
    assert counts["doc:3"] == {"online": 1, "sessions": 1, "active": 1, "away": 0}
    assert counts["doc-2"] == counts["never-seen"] == ZERO

    await beat(client, auth, "bob", "tab-bbbb1", "doc-1")  # active again
    assert (await batch(client, auth, ids))["doc-1"]["away"] == 0
    response = await client.post(
        "/v1/leave", json={"artifactId": "doc-1", "sessionId": "tab-aaaa2"}, headers=auth("alice")
    )
    assert response.status == 200
    response = await client.post(
        "/v1/leave", json={"artifactId": "doc:3", "sessionId": "tab-cccc1"}, headers=auth("carol")
    )
    assert response.status == 200
    counts = await batch(client, auth, ids)
    assert counts["doc-1"] == {"online": 2, "sessions": 2, "active": 2, "away": 0}
    assert counts["doc:3"] == ZERO


async def test_a_session_back_from_away_times_out_on_its_active_deadline(
    client: AppClient, auth: Auth
) -> None:
    """Away sessions stay online far longer; a session turning active again brings its
    deadline forward, and the batch must not go on counting it past that."""
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1", status="away")
    await beat(client, auth, "bob", "tab-bbbb1", "doc-1", status="away")
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    await asyncio.sleep(1.3)  # past alice's active timeout, within bob's away one
    counts = await batch(client, auth, ["doc-1"])
    assert counts["doc-1"] == {"online": 1, "sessions": 1, "active": 0, "away": 1}


async def test_records_go_with_the_artifact_and_a_batch_does_without_them(
    client: AppClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    await beat(client, auth, "alice", "tab-aaaa1", "doc-1")
    await beat(client, auth, "bob", "tab-bbbb1", "doc-2")
    assert record(sync_redis, settings, "doc-1") is not None
    response = await client.post(
        "/v1/leave", json={"artifactId": "doc-1", "sessionId": "tab-aaaa1"}, headers=auth("alice")
    )
    assert (await response.json())["online"] == 0
    assert record(sync_redis, settings, "doc-1") is None  # its keys went, so did the record
    # a leave of nothing on an artifact nobody is on writes no record (and no keys)
    response = await client.post(
        "/v1/leave", json={"artifactId": "doc-9", "sessionId": "tab-zzzz1"}, headers=auth("zed")
    )
    assert response.status == 200
    assert record(sync_redis, settings, "doc-9") is None
    # sessions written before the records existed (or records lost): counted from the keys
    keys = Keyspace(settings.partitions)
    sync_redis.delete(*{keys.counts(tag) for tag in keys.tags})
    counts = await batch(client, auth, ["doc-1", "doc-2", "doc-9"])
    assert counts == {
        "doc-1": ZERO,
        "doc-2": {"online": 1, "sessions": 1, "active": 1, "away": 0},
        "doc-9": ZERO,
    }


async def test_a_record_past_its_until_is_not_believed_among_records_that_hold(
    client: AppClient, auth: Auth, sync_redis: redis.Redis, settings: Settings
) -> None:
    """A batch over many partitions reads the kept records as they are; one whose until
    passed (here: written so by hand, saying 9 users) is worked out from the artifact's
    keys instead, and every artifact is in the answer once."""
    ids = [f"doc-{i}" for i in range(24)]
    for i, artifact in enumerate(ids):
        await beat(client, auth, f"user-{i}", f"tab-{i:05d}", artifact)
    keys = Keyspace(settings.partitions)
    stale = b'1000000000000{"online":9,"sessions":9,"active":9,"away":0}'
    sync_redis.hset(keys.counts(keys.tag_of("doc-3")), "doc-3", stale)
    counts = await batch(client, auth, [*ids, "doc-3", "never-seen"])
    one = {"online": 1, "sessions": 1, "active": 1, "away": 0}
    assert counts == {**{a: one for a in ids}, "never-seen": ZERO}
    assert len({keys.tag_of(a) for a in ids}) > 2  # several partitions, read both ways


async def test_a_batch_asked_again_answers_its_last_members_until_a_record_changes(
    client: AppClient, auth: Auth
) -> None:
    """A dashboard polling the same list: the members a partition's records made are kept
    with them, answered again while the records read are the same, and made again from
    the records at once when one of them changed."""
    ids = [f"doc-{n}" for n in range(40)]
    for n, artifact in enumerate(ids):
        await beat(client, auth, f"user-{n}", f"tab-{n:05d}", artifact)
    first = await batch(client, auth, ids)
    assert all(first[a] == {"online": 1, "sessions": 1, "active": 1, "away": 0} for a in ids)
    (plan,) = client.app[PRESENCE]._plans.values()
    kept = list(plan.answered)
    assert all(kept), "every partition's records held: each answered from them"
    assert await batch(client, auth, ids) == first
    assert all(a is b for a, b in zip(plan.answered, kept, strict=True))  # answered again

    await beat(client, auth, "user-0", "tab-00000", "doc-0", status="away")
    await beat(client, auth, "newcomer", "tab-99999", "doc-7")
    counts = await batch(client, auth, ids)
    assert counts["doc-0"] == {"online": 1, "sessions": 1, "active": 0, "away": 1}
    assert counts["doc-7"] == {"online": 2, "sessions": 2, "active": 2, "away": 0}
    assert {a: counts[a] for a in ids if a not in ("doc-0", "doc-7")} == {
        a: first[a] for a in ids if a not in ("doc-0", "doc-7")
    }
    changed = [n for n, (a, b) in enumerate(zip(plan.answered, kept, strict=True)) if a is not b]
    assert 1 <= len(changed) <= 2  # the partitions of doc-0 and doc-7 only
