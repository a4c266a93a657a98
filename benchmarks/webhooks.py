"""Webhooks under load: delivery lag of healthy endpoints beside a hanging one, and the
heartbeat scenario's rate with webhooks configured against without, in the same run.

    .venv/bin/python benchmarks/webhooks.py [--rate 2000] [--seconds 10] [--endpoints 10]
        [--fanout one,all] [--pairs 3] [--round-seconds 5] [--connections 32]
        [--scenario heartbeat] [--users 10000] [--skip lag|rps]

One ``presence-svc serve --no-worker`` (its embedded Redis, SQLite), one ``presence-svc
worker`` (the dispatcher) and, in a process of their own, ``--endpoints`` receivers on
loopback (a minimal HTTP/1.1 server on asyncio, so the receivers' own cost stays small
beside the dispatcher's); the last one reads each delivery and never answers (the
dispatcher gives up after PRESENCE_WEBHOOK_TIMEOUT_S, 10 s, and retries).

``lag`` (phase A), once per ``--fanout``: ``--rate`` heartbeats a second, each a new user
(so each makes one ``presence.join``), written straight to Redis through the heartbeat
script (paced in 10 ms batches) for ``--seconds``; then until every healthy receiver has
every event it should get (at most 60 s more). ``one``: endpoint i subscribes to the
artifacts ``r{i}-*`` and the joins cycle over the endpoints, so each event goes to ONE
endpoint (a tenth of them to the hanging one); ``all``: every endpoint takes every event
(``--rate`` x ``--endpoints`` deliveries a second). Lag per delivery: arrival at the
receiver minus the event's timestamp (Redis time of the heartbeat); p50/p99/max over the
healthy endpoints, the rate the generator reached, and what each healthy one received.

``rps`` (phase B): the ``heartbeat`` scenario of ``presence-svc bench`` (``--users``
users, 10 000, one tab each on a tenth as many artifacts, seeded first, then their
refreshes over HTTP on raw keep-alive connections) for ``--round-seconds`` a round, in
``--pairs`` pairs of rounds: ``off`` (no endpoint, no outbox: the writers append
nothing) then ``on`` (``--endpoints`` endpoints, the last hanging, each subscribed to
every presence event type, the outboxes made, the dispatcher running and delivering
whatever the heartbeats cause). Reports the
rps of each round, the median of the pairs' ratios on / off, and the deliveries the
receivers got during the ``on`` rounds. (Refreshes change nothing, so the ``heartbeat``
scenario causes next to no event; ``--scenario churn``, a leave and a heartbeat again per
user, makes a leave and a join per pair of requests, each to every endpoint.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from presence_svc.auth import TokenCodec, read_secret
from presence_svc.bench.runner import (
    Options,
    child_env,
    cpu_seconds,
    exit_on_sigterm,
    free_port,
    measure,
    python_argv,
    started_process,
)
from presence_svc.bench.scenarios import Population, Tokens, build_scenario, seed_requests
from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import connect
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import Settings

PRESENCE = ["artifact.occupied", "artifact.vacated", "presence.join", "presence.leave"]
_LENGTH = re.compile(rb"(?i)content-length:\s*(\d+)")
_NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


class _Hook(asyncio.Protocol):
    """One receiver connection: reads each request, notes it, answers 204 (or never)."""

    def __init__(self, note: Any, hang: bool) -> None:
        self.note = note
        self.hang = hang
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            found = _LENGTH.search(self.buffer, 0, end)
            length = int(found.group(1)) if found else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if self.hang:
                continue
            self.note(body)
            assert self.transport is not None
            self.transport.write(_NO_CONTENT)


def _receivers(count: int, out: Connection) -> None:
    """Process: ``count`` receivers (the last hangs); on a message, answers the lags."""
    lags: dict[int, list[float]] = {i: [] for i in range(count)}
    ids: dict[int, set[str]] = {i: set() for i in range(count)}

    def noter(i: int) -> Any:
        def note(raw: bytes) -> None:
            body = json.loads(raw)
            if body["id"] not in ids[i]:
                ids[i].add(body["id"])
                sent = datetime.fromisoformat(body["timestamp"]).timestamp()
                lags[i].append(time.time() - sent)

        return note

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ports = []
        for i in range(count):
            note, hang = noter(i), i == count - 1
            server = await loop.create_server(
                lambda note=note, hang=hang: _Hook(note, hang),  # type: ignore[misc]
                "127.0.0.1",
                0,
            )
            ports.append(server.sockets[0].getsockname()[1])
        out.send(ports)
        while True:
            command = await loop.run_in_executor(None, out.recv)
            if command == "stop":
                return
            out.send(
                {i: (len(ids[i]), lags[i] if command != "count" else []) for i in range(count)}
            )
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


def _log_tails(folder: Path) -> str:
    """The end of the server's and the worker's logs, for a failure."""
    tails = []
    for log in sorted(folder.glob("*.log")):
        tails.append(f"--- {log.name}\n" + log.read_text(errors="replace")[-1500:])
    return "\n".join(tails)


class Bench:
    """The processes of a run, each stopped when ``stack`` closes, and also if this process
    dies first (``started_process``: a test's timeout SIGKILLs it, with no cleanup)."""

    def __init__(self, args: argparse.Namespace, data: Path, stack: contextlib.ExitStack) -> None:
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
        self.logs = [data.parent / "serve.log", data.parent / "worker.log"]
        serve = python_argv("-m", "presence_svc", "serve", "--no-worker", "--port", str(self.port))
        self.server = stack.enter_context(
            started_process(
                serve, port=self.port, ready_path="/readyz", env=env, log_path=self.logs[0]
            )
        )
        # The worker's /metrics listener tells when it is up (started_process waits for it).
        metrics_port = free_port()
        worker_env = {
            **env,
            "PRESENCE_REDIS_URL": f"unix://{data}/redis.sock",
            "PRESENCE_METRICS_ADDR": f"127.0.0.1:{metrics_port}",
        }
        self.worker = stack.enter_context(
            started_process(
                python_argv("-m", "presence_svc", "worker"),
                port=metrics_port,
                ready_path="/metrics",
                env=worker_env,
                log_path=self.logs[1],
            )
        )
        self.tokens = Tokens(TokenCodec(read_secret(data)), ttl_s=86400)
        # Spawned, not forked: a forked child would hold this end of the pipe too, and so
        # never see it close (EOF: it exits) when this process dies without its cleanup.
        spawn = multiprocessing.get_context("spawn")
        self.pipe, child = spawn.Pipe()
        self.receivers = spawn.Process(target=_receivers, args=(args.endpoints, child), daemon=True)
        self.receivers.start()
        stack.callback(self._stop_receivers)
        self.ports: list[int] = self.pipe.recv()
        self.endpoints: list[str] = []
        self.settings = Settings(redis_url=f"unix://{data}/redis.sock", data_dir=data)
        self.user = 0

    def _stop_receivers(self) -> None:
        with contextlib.suppress(OSError):  # gone already: its end of the pipe is closed
            self.pipe.send("stop")
        self.receivers.join(5)
        self.receivers.kill()

    def webhooks_on(self, events: list[str], *, fanout: str = "all") -> None:
        for i, port in enumerate(self.ports):
            body: dict[str, Any] = {"url": f"http://127.0.0.1:{port}/hook", "events": events}
            if fanout == "one":
                body["artifactPrefix"] = f"r{i}-"
            made = _admin(self.base, self.tokens.admin, "POST", "/v1/webhooks", body)
            self.endpoints.append(made["webhookId"])
        time.sleep(2 * 1.0)  # the dispatcher reads the endpoints every second

    async def webhooks_off(self) -> None:
        for webhook_id in self.endpoints:
            _admin(self.base, self.tokens.admin, "DELETE", f"/v1/webhooks/{webhook_id}")
        self.endpoints.clear()
        redis = connect(self.settings)
        keys = Keyspace(self.settings.partitions)
        await redis.client.delete(*[keys.outbox(t) for t in keys.tags])  # as after a minute
        await redis.aclose()

    def collect(self, command: str = "get") -> dict[int, tuple[int, list[float]]]:
        self.pipe.send(command)
        got: dict[int, tuple[int, list[float]]] = self.pipe.recv()
        return got

    async def lag(self, fanout: str) -> dict[str, Any]:
        endpoints = len(self.ports)
        self.webhooks_on(["presence.join"], fanout=fanout)
        self.collect("reset")
        redis = connect(self.settings)
        await redis.load_scripts()
        store = PresenceStore(redis, self.settings)
        rate, seconds = self.args.rate, self.args.seconds
        per_tick = max(1, rate // 100)
        expected = [0] * endpoints
        worker_cpu = cpu_seconds(self.worker.pid) or 0.0
        start = time.monotonic()
        for tick in range(int(seconds * 100)):
            batch = []
            for u in range(self.user, self.user + per_tick):
                target = u % endpoints
                if fanout == "one":
                    expected[target] += 1
                artifact = f"r{target}-{u % 1000}"
                batch.append(store.heartbeat(artifact, f"tab-{u:010d}", f"u{u}", "v1", None))
            self.user += per_tick
            await asyncio.gather(*batch)
            ahead = start + (tick + 1) / 100 - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        sending_s = time.monotonic() - start
        sent = int(seconds * 100) * per_tick
        if fanout == "all":
            expected = [sent] * endpoints
        healthy = range(endpoints - 1)
        deadline = time.monotonic() + 60
        while True:
            got = self.collect("count")
            if all(got[i][0] >= expected[i] for i in healthy) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        done_s = time.monotonic() - start
        worker_cpu = (cpu_seconds(self.worker.pid) or 0.0) - worker_cpu
        got = self.collect()
        await redis.aclose()
        lags = [lag for i in healthy for lag in got[i][1]]
        await self.webhooks_off()
        received = sum(got[i][0] for i in healthy)
        return {
            "bench": "webhook_lag",
            "fanout": fanout,
            "endpoints": endpoints,
            "hanging": 1,
            "events_per_s_asked": rate,
            "events_per_s_reached": round(sent / sending_s),
            "sent": sent,
            "healthy_deliveries_per_s": round(received / done_s),
            "seconds_to_last": round(done_s, 1),
            "received_per_healthy": [got[i][0] for i in healthy],
            "expected_per_healthy": [expected[i] for i in healthy],
            "p50_s": round(_percentile(lags, 0.5), 3),
            "p99_s": round(_percentile(lags, 0.99), 3),
            "max_s": round(max(lags, default=float("nan")), 3),
            "worker_cpu_s_per_s": round(worker_cpu / done_s, 2),
        }

    async def rps(self) -> dict[str, Any]:
        population = Population(users=self.args.users, artifacts=max(1, self.args.users // 10))
        options = Options(
            connections=self.args.connections, duration_s=self.args.round_seconds, warmup=20
        )
        seed = seed_requests(self.tokens, population)
        measure(
            "127.0.0.1",
            self.port,
            seed,
            Options(connections=32, max_requests=len(seed), duration_s=120, warmup=0),
        )
        requests = build_scenario(self.args.scenario, self.tokens, population).requests
        rounds: dict[str, list[float]] = {"off": [], "on": []}
        p99: dict[str, list[float]] = {"off": [], "on": []}
        ratios: list[float] = []
        deliveries = 0
        for _ in range(self.args.pairs):
            for mode in ("off", "on"):
                if mode == "on":
                    self.webhooks_on(PRESENCE)
                    before = sum(n for n, _ in self.collect("count").values())
                result = measure("127.0.0.1", self.port, requests, options)
                rounds[mode].append(result.rps)
                p99[mode].append(result.p99_ms)
                if mode == "on":
                    deliveries += sum(n for n, _ in self.collect("count").values()) - before
                    await self.webhooks_off()
            ratios.append(rounds["on"][-1] / rounds["off"][-1])
        return {
            "bench": "webhook_heartbeat_rps",
            "scenario": self.args.scenario,
            "off_rps": round(statistics.median(rounds["off"])),
            "on_rps": round(statistics.median(rounds["on"])),
            "ratio": round(statistics.median(ratios), 3),
            "pair_ratios": [round(r, 3) for r in ratios],
            "p99_ms": {k: [round(v, 1) for v in vs] for k, vs in p99.items()},
            "rounds": {k: [round(v) for v in vs] for k, vs in rounds.items()},
            "deliveries_during_on_rounds": deliveries,
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--fanout", default="one,all")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--round-seconds", type=float, default=5)
    parser.add_argument("--scenario", default="heartbeat", help="of presence-svc bench")
    parser.add_argument("--users", type=int, default=10_000, help="phase B: one tab each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip", choices=["lag", "rps"], action="append", default=[])
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        exit_on_sigterm(),
        contextlib.ExitStack() as stack,
    ):
        try:
            bench = Bench(args, Path(tmp) / "data", stack)
            if "rps" not in args.skip:
                print(json.dumps(await bench.rps()), flush=True)
            if "lag" not in args.skip:
                for fanout in args.fanout.split(","):
                    print(json.dumps(await bench.lag(fanout)), flush=True)
        except BaseException:
            print(_log_tails(Path(tmp)), file=sys.stderr, flush=True)
            raise


if __name__ == "__main__":
    asyncio.run(main())
