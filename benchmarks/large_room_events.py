"""Interval mode (issue 13): what an event stream costs in a 20 000-user room under churn.

    .venv/bin/python benchmarks/large_room_events.py [--users 20000] [--churn 1000]
        [--seconds 20] [--listeners 100] [--exact]

Starts the real ``presence-svc serve`` (its own process, embedded Redis, no worker, default
``PRESENCE_LARGE_ROOM_*``: interval mode from 500 users, one ``interval`` every 2 s), puts
``--users`` users online on one artifact, opens ``--listeners`` event streams on it, then
for ``--seconds`` makes ``--churn`` changes a second, half joins of new users and half
leaves of the longest-present ones (the room stays at its size). It prints one JSON line:
the messages each listener received per second during the churn (the most and the mean;
the bound is one per interval, keep-alives are comments and not counted), the most any
listener got against the intervals the churn lasted (the bound: no more), the per-user
events seen (none in interval mode), and whether the counts were exact at each interval:
every ``interval``'s ``{online, sessions}`` must be the counts right after one of the
changes (as that change's own answer reported them), and the last one, after the churn,
must equal ``GET /online``. ``--exact`` runs the same with interval mode off
(``PRESENCE_LARGE_ROOM_USERS`` above the room): the per-user stream it replaces.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from presence_svc.auth import Scope, TokenCodec
from presence_svc.bench.machine import machine
from presence_svc.bench.runner import child_env, free_port, python_argv, started_process

SECRET = "large-room-benchmark-secret-0123456789abcdef"
INTERVAL_S = 2.0
ARTIFACT = "all-hands"


class Listener:
    """Parses its stream: every frame counted with its time, ``interval`` data kept."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, str]] = []
        self.intervals: list[tuple[float, dict[str, Any]]] = []
        self.synced = asyncio.Event()

    async def run(self, http: aiohttp.ClientSession, url: str) -> None:
        async with http.get(url) as response:
            assert response.status == 200, await response.text()
            name, data = "", b""
            async for line in response.content:
                line = line.rstrip(b"\r\n")
                if line.startswith(b"event: "):
                    name = line[7:].decode()
                elif line.startswith(b"data: "):
                    data = line[6:]
                elif not line and name:
                    now = time.perf_counter()
                    self.frames.append((now, name))
                    if name == "interval":
                        self.intervals.append((now, json.loads(data)))
                    elif name == "sync":
                        self.synced.set()
                    name, data = "", b""


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough to POST JSON: an aiohttp
    client costs more CPU per request than the server spends, and the load would then
    measure the client."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        writer.write(head.encode() + data)
        answer_head = await reader.readuntil(b"\r\n\r\n")
        status = int(answer_head.split(b" ", 2)[1])
        length = 0
        for line in answer_head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        answer = await reader.readexactly(length)
        assert status == 200, answer
        result: dict[str, Any] = json.loads(answer)
        return result

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()


class Driver:
    """Joins and leaves at a steady rate; every answer's counts are kept."""

    def __init__(self, base: str, codec: TokenCodec, users: int) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.codec = codec
        self.present: deque[int] = deque(range(users))
        self.next_user = users
        self.answered: set[tuple[int, int]] = set()
        self.ops = 0
        self._tokens: dict[int, str] = {}

    def _token(self, user: int) -> str:
        token = self._tokens.get(user)
        if token is None:
            token = self._tokens[user] = self.codec.issue(f"u-{user:06d}")
        return token

    async def join(self, http: Connection, user: int) -> None:
        body = {"artifactId": ARTIFACT, "sessionId": f"tab-{user:06d}"}
        answer = await http.post("/v1/heartbeat", self._token(user), body)
        self.answered.add((answer["online"], answer["sessions"]))

    async def leave(self, http: Connection, user: int) -> None:
        body = {"artifactId": ARTIFACT, "sessionId": f"tab-{user:06d}"}
        answer = await http.post("/v1/leave", self._token(user), body)
        self.answered.add((answer["online"], answer["sessions"]))
        self._tokens.pop(user, None)

    async def _workers(self, work: Callable[[Connection], Awaitable[None]], n: int) -> None:
        connections = [Connection(self.host, self.port) for _ in range(n)]
        try:
            await asyncio.gather(*(work(c) for c in connections))
        finally:
            for connection in connections:
                connection.close()

    async def preload(self, concurrency: int = 32) -> None:
        users = iter(list(self.present))

        async def worker(http: Connection) -> None:
            for user in users:
                await self.join(http, user)

        await self._workers(worker, concurrency)

    async def churn(self, per_s: float, seconds: float, concurrency: int = 32) -> float:
        """``per_s`` changes a second for ``seconds``: alternately a join and a leave."""
        total = int(per_s * seconds)
        started = time.perf_counter()
        claimed = 0

        async def worker(http: Connection) -> None:
            nonlocal claimed
            while claimed < total:
                i = claimed
                claimed += 1
                delay = started + i / per_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if i % 2 == 0:
                    user = self.next_user
                    self.next_user += 1
                    await self.join(http, user)
                    self.present.append(user)
                else:
                    await self.leave(http, self.present.popleft())
                self.ops += 1

        await self._workers(worker, concurrency)
        return time.perf_counter() - started


async def main(base: str, args: argparse.Namespace) -> dict[str, Any]:
    codec = TokenCodec(SECRET)
    board = codec.issue("board", scope=Scope.DASHBOARD)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        driver = Driver(base, codec, args.users)
        loaded = time.perf_counter()
        await driver.preload()
        preload_s = time.perf_counter() - loaded
        url = f"{base}/v1/artifacts/{ARTIFACT}/events?access_token={board}"
        group = [Listener() for _ in range(args.listeners)]
        tasks = [asyncio.create_task(g.run(http, url)) for g in group]
        await asyncio.wait_for(asyncio.gather(*(g.synced.wait() for g in group)), 120)
        started = time.perf_counter()
        elapsed = await driver.churn(args.churn, args.seconds)
        ended = started + elapsed
        await asyncio.sleep(INTERVAL_S * 2 + 1)  # the last interval, after the churn
        async with http.get(
            f"{base}/v1/artifacts/{ARTIFACT}/online", headers={"Authorization": f"Bearer {board}"}
        ) as r:
            online = await r.json()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    during = [[t for t, _ in g.frames if started <= t <= ended] for g in group]
    rates = [len(times) / elapsed for times in during]
    most = max(len(times) for times in during)
    possible = int(elapsed // INTERVAL_S) + 1  # intervals that can start within the window
    per_user = sum(1 for g in group for t, name in g.frames if t >= started and name != "interval")
    intervals = [data for g in group for t, data in g.intervals if t >= started]
    exact = [(d["online"], d["sessions"]) in driver.answered for d in intervals]
    last = [g.intervals[-1][1] for g in group if g.intervals]
    now = (online["online"], online["sessions"])
    settled = all((d["online"], d["sessions"]) == now for d in last)
    return {
        "benchmark": "large_room_events",
        "mode": "exact" if args.exact else "interval",
        "users": args.users,
        "listeners": args.listeners,
        "churn_per_s_target": args.churn,
        "churn_per_s_achieved": round(driver.ops / elapsed),
        "seconds": round(elapsed, 2),
        "preload_s": round(preload_s, 1),
        "messages_per_listener_per_s_max": round(max(rates), 3),
        "messages_per_listener_per_s_mean": round(sum(rates) / len(rates), 3),
        "bound_per_s": round(1 / INTERVAL_S, 3),
        "most_messages_per_listener": most,
        "intervals_in_window": possible,
        "other_events_during_churn": per_user,
        "intervals_received": len(intervals),
        "intervals_with_more": sum(1 for d in intervals if d["more"]),
        "intervals_counts_exact": f"{sum(exact)}/{len(exact)}",
        "last_interval_equals_online": settled if last else None,
        "online_after": online["online"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--churn", type=float, default=1000.0, help="joins+leaves per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--listeners", type=int, default=100)
    parser.add_argument("--exact", action="store_true", help="interval mode off: the baseline")
    args = parser.parse_args()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="large-room-bench-"))
    env = child_env(
        PRESENCE_DATA_DIR=str(workdir),
        PRESENCE_JWT_SECRET=SECRET,
        PRESENCE_LOG_LEVEL="warning",
        PRESENCE_ONLINE_TIMEOUT_S="600",
        PRESENCE_RETENTION_S="600",
        PRESENCE_LARGE_ROOM_INTERVAL_S=str(INTERVAL_S),
        PRESENCE_LARGE_ROOM_USERS="100000000" if args.exact else "500",
    )
    argv = python_argv("-m", "presence_svc", "serve", "--port", str(port), "--no-worker")
    with started_process(
        argv, port=port, ready_path="/readyz", env=env, log_path=workdir / "server.log"
    ):
        result = asyncio.run(main(f"http://127.0.0.1:{port}", args))
        print(json.dumps({**result, "machine": machine()}))
