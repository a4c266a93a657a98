"""Webhooks under load: delivery lag of healthy endpoints beside a hanging one, and the
heartbeat rate with webhooks configured against without, in the same run.

    .venv/bin/python benchmarks/webhooks.py [--rate 2000] [--seconds 10] [--endpoints 10]
        [--rounds 3] [--round-seconds 5] [--connections 32]

One ``presence-svc serve --no-worker`` (its embedded Redis, SQLite), one ``presence-svc
worker`` (the dispatcher) and, in a process of their own, ``--endpoints`` aiohttp receivers
on loopback; the last one
hangs every delivery (PRESENCE_WEBHOOK_TIMEOUT_S=10, so its lane holds its 4 deliveries in
flight for 10 s each). Every endpoint subscribes to presence.join.

``lag``: ``--rate`` heartbeats a second, each a new user on one of 100 artifacts (so each
makes one ``presence.join``), written straight to Redis through the heartbeat script (paced
in 10 ms batches) for ``--seconds``; then until every healthy receiver has every event (at
most 60 s more). Lag per delivery: arrival at the receiver minus the event's timestamp
(Redis time of the heartbeat). Reports p50/p99/max over the healthy endpoints, and what
they received of what was sent.

``rps``: HTTP heartbeats (raw keep-alive connections, ``presence_svc.bench.loadgen``):
``--sessions`` new sessions join (a warm-up, not measured: on ``on`` rounds each join is a
delivery to every endpoint, which the worker is still sending during the measured part),
then their refreshes for ``--round-seconds``, measured; rounds alternate webhooks ``off``
(no endpoint, no outbox: the writers append nothing) and ``on`` (the endpoints as above),
``--rounds`` each. Reports the median rps of each and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import subprocess
import tempfile
import time
import urllib.request
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from presence_svc.auth import Scope, TokenCodec, read_secret
from presence_svc.bench.loadgen import Job, LoadResult, run_job
from presence_svc.bench.runner import child_env, free_port, python_argv, wait_http
from presence_svc.bench.scenarios import _request
from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import connect
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings


def _receivers(count: int, out: Connection) -> None:
    """Process: ``count`` receivers (the last hangs); on a message, answers the lags."""
    from aiohttp import web

    lags: dict[int, list[float]] = {i: [] for i in range(count)}
    ids: dict[int, set[str]] = {i: set() for i in range(count)}

    def handler(i: int) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = json.loads(await request.read())
            if i == count - 1:
                await asyncio.sleep(3600)
            if body["id"] not in ids[i]:
                ids[i].add(body["id"])
                sent = datetime.fromisoformat(body["timestamp"]).timestamp()
                lags[i].append(time.time() - sent)
            return web.Response(status=204)

        return handle

    async def main() -> None:
        ports = []
        for i in range(count):
            app = web.Application()
            app.router.add_post("/hook", handler(i))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        out.send(ports)
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, out.recv)
            if command == "stop":
                return
            out.send({i: (len(ids[i]), lags[i]) for i in range(count)})
            if command == "reset":
                for i in range(count):
                    lags[i].clear()
                    ids[i].clear()

    asyncio.run(main())


def _admin(base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        raw = answer.read()
        return json.loads(raw) if raw else None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Bench:
    def __init__(self, args: argparse.Namespace, data: Path) -> None:
        self.args = args
        self.data = data
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = child_env(
            PRESENCE_DATA_DIR=str(data),
            PRESENCE_WEBHOOK_ALLOW_HTTP="1",
            PRESENCE_WEBHOOK_ALLOW_PRIVATE="1",
            PRESENCE_RATE_LIMITS="off",
            PRESENCE_LOG_LEVEL="warning",
        )
        argv = python_argv("-m", "presence_svc", "serve", "--no-worker", "--port", str(self.port))
        self.server = subprocess.Popen(argv, env=env)
        wait_http("127.0.0.1", self.port, "/readyz", 60, lambda: self.server.poll() is None)
        worker_env = {**env, "PRESENCE_REDIS_URL": f"unix://{data}/redis.sock"}
        self.worker = subprocess.Popen(python_argv("-m", "presence_svc", "worker"), env=worker_env)
        self.tokens = TokenCodec(read_secret(data))
        self.admin = self.tokens.issue("bench-admin", scope=Scope.ADMIN, ttl_s=86400)
        self.pipe, child = multiprocessing.Pipe()
        self.receivers = multiprocessing.Process(
            target=_receivers, args=(args.endpoints, child), daemon=True
        )
        self.receivers.start()
        self.ports: list[int] = self.pipe.recv()
        self.endpoints: list[str] = []
        self.settings = Settings(redis_url=f"unix://{data}/redis.sock", data_dir=data)
        self.user = 0

    def webhooks_on(self) -> None:
        for port in self.ports:
            made = _admin(
                self.base,
                self.admin,
                "POST",
                "/v1/webhooks",
                {"url": f"http://127.0.0.1:{port}/hook", "events": ["presence.join"]},
            )
            self.endpoints.append(made["webhookId"])

    async def webhooks_off(self) -> None:
        for webhook_id in self.endpoints:
            _admin(self.base, self.admin, "DELETE", f"/v1/webhooks/{webhook_id}")
        self.endpoints.clear()
        redis = connect(self.settings)
        keys = Keyspace(self.settings.partitions)
        await redis.client.delete(*[keys.outbox(t) for t in keys.tags])  # as after a minute
        await redis.aclose()

    def collect(self, command: str = "get") -> dict[int, tuple[int, list[float]]]:
        self.pipe.send(command)
        got: dict[int, tuple[int, list[float]]] = self.pipe.recv()
        return got

    async def lag(self) -> dict[str, Any]:
        self.webhooks_on()
        self.collect("reset")
        redis = connect(self.settings)
        await redis.load_scripts()
        store = PresenceStore(redis, self.settings)
        rate, seconds = self.args.rate, self.args.seconds
        per_tick = max(1, rate // 100)
        sent = 0
        start = time.monotonic()
        for tick in range(int(seconds * 100)):
            batch = [
                store.heartbeat(f"room-{u % 100}", f"tab-{u:010d}", f"u{u}", "v1", None)
                for u in range(self.user, self.user + per_tick)
            ]
            self.user += per_tick
            await asyncio.gather(*batch)
            sent += per_tick
            ahead = start + (tick + 1) / 100 - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        sending_s = time.monotonic() - start
        healthy = range(len(self.ports) - 1)
        deadline = time.monotonic() + 60
        while True:
            got = self.collect()
            if all(got[i][0] >= sent for i in healthy) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        await redis.aclose()
        lags = [lag for i in healthy for lag in got[i][1]]
        await self.webhooks_off()
        return {
            "bench": "webhook_lag",
            "events_per_s": round(sent / sending_s),
            "endpoints": len(self.ports),
            "hanging": 1,
            "sent": sent,
            "received_per_healthy": [got[i][0] for i in healthy],
            "p50_s": round(_percentile(lags, 0.5), 3),
            "p99_s": round(_percentile(lags, 0.99), 3),
            "max_s": round(max(lags, default=float("nan")), 3),
        }

    def _heartbeats(self, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            u = self.user
            self.user += 1
            body = {"artifactId": f"room-{u % 100}", "sessionId": f"tab-{u:010d}"}
            token = self.tokens.issue(f"u{u}", ttl_s=86400)
            out.append(_request("POST", "/v1/heartbeat", token, json.dumps(body).encode()))
        return out

    def _load(self) -> float:
        seconds, conns = self.args.round_seconds, self.args.connections
        job = Job(
            "127.0.0.1",
            self.port,
            self._heartbeats(int(seconds * 6000)),
            conns,
            int(seconds * 6000),
            seconds,
        )
        mine, theirs = multiprocessing.Pipe()
        process = multiprocessing.Process(target=run_job, args=(job, None, None, theirs))
        process.start()
        result = mine.recv()
        process.join()
        assert isinstance(result, LoadResult), result
        return result.ok / (result.finished - result.started)

    async def rps(self) -> dict[str, Any]:
        rates: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(self.args.rounds):
            for mode in ("off", "on"):
                if mode == "on":
                    self.webhooks_on()
                rates[mode].append(self._load())
                if mode == "on":
                    await self.webhooks_off()
        off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
        return {
            "bench": "webhook_heartbeat_rps",
            "off_rps": round(off),
            "on_rps": round(on),
            "ratio": round(on / off, 3),
            "rounds": {k: [round(v) for v in vs] for k, vs in rates.items()},
        }

    def close(self) -> None:
        self.pipe.send("stop")
        self.receivers.join(5)
        self.receivers.kill()
        for process in (self.worker, self.server):
            process.terminate()
            process.wait(30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--skip", choices=["lag", "rps"], action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, Path(tmp) / "data")
        try:
            if "rps" not in args.skip:
                print(json.dumps(await bench.rps()), flush=True)
            if "lag" not in args.skip:
                print(json.dumps(await bench.lag()), flush=True)
        finally:
            bench.close()


if __name__ == "__main__":
    asyncio.run(main())
