"""The same service on a real three-node Redis Cluster: every script stays on one slot,
batch reads fan out over the nodes, and the ledger drain reads every node's streams."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from presence_svc.database import open_database
from presence_svc.ledger.store import LedgerQuery
from presence_svc.redis.connection import RedisConnection
from presence_svc.redis.embedded import redis_server_binary
from presence_svc.settings import Settings
from tests.children import dies_with_us
from tests.conftest import MakeClient
from tests.ports import free_port

pytestmark = pytest.mark.slow

Auth = Callable[..., dict[str, str]]


def _ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (+10000) is free too, this worker's own."""
    return [free_port(with_bus=True) for _ in range(count)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    base = tmp_path_factory.mktemp("cluster")
    ports = _ports(3)
    processes = []
    for port in ports:
        node = base / str(port)
        node.mkdir()
        processes.append(
            subprocess.Popen(
                [
                    redis_server_binary(),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node / "nodes.conf"),
                    "--dir",
                    str(node),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=dies_with_us(),
            )
        )
    try:
        clients = [redis.Redis(port=p) for p in ports]
        deadline = time.monotonic() + 10
        while True:
            try:
                for c in clients:
                    c.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        share = 16384 // len(ports)
        for i, client in enumerate(clients):
            last = 16383 if i == len(ports) - 1 else (i + 1) * share - 1
            client.execute_command("CLUSTER", "ADDSLOTS", *range(i * share, last + 1))
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        while not all(b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO") for c in clients):
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.05)
        yield ports
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


@pytest.mark.timeout(60)
async def test_presence_views_and_ledger_on_a_cluster(
    cluster: list[int], make_client: MakeClient, auth: Auth, tmp_path: Path
) -> None:
    ledger = tmp_path / "cluster-ledger.sqlite3"
    client = await make_client(
        redis_url=f"redis://127.0.0.1:{cluster[0]}",
        redis_cluster=True,
        partitions=64,
        run_worker=True,
        ledger_url=f"sqlite:///{ledger}",
        # every session stays online through the test (its 120 requests took longer than
        # the tests' 1 s timeout on a loaded machine)
        online_timeout_s=30.0,
        retention_s=60.0,
    )
    artifacts = [f"doc-{i}" for i in range(40)]
    for i, artifact in enumerate(artifacts):
        for tab in range(1 + i % 3):
            response = await client.post(
                "/v1/heartbeat",
                json={"artifactId": artifact, "sessionId": f"tab-{tab}-xxxxx"},
                headers=auth(f"user-{tab}"),
            )
            assert response.status == 200, await response.text()
        response = await client.post(
            "/v1/views", json={"artifactId": artifact, "versionId": "v1"}, headers=auth("alice")
        )
        assert (await response.json())["counted"] is True

    # the artifacts really are spread over all three nodes
    nodes_used = {port for port in cluster if redis.Redis(port=port).execute_command("DBSIZE") > 0}
    assert nodes_used == set(cluster)

    query = "&".join(f"artifactId={a}" for a in artifacts)
    counts = (
        await (await client.get(f"/v1/online?{query}", headers=auth("d", scope="dashboard"))).json()
    )["counts"]
    assert all(
        counts[a] == {"online": 1 + i % 3, "sessions": 1 + i % 3, "active": 1 + i % 3, "away": 0}
        for i, a in enumerate(artifacts)
    )
    page = await (await client.get("/v1/artifacts/doc-2/presence", headers=auth("x"))).json()
    assert sorted(u["userId"] for u in page["users"]) == ["user-0", "user-1", "user-2"]
    # the kept page, checked by its mark and the clock (plain reads, routed by the cluster)
    again = await (await client.get("/v1/artifacts/doc-2/presence", headers=auth("x"))).json()
    assert again == page
    response = await client.post(
        "/v1/heartbeat",
        json={"artifactId": "doc-2", "sessionId": "tab-9-xxxxx"},
        headers=auth("u9"),
    )
    assert response.status == 200
    page = await (await client.get("/v1/artifacts/doc-2/presence", headers=auth("x"))).json()
    assert sorted(u["userId"] for u in page["users"]) == ["u9", "user-0", "user-1", "user-2"]
    response = await client.post(
        "/v1/leave", json={"artifactId": "doc-2", "sessionId": "tab-9-xxxxx"}, headers=auth("u9")
    )
    assert response.status == 200
    page = await (await client.get("/v1/artifacts/doc-2/presence", headers=auth("x"))).json()
    assert sorted(u["userId"] for u in page["users"]) == ["user-0", "user-1", "user-2"]
    stats = await (
        await client.get("/v1/artifacts/doc-5/stats", headers=auth("d", scope="dashboard"))
    ).json()
    assert (stats["views"], stats["uniqueViewers"]) == (1, 1)
    recent = await (
        await client.get("/v1/users/alice/recent?limit=100", headers=auth("alice"))
    ).json()
    assert len(recent["items"]) == 40

    for port in cluster:  # a failover or restart empties the script caches
        redis.Redis(port=port).script_flush()
    assert (await client.get("/readyz")).status == 200
    response = await client.delete("/v1/users/user-2", headers=auth("root", scope="admin"))
    assert response.status == 204
    counts = (
        await (await client.get(f"/v1/online?{query}", headers=auth("d", scope="dashboard"))).json()
    )["counts"]
    assert counts["doc-2"] == {"online": 2, "sessions": 2, "active": 2, "away": 0}

    database = open_database(f"sqlite:///{ledger}")
    await database.open()
    try:
        deadline = time.monotonic() + 15
        while len(rows := await database.ledger.query_views(LedgerQuery(), 100)) < 40:
            assert time.monotonic() < deadline, f"only {len(rows)} views reached the ledger"
            await asyncio.sleep(0.1)
        assert sorted(r.artifact_id for r in rows) == sorted(artifacts)
    finally:
        await database.close()


@pytest.mark.timeout(60)
async def test_event_streams_on_a_cluster(
    cluster: list[int], make_client: MakeClient, auth: Auth
) -> None:
    from tests.sse import EventStream

    client = await make_client(
        redis_url=f"redis://127.0.0.1:{cluster[0]}", redis_cluster=True, partitions=64
    )
    # artifacts whose keys (and so whose scripts' PUBLISH) live on different nodes
    nodes = [redis.Redis(port=p) for p in cluster]
    artifacts = [f"live-{i}" for i in range(12)]
    streams = []
    try:
        for artifact in artifacts:
            response = await client.get(
                f"/v1/artifacts/{artifact}/events", headers=auth("d", scope="dashboard")
            )
            assert response.status == 200
            stream = EventStream(response)
            streams.append(stream)
            assert (await stream.next()).event == "sync"
        for artifact in artifacts:
            response = await client.post(
                "/v1/heartbeat",
                json={"artifactId": artifact, "sessionId": "tab-xxxxxxxx"},
                headers=auth(f"u-{artifact}"),
            )
            assert response.status == 200
        for artifact, stream in zip(artifacts, streams, strict=True):
            assert (await stream.next_of("join")).data["userId"] == f"u-{artifact}"
        assert sum(1 for n in nodes if n.dbsize() > 0) == len(cluster)
    finally:
        for stream in streams:
            await stream.close()


@pytest.mark.timeout(60)
async def test_where_now_and_last_seen_on_a_cluster(
    cluster: list[int], make_client: MakeClient, auth: Auth
) -> None:
    """The user's index on the user's slot, the sessions on the artifacts' slots (on other
    nodes): where-now is right after joins, a leave, a timeout and an erasure."""
    from redis.crc import key_slot

    from presence_svc.ratelimits import RateLimits
    from presence_svc.redis.keys import Keyspace

    client = await make_client(
        redis_url=f"redis://127.0.0.1:{cluster[0]}",
        redis_cluster=True,
        partitions=64,
        run_worker=True,
        rate_limits=RateLimits(buckets=()),  # one user beating on 30 artifacts at once
        online_timeout_s=6.0,  # a round of 30 heartbeats can take seconds on a loaded machine
        retention_s=12.0,
    )
    keys = Keyspace(64)

    def node_of(key: str) -> int:
        return key_slot(key.encode()) * len(cluster) // 16384

    index_slot = key_slot(keys.where_now("alice").encode())
    artifacts = [f"wn-{i}" for i in range(30)]
    assert all(key_slot(keys.artifact(a).sessions.encode()) != index_slot for a in artifacts)
    assert len({node_of(keys.artifact(a).sessions) for a in artifacts}) == len(cluster)

    async def beat_all(artifacts: list[str]) -> None:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/v1/heartbeat",
                    json={"artifactId": artifact, "sessionId": "tab-alice-01"},
                    headers=auth("alice"),
                )
                for artifact in artifacts
            )
        )
        assert [a.status for a in answers] == [200] * len(artifacts)

    await beat_all(artifacts)

    async def where() -> dict[str, Any]:
        response = await client.get("/v1/users/alice/presence", headers=auth("alice"))
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    first = await where()
    assert sorted(o["artifactId"] for o in first["online"]) == sorted(artifacts)
    await asyncio.sleep(0.3)  # past QUIET_MS: the next reads may check the deadlines alone
    assert await where() == first
    assert await where() == first
    response = await client.post(
        "/v1/leave", json={"artifactId": "wn-0", "sessionId": "tab-alice-01"}, headers=auth("alice")
    )
    assert response.status == 200
    # wn-1 times out while every other artifact keeps beating, until where-now shows it
    # (a fixed 3.4 s of beats against a 3 s timeout: a loaded machine's rounds were slower
    # than the timeout, or the sweep had not yet run)
    deadline = time.monotonic() + 60
    while True:
        await beat_all(artifacts[2:])
        body = await where()
        if ("wn-1", "timeout") in [(r["artifactId"], r["reason"]) for r in body["recent"]]:
            break
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.5)
    assert sorted(o["artifactId"] for o in body["online"]) == sorted(artifacts[2:])
    assert sorted((r["artifactId"], r["reason"]) for r in body["recent"]) == [
        ("wn-0", "left"),
        ("wn-1", "timeout"),
    ]
    page = await (
        await client.get(
            "/v1/artifacts/wn-0/presence?include=recent", headers=auth("d", scope="dashboard")
        )
    ).json()
    assert [u["userId"] for u in page["recent"]] == ["alice"]

    response = await client.delete("/v1/users/alice", headers=auth("root", scope="admin"))
    assert response.status == 204
    assert await where() == {"userId": "alice", "online": [], "recent": []}
    page = await (
        await client.get(
            "/v1/artifacts/wn-0/presence?include=recent", headers=auth("d", scope="dashboard")
        )
    ).json()
    assert page["recent"] == []


@pytest.mark.timeout(60)
async def test_latest_versions_seen_and_unseen_on_a_cluster(
    cluster: list[int], make_client: MakeClient, auth: Auth
) -> None:
    """The latest versions live on their artifacts' slots, on every node: one unseen read
    spans them all, and seen/check reads the version's viewers on its node."""
    client = await make_client(
        redis_url=f"redis://127.0.0.1:{cluster[0]}", redis_cluster=True, partitions=64
    )
    publisher = auth("cms", scope="publisher")
    artifacts = [f"news-{i}" for i in range(30)]
    for i, artifact in enumerate(artifacts):
        response = await client.put(
            f"/v1/artifacts/{artifact}/latest", json={"versionId": "v2"}, headers=publisher
        )
        assert response.status == 200, await response.text()
        if i % 3 == 0:
            body = {"artifactId": artifact, "versionId": "v2"}
            assert (await client.post("/v1/views", json=body, headers=auth("bob"))).status == 200
    query = "&".join(f"artifactId={a}" for a in [*artifacts, "never-published"])
    response = await client.get(f"/v1/users/bob/unseen?{query}", headers=auth("bob"))
    assert response.status == 200, await response.text()
    unseen = [a["artifactId"] for a in (await response.json())["artifacts"]]
    assert unseen == [a for i, a in enumerate(artifacts) if i % 3]
    response = await client.post(
        "/v1/artifacts/news-3/seen/check", json={"userIds": ["bob", "eve"]}, headers=publisher
    )
    found = await response.json()
    assert (found["versionId"], found["seen"], found["notSeen"]) == ("v2", ["bob"], ["eve"])
    response = await client.get("/v1/artifacts/news-3/seen", headers=publisher)
    assert [v["userId"] for v in (await response.json())["viewers"]] == ["bob"]


async def test_erasure_on_a_cluster_leaves_the_user_nowhere_and_keeps_counts(
    cluster: list[int], make_client: MakeClient, auth: Auth, tmp_path: Path
) -> None:
    """The user's index and erasure job on the user's slot, their records on the artifacts'
    slots on every node: a full scan of every node finds neither the id nor the state."""
    from presence_svc.ratelimits import RateLimits
    from tests.privacy.scan import redis_findings, sqlite_findings

    ledger = tmp_path / "erase-ledger.sqlite3"
    client = await make_client(
        redis_url=f"redis://127.0.0.1:{cluster[0]}",
        redis_cluster=True,
        partitions=64,
        run_worker=True,
        ledger_url=f"sqlite:///{ledger}",
        rate_limits=RateLimits(buckets=()),
    )
    user, state, dashboard = "carol-cluster-9e2a", "carol-state-61f0", auth("d", scope="dashboard")
    artifacts = [f"er-{i}" for i in range(24)]
    for artifact in artifacts:
        beat = {"artifactId": artifact, "sessionId": "tab-carol-01", "state": {"s": state}}
        assert (await client.post("/v1/heartbeat", json=beat, headers=auth(user))).status == 200
        for who in (user, "dave"):
            view = {"artifactId": artifact, "versionId": "v1"}
            assert (await client.post("/v1/views", json=view, headers=auth(who))).status == 200

    async def counts() -> list[tuple[int, int]]:
        out = []
        for artifact in artifacts:
            response = await client.get(f"/v1/artifacts/{artifact}/stats", headers=dashboard)
            stats = await response.json()
            out.append((stats["views"], stats["uniqueViewers"]))
        return out

    before = await counts()
    assert before == [(2, 2)] * len(artifacts)
    nodes = [redis.Redis(port=port) for port in cluster]
    assert any(redis_findings(node, [user.encode()]) for node in nodes)
    deadline = time.monotonic() + 15
    while len(sqlite_findings(ledger, [user])) < len(artifacts):  # the drain wrote hers
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)

    response = await client.delete(f"/v1/users/{user}", headers=auth("root", scope="admin"))
    assert response.status == 204, await response.text()
    for node in nodes:
        assert redis_findings(node, [user.encode(), state.encode(), b"tab-carol-01"]) == []
    assert sqlite_findings(ledger, [user, "tab-carol-01"]) == []
    assert await counts() == before


@pytest.mark.timeout(60)
async def test_views_on_a_cluster_leave_what_one_call_leaves_on_one_server(
    cluster: list[int], settings: Settings, redis_conn: RedisConnection, sync_redis: redis.Redis
) -> None:
    """A view on a Cluster is two scripts, on the user's slot and the artifact's; on one
    server it is one call (lua/stats/view.lua). The same views leave the same state."""
    from redis.crc import key_slot

    from presence_svc.redis.connection import connect
    from presence_svc.stats.views import ViewStore
    from tests.stats.view_paths import record_all, state

    long_window = settings.replace(view_debounce_s=600.0)  # repeats stay inside it
    single = ViewStore(redis_conn, long_window)
    on_one_server = await record_all(redis_conn, single)
    expected = state(sync_redis, single.keys)

    url = f"redis://127.0.0.1:{cluster[0]}"
    cluster_conn = connect(long_window.replace(redis_url=url, redis_cluster=True))
    sync_cluster = redis.RedisCluster.from_url(url)
    try:
        await cluster_conn.initialize()
        sync_cluster.flushall()  # another test's views of the same ids
        store = ViewStore(cluster_conn, long_window.replace(redis_cluster=True))
        keys = store.keys
        # the user's keys and the artifact's on different slots: one call could not do
        user_slot = key_slot(keys.user_recent("alice").encode())
        assert user_slot != key_slot(keys.artifact_stats("doc-1").encode())
        assert await record_all(cluster_conn, store) == on_one_server
        assert state(sync_cluster, keys) == expected
    finally:
        sync_cluster.flushall()  # nothing left for another test's ledger drain
        sync_cluster.close()
        await cluster_conn.aclose()


async def test_engaged_time_on_a_cluster_is_held_in_the_session_and_credited(
    cluster: list[int], make_client: MakeClient, auth: Auth
) -> None:
    """Engaged heartbeats keep their time in the session's record and a fold writes the
    partition's dirty and folds zsets, which the script builds from the views prefix (the
    call does not carry them): on every node's slots, the time held is credited by the
    leave and by the worker's fold."""
    from presence_svc.http.resources import REDIS, SETTINGS
    from presence_svc.stats.engagement_fold import EngagementFold

    client = await make_client(
        redis_url=f"redis://127.0.0.1:{cluster[0]}",
        redis_cluster=True,
        partitions=64,
        online_timeout_s=30.0,
        heartbeat_interval_s=10.0,
        retention_s=60.0,
        engagement_fold_s=0.3,
    )
    headers, dashboard = auth("alice"), auth("d", scope="dashboard")
    artifacts = [f"eng-{i}" for i in range(12)]
    for artifact in artifacts:
        beat: dict[str, Any] = {
            "artifactId": artifact,
            "versionId": "v1",
            "sessionId": "tab-engage1",
        }
        assert (await client.post("/v1/views", json=beat, headers=headers)).status == 200
        for engaged in (None, 1_000, 1_000):
            body = beat if engaged is None else {**beat, "engagedMs": engaged}
            assert (await client.post("/v1/heartbeat", json=body, headers=headers)).status == 200

    async def engaged() -> list[int]:
        out = []
        for artifact in artifacts:
            url = f"/v1/artifacts/{artifact}/versions/v1/viewers"
            viewers = (await (await client.get(url, headers=dashboard)).json())["viewers"]
            out.append(viewers[0]["engagedMs"])
        return out

    for artifact in artifacts[::2]:  # these leave; the others go quiet, for the worker
        leave = {"artifactId": artifact, "sessionId": "tab-engage1"}
        assert (await client.post("/v1/leave", json=leave, headers=headers)).status == 200
    app = client.server.app
    fold = EngagementFold(app[REDIS], app[SETTINGS])
    deadline = time.monotonic() + 15
    while await engaged() != [2_000] * len(artifacts):
        assert time.monotonic() < deadline, await engaged()
        await fold.fold_once()
        await asyncio.sleep(0.1)


@pytest.mark.timeout(60)
async def test_a_failing_cluster_client_is_a_503_and_the_next_call_answers(
    cluster: list[int], make_client: MakeClient, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py's Cluster client failing mid-call with an error of its own (an
    ``AttributeError`` from its connection code was seen under load) is Redis unusable for
    that call: 503 with ``Retry-After`` for a script call and for a batch read, never a 500;
    the next call, with the client sound again, answers."""
    from presence_svc.http.resources import REDIS

    client = await make_client(
        redis_url=f"redis://127.0.0.1:{cluster[0]}", redis_cluster=True, partitions=64
    )
    cluster_client = client.server.app[REDIS].client
    beat = {"artifactId": "doc-broken", "sessionId": "tab-alice-01"}
    online = "/v1/online?artifactId=doc-broken&artifactId=doc-other"

    for request in (
        lambda: client.post("/v1/heartbeat", json=beat, headers=auth("alice")),
        lambda: client.get(online, headers=auth("alice")),
    ):
        with monkeypatch.context() as patch:  # redis-py's own code fails on its own state
            patch.setattr(cluster_client, "nodes_manager", None)
            response = await request()
            assert response.status == 503, await response.text()
            assert int(response.headers["Retry-After"]) >= 1
            assert response.content_type == "application/problem+json"
        response = await request()
        assert response.status == 200, await response.text()


@pytest.mark.timeout(60)
async def test_the_timeline_of_live_artifacts_on_a_cluster(
    cluster: list[int], make_client: MakeClient, auth: Auth
) -> None:
    """A live artifact's minutes are in its info hash: a read finds them there, and the
    worker's hourly scan of each partition's sweep index (a script that builds the info
    hashes' names from the partition's prefix) finds every such artifact, on every node."""
    from presence_svc.http.resources import REDIS, SETTINGS
    from presence_svc.redis.keys import Keyspace
    from presence_svc.timeline.records import TimelineRecords

    client = await make_client(
        redis_url=f"redis://127.0.0.1:{cluster[0]}",
        redis_cluster=True,
        partitions=64,
        online_timeout_s=30.0,
        retention_s=60.0,
    )
    artifacts = [f"tl-{i}" for i in range(30)]
    for artifact in artifacts:
        body = {"artifactId": artifact, "sessionId": "tab-timeline1"}
        assert (await client.post("/v1/heartbeat", json=body, headers=auth("alice"))).status == 200
    response = await client.get("/v1/artifacts/tl-0/timeline", headers=auth("d", scope="dashboard"))
    assert response.status == 200
    assert (await response.json())["peak"]["online"] == 1

    app = client.server.app
    keys = Keyspace(64)
    records = TimelineRecords(app[REDIS], keys, app[SETTINGS].timeline_ms)
    later = int(time.time()) // 3600 + 2  # as if the current hour had ended
    found: set[str] = set()
    for tag in keys.tags:
        cursor = "0"
        while True:
            cursor, got = await records.live(tag, cursor, later, 100)
            found |= {artifact for artifact, _ in got}
            if cursor == "0":
                break
    assert found >= set(artifacts)  # and the other tests' artifacts: the cluster is shared
