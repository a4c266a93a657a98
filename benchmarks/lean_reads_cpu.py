"""The service's CPU per hot read, answered by the lean path against by aiohttp: the same
tree, two server processes (``serve``'s protocol, one with the lean path off), in turn.

    .venv/bin/python benchmarks/lean_reads_cpu.py [--requests 6000] [--rounds 5]
        [--connections 16] [--json]

A private redis-server; 1 000 users online on 100 artifacts (rooms of 10, as the bench's
population), seeded through HTTP. Each round sends ``--requests`` of each read (the bench's
requests: ``online-one``, ``presence-list`` with ``limit=100``, ``where-now`` of users online on
one artifact each) over ``--connections`` keep-alive connections, first to one server then
to the other (the order swapped each round), and counts the server process's CPU
(``/proc/PID/task/*/schedstat``: nanoseconds on a CPU, not wall time, so the machine's
load moves it far less than rates) and Redis's (``INFO cpu``). Prints each round's µs per
request and the medians (``--json``: one object with the medians).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import statistics
import tempfile
from pathlib import Path
from typing import Any

import uvloop
from redis import Redis

from presence_svc.auth import Scope, TokenCodec
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings

SECRET = "lean-reads-cpu-" + "x" * 32
USERS = 1_000
ARTIFACTS = 100


def _serve(settings: Settings, sock: socket.socket, lean: bool) -> None:
    """A server process: ``create_app`` under ``SheddingRunner`` (``serve``'s protocol),
    with the lean path off unless ``lean``."""
    from aiohttp import web

    from presence_svc.http.app import create_app
    from presence_svc.http.shedding import SheddingRunner

    async def run() -> None:
        runner = SheddingRunner(create_app(settings), access_log=None)
        await runner.setup()
        if not lean:
            runner.server.lean = None  # type: ignore[union-attr]
        await web.SockSite(runner, sock).start()
        await asyncio.Event().wait()

    uvloop.run(run())


def _cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def _redis_cpu_s(sync: Redis) -> float:
    info: dict[str, Any] = sync.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _request(method: str, path: str, token: str, body: bytes | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + (body or b"")


def _reads(tokens: list[str], count: int) -> dict[str, list[bytes]]:
    users = [n % USERS for n in range(count)]
    return {
        "online-one": [
            _request("GET", f"/v1/artifacts/doc-{u % ARTIFACTS:04d}/online", tokens[u])
            for u in users
        ],
        "presence-list": [
            _request("GET", f"/v1/artifacts/doc-{u % ARTIFACTS:04d}/presence?limit=100", tokens[u])
            for u in users
        ],
        "where-now": [
            _request("GET", f"/v1/users/user-{u:05d}/presence", tokens[u]) for u in users
        ],
    }


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    at = head.index(b"Content-Length: ") + 16
    await reader.readexactly(int(head[at : head.index(b"\r\n", at)]))
    return int(head[9:12])


async def _send_all(port: int, requests: list[bytes], connections: int) -> None:
    async def one(part: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in part:
                writer.write(request)
                status = await _answer(reader)
                if status != 200:
                    raise RuntimeError(f"{status} for {request[:80]!r}")
        finally:
            writer.close()

    await asyncio.gather(*(one(requests[i::connections]) for i in range(connections)))


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="lean-reads-cpu-"))
    redis_server = EmbeddedRedis(root / "redis")
    url = redis_server.start()
    settings = Settings(redis_url=url, data_dir=root / "data", jwt_secret=SECRET)
    context = multiprocessing.get_context("spawn")
    servers: dict[str, tuple[int, int]] = {}
    processes = []
    try:
        for name, lean in (("lean", True), ("aiohttp", False)):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(1024)
            process = context.Process(target=_serve, args=(settings, sock, lean), daemon=True)
            process.start()
            processes.append(process)
            assert process.pid is not None
            servers[name] = (sock.getsockname()[1], process.pid)
            sock.close()
        codec = TokenCodec(SECRET)
        tokens = [
            codec.issue(f"user-{u:05d}", scope=Scope.CLIENT, ttl_s=3600) for u in range(USERS)
        ]
        await asyncio.sleep(1.0)
        beats = [
            _request(
                "POST",
                "/v1/heartbeat",
                tokens[u],
                json.dumps(
                    {"artifactId": f"doc-{u % ARTIFACTS:04d}", "sessionId": f"tab-{u:08d}"}
                ).encode(),
            )
            for u in range(USERS)
        ]
        await _send_all(servers["lean"][0], beats, 8)
        reads = _reads(tokens, args.requests)
        for port, _ in servers.values():  # warm both: caches, connections, scripts
            for requests in reads.values():
                await _send_all(port, requests[:1000], args.connections)
        found: dict[tuple[str, str], list[float]] = {}
        with Redis.from_url(url) as sync:
            for n in range(args.rounds):
                order = list(servers.items())
                if n % 2:
                    order.reverse()
                row = {}
                for scenario, requests in reads.items():
                    for name, (port, pid) in order:
                        cpu, redis_cpu = _cpu_ns(pid), _redis_cpu_s(sync)
                        await _send_all(port, requests, args.connections)
                        service_us = (_cpu_ns(pid) - cpu) / 1e3 / len(requests)
                        redis_us = (_redis_cpu_s(sync) - redis_cpu) * 1e6 / len(requests)
                        found.setdefault((scenario, name), []).append(service_us)
                        found.setdefault((scenario, f"{name}+redis"), []).append(
                            service_us + redis_us
                        )
                        row[f"{scenario} {name}"] = round(service_us, 1)
                if not args.json:
                    print(n + 1, f"load {os.getloadavg()[0]:.1f}", row, flush=True)
    finally:
        for process in processes:
            process.terminate()
            process.join(10)
        redis_server.stop()
    return {
        f"{scenario} {name}": round(statistics.median(values), 1)
        for (scenario, name), values in found.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    medians = uvloop.run(_measure(args))
    if args.json:
        print(json.dumps({"load": os.getloadavg()[0], "medians_us": medians}))
        return
    for name, value in medians.items():
        print(f"{name}: median {value} µs CPU per request")


if __name__ == "__main__":
    main()
