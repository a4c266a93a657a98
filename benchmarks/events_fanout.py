"""Live-event fan-out: events delivered per second to many SSE listeners on one artifact.

    .venv/bin/python benchmarks/events_fanout.py [--listeners 1000] [--seconds 5]

Starts the real ``presence-svc serve`` (its own process, embedded Redis, no worker), opens
N event streams on one artifact over real HTTP, waits for every ``sync``, then for the
given time sends heartbeats that each change a session's state (one ``state`` event per
heartbeat, published by the script and fanned out by the server's one subscription).
Counts every event each listener receives and prints one JSON line: events published,
events delivered, deliveries per second (from the first heartbeat until the last
delivery) and whether every listener got every event. The server's log is kept in
``$TMPDIR/fanout-bench-*/server.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp

from presence_svc.auth import Scope, TokenCodec
from presence_svc.bench.machine import machine
from presence_svc.bench.runner import child_env, free_port, python_argv, started_process

SECRET = "events-fanout-benchmark-secret-0123456789abcdef"
_PATTERN = b"event: "


class Listener:
    """Counts ``event:`` lines in the raw stream (cheap, so the client is not the limit)."""

    def __init__(self) -> None:
        self.events = 0
        self.synced = asyncio.Event()
        self.last_at = 0.0

    async def run(self, http: aiohttp.ClientSession, url: str) -> None:
        async with http.get(url) as response:
            assert response.status == 200, await response.text()
            tail = b""
            async for chunk in response.content.iter_any():
                buf = tail + chunk
                found = buf.count(_PATTERN)
                if found:
                    self.events += found
                    self.last_at = time.perf_counter()
                    self.synced.set()
                tail = buf[-(len(_PATTERN) - 1) :]


async def _drive(base: str, token: str, seconds: float, concurrency: int) -> int:
    """Heartbeats that each change the state: one ``state`` event each."""
    sent = 0
    stop_at = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:

        async def worker(n: int) -> None:
            nonlocal sent
            session = f"tab-driver-{n:04d}"
            body = {"artifactId": "doc-1", "sessionId": session, "state": {"i": 0}}
            async with http.post(f"{base}/v1/heartbeat", json=body, headers=headers) as r:
                assert r.status == 200
            i = 0
            while time.perf_counter() < stop_at:
                i += 1
                body["state"] = {"i": i}
                async with http.post(f"{base}/v1/heartbeat", json=body, headers=headers) as r:
                    assert r.status == 200
                sent += 1

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return sent


async def main(base: str, listeners: int, seconds: float, concurrency: int) -> None:
    codec = TokenCodec(SECRET)
    board = codec.issue("board", scope=Scope.DASHBOARD)
    writer = codec.issue("driver")
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        url = f"{base}/v1/artifacts/doc-1/events?access_token={board}"
        group = [Listener() for _ in range(listeners)]
        tasks = [asyncio.create_task(g.run(http, url)) for g in group]
        synced = asyncio.gather(*(g.synced.wait() for g in group))
        done, _ = await asyncio.wait(
            [asyncio.ensure_future(synced), *tasks],
            timeout=120,
            return_when=asyncio.FIRST_COMPLETED,
        )
        for task in done:
            task.result()  # a listener that failed to connect fails the run
        assert synced.done(), "not every listener got its sync"
        before = sum(g.events for g in group)

        started = time.perf_counter()
        published = await _drive(base, writer, seconds, concurrency)
        # each listener gets one state event per heartbeat, plus the driver's join
        # (and a few coalesced counts, which are counted as delivered too)
        deadline = time.perf_counter() + 60
        expected_each = published + 1
        while time.perf_counter() < deadline:
            if all(g.events - 1 >= expected_each for g in group):
                break
            await asyncio.sleep(0.05)
        delivered = sum(g.events for g in group) - before
        finished = max(g.last_at for g in group)
        complete = all(g.events - 1 >= expected_each for g in group)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = finished - started
    print(
        json.dumps(
            {
                "benchmark": "events_fanout",
                "listeners": listeners,
                "heartbeats_with_state_change": published,
                "events_delivered": delivered,
                "seconds": round(elapsed, 3),
                "events_delivered_per_s": round(delivered / elapsed),
                "events_published_per_s": round(published / seconds),
                "every_listener_got_every_event": complete,
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16, help="heartbeat senders")
    args = parser.parse_args()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    env = child_env(
        PRESENCE_DATA_DIR=str(workdir),
        PRESENCE_JWT_SECRET=SECRET,
        PRESENCE_LOG_LEVEL="warning",
        PRESENCE_ONLINE_TIMEOUT_S="600",
        PRESENCE_RETENTION_S="600",
    )
    argv = python_argv("-m", "presence_svc", "serve", "--port", str(port), "--no-worker")
    with started_process(
        argv, port=port, ready_path="/readyz", env=env, log_path=workdir / "server.log"
    ):
        base = f"http://127.0.0.1:{port}"
        asyncio.run(main(base, args.listeners, args.seconds, args.concurrency))
