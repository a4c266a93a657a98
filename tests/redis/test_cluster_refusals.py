"""A Redis Cluster saying "not now", through real HTTP: the whole cluster down
(``CLUSTERDOWN``: a slot no node serves) and a slot being moved (``TRYAGAIN``: a script's
keys half on each node) are 503s with Retry-After naming the cause, counted by cause."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis

from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings
from tests.conftest import AppClient, MakeClient
from tests.redis import test_cluster
from tests.redis.test_redis_refusals import _ready_says, _refusals_counted, _refused

pytestmark = pytest.mark.slow

Auth = Callable[..., dict[str, str]]
BEAT = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}

cluster = test_cluster.cluster  # three nodes of this module's own (a module fixture)


def _nodes(ports: list[int]) -> list[redis.Redis]:
    return [redis.Redis(port=port) for port in ports]


def _until(check: Callable[[], bool], what: str, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _state(node: redis.Redis) -> str:
    info = node.execute_command("CLUSTER", "INFO").decode()
    return next(line for line in info.split() if line.startswith("cluster_state:"))


async def _serving(client: AppClient, auth: Auth) -> None:
    deadline = time.monotonic() + 30
    while (await client.post("/v1/heartbeat", json=BEAT, headers=auth("a"))).status != 200:
        assert time.monotonic() < deadline, "the service did not serve again"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(60)
async def test_a_cluster_down_is_a_503_naming_clusterdown(
    cluster: list[int], make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(redis_url=f"redis://127.0.0.1:{cluster[0]}", redis_cluster=True)
    assert (await client.post("/v1/heartbeat", json=BEAT, headers=auth("a"))).status == 200
    counted = await _refusals_counted(client, "CLUSTERDOWN")
    nodes = _nodes(cluster)
    owner = nodes[0]  # slot 0 is the first node's (the fixture's ADDSLOTS)
    for node in nodes:  # no node serves slot 0: with full coverage required, none serves
        node.execute_command("CLUSTER", "DELSLOTS", 0)
    try:
        _until(lambda: all(_state(n) == "cluster_state:fail" for n in nodes), "still up")
        response = await client.post("/v1/heartbeat", json=BEAT, headers=auth("a"))
        body = await _refused(response, "CLUSTERDOWN")
        assert "cluster is down" in body["detail"].lower()
        assert response.headers["Retry-After"] == "2"
        await _ready_says(client, "unavailable: CLUSTERDOWN")
        assert await _refusals_counted(client, "CLUSTERDOWN") == counted + 1
    finally:
        owner.execute_command("CLUSTER", "ADDSLOTS", 0)
        _until(lambda: all(_state(n) == "cluster_state:ok" for n in nodes), "not up again")
    await _serving(client, auth)
    await _ready_says(client, "ok")


def _slot_of(ports: list[int], key: str) -> tuple[int, redis.Redis, redis.Redis]:
    """The slot of ``key``, the node serving it and another node."""
    nodes = dict(zip(ports, _nodes(ports), strict=True))
    first = nodes[ports[0]]
    slot = int(first.execute_command("CLUSTER", "KEYSLOT", key))
    for low, high, (_, port, *_) in (r[:3] for r in first.execute_command("CLUSTER", "SLOTS")):
        if low <= slot <= high:
            return slot, nodes[port], next(n for p, n in nodes.items() if p != port)
    raise AssertionError(f"no node serves slot {slot}")


@pytest.mark.timeout(60)
async def test_a_slot_being_moved_is_a_503_naming_tryagain(
    cluster: list[int], make_client: MakeClient, auth: Auth, settings: Settings
) -> None:
    """The artifact's slot half-way to another node (MIGRATING on its node, IMPORTING on
    the other): the heartbeat's script finds some of its keys on neither side whole, and
    each node answers ASK or TRYAGAIN until redis-py gives up. The rest of the cluster
    serves: /readyz stays ready (one slot moving is no reason to take the process out of
    the load balancer)."""
    client = await make_client(redis_url=f"redis://127.0.0.1:{cluster[0]}", redis_cluster=True)
    assert (await client.post("/v1/heartbeat", json=BEAT, headers=auth("a"))).status == 200
    counted = await _refusals_counted(client, "TRYAGAIN")
    key = Keyspace(settings.partitions).artifact(BEAT["artifactId"]).sessions
    slot, source, target = _slot_of(cluster, key)
    source_id = source.execute_command("CLUSTER", "MYID")
    target_id = target.execute_command("CLUSTER", "MYID")
    target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    try:
        response = await client.post("/v1/heartbeat", json=BEAT, headers=auth("a"))
        body = await _refused(response, "TRYAGAIN")
        assert "being moved" in body["detail"]
        assert response.headers["Retry-After"] == "1"
        assert await _refusals_counted(client, "TRYAGAIN") == counted + 1
        await _ready_says(client, "ok")
    finally:
        for node in (source, target):
            node.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
    await _serving(client, auth)
