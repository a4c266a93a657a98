"""A Redis Cluster master dies for good (or freezes) and its replica takes over: the service
carries on, and live event streams keep flowing even when that node held their subscription."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from presence_svc.redis.embedded import redis_server_binary
from tests.children import dies_with_us
from tests.conftest import AppClient, MakeClient
from tests.redis.test_cluster import _ports
from tests.sse import Event, EventStream

pytestmark = pytest.mark.slow

Auth = Callable[..., dict[str, str]]

NODE_TIMEOUT_MS = 1000


def _start_node(base: Path, port: int) -> subprocess.Popen[bytes]:
    node = base / str(port)
    node.mkdir()
    return subprocess.Popen(
        [
            redis_server_binary(),
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--cluster-enabled", "yes", "--cluster-config-file", str(node / "nodes.conf")),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            *("--dir", str(node), "--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=dies_with_us(),
    )


def _wait(condition: Callable[[], bool], what: str, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[dict[int, subprocess.Popen[bytes]]]:
    """Three masters, each with one replica; ports of the masters first."""
    ports = _ports(6)
    processes = {port: _start_node(tmp_path, port) for port in ports}
    try:
        clients = {port: redis.Redis(port=port) for port in ports}
        _wait(lambda: all(c.ping() for c in clients.values()), "the nodes did not start")
        masters, replicas = ports[:3], ports[3:]
        share = 16384 // 3
        for i, port in enumerate(masters):
            last = 16383 if i == 2 else (i + 1) * share - 1
            clients[port].execute_command("CLUSTER", "ADDSLOTS", *range(i * share, last + 1))
        for port in ports[1:]:
            clients[ports[0]].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        ids = {port: clients[port].execute_command("CLUSTER", "MYID").decode() for port in masters}

        def knows_masters(port: int) -> bool:
            nodes = clients[port].execute_command("CLUSTER", "NODES").decode()
            return all(node_id in nodes for node_id in ids.values())

        _wait(lambda: all(knows_masters(p) for p in replicas), "the replicas did not meet")
        for master, replica in zip(masters, replicas, strict=True):
            clients[replica].execute_command("CLUSTER", "REPLICATE", ids[master])

        def ready() -> bool:
            if not all(
                b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO")
                for c in clients.values()
            ):
                return False
            return all(
                clients[r].info("replication").get("master_link_status") == "up" for r in replicas
            )

        _wait(ready, "the cluster did not come up with its replicas")
        yield processes
    finally:
        for process in processes.values():
            process.kill()  # SIGTERM would wait on a stopped node forever
            process.wait(10)


class Dashboard:
    """One artifact's event stream, read the way EventSource does: opened again after it
    ends (the server ends it when Redis fails while it resyncs), resuming from the last id,
    and retried while the service answers 503."""

    def __init__(self, client: AppClient, headers: dict[str, str], artifact: str) -> None:
        self.client, self.headers, self.artifact = client, headers, artifact
        self.streams: list[EventStream] = []

    async def connect(self) -> EventStream:
        headers = dict(self.headers)
        if self.streams and self.streams[-1].last_id:
            headers["Last-Event-ID"] = self.streams[-1].last_id
        url = f"/v1/artifacts/{self.artifact}/events"
        deadline = time.monotonic() + 30
        while (response := await self.client.get(url, headers=headers)).status != 200:
            assert response.status == 503, await response.text()
            assert time.monotonic() < deadline, "the event stream did not come back"
            await asyncio.sleep(0.2)
        self.streams.append(EventStream(response))
        return self.streams[-1]

    def events(self) -> list[Event]:
        return [event for stream in self.streams for event in stream.events]

    async def learns(self, ok: Callable[[list[Event]], bool], within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while not ok(self.events()):
            assert time.monotonic() < deadline, f"not told in {within_s} s: {self.events()}"
            if self.streams[-1].ended.is_set():
                await self.connect()
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for stream in self.streams:
            await stream.close()


def joined(user: str) -> Callable[[list[Event]], bool]:
    return lambda seen: any(e.event == "join" and e.data["userId"] == user for e in seen)


def online(user: str) -> Callable[[list[Event]], bool]:
    """Told ``user`` is online: a ``join``, or a ``sync`` (after a resync) listing them."""

    def ok(seen: list[Event]) -> bool:
        listed = (e for e in seen if e.event == "sync")
        return joined(user)(seen) or any(
            user in {u["userId"] for u in e.data["users"]} for e in listed
        )

    return ok


async def beat(client: AppClient, auth: Auth, user: str) -> None:
    """A heartbeat, retried while the cluster fails over (503s are expected then)."""
    body = {"artifactId": "live-0", "sessionId": f"tab-{user}-xxxx"}
    deadline = time.monotonic() + 30
    while (
        response := await client.post("/v1/heartbeat", json=body, headers=auth(user))
    ).status != 200:
        assert response.status == 503, await response.text()
        assert time.monotonic() < deadline, "the service did not recover"
        await asyncio.sleep(0.2)


def subscription_holder(ports: list[int]) -> int:
    """The node the API process's subscription lives on (PUBSUB NUMSUB is per node)."""
    nodes = {port: redis.Redis(port=port) for port in ports}
    channel = next(c for node in nodes.values() for c in node.execute_command("PUBSUB", "CHANNELS"))
    return next(p for p, n in nodes.items() if n.execute_command("PUBSUB", "NUMSUB", channel)[1])


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "how",
    [
        pytest.param(signal.SIGKILL, id="killed"),  # the connection is reset at once
        pytest.param(signal.SIGSTOP, id="frozen"),  # it stays open and goes quiet
    ],
)
async def test_streams_and_writes_survive_the_loss_of_the_node_holding_the_subscription(
    replicated_cluster: dict[int, subprocess.Popen[bytes]],
    make_client: MakeClient,
    auth: Auth,
    how: signal.Signals,
) -> None:
    ports = list(replicated_cluster)
    client = await make_client(
        redis_url=f"redis://127.0.0.1:{ports[0]}",
        redis_cluster=True,
        partitions=64,
        online_timeout_s=30,  # users stay online through the failover without beating again
        retention_s=60,
    )
    dashboard = Dashboard(client, auth("d", scope="dashboard"), "live-0")
    try:
        stream = await dashboard.connect()
        assert (await stream.next()).event == "sync"
        await beat(client, auth, "before")
        assert (await stream.next_of("join")).data["userId"] == "before"

        holder = subscription_holder(ports)
        replicated_cluster[holder].send_signal(how)
        survivors = [redis.Redis(port=p) for p in ports if p != holder]
        await asyncio.to_thread(
            _wait,
            lambda: all(
                b"cluster_state:ok" in s.execute_command("CLUSTER", "INFO") for s in survivors
            ),
            "no failover",
        )

        await beat(client, auth, "after")
        await dashboard.learns(online("after"), within_s=20)
        # and the stream stays live: the next change arrives as an event of its own
        await beat(client, auth, "later")
        await dashboard.learns(joined("later"), within_s=10)
    finally:
        await dashboard.close()
