"""Where-now's Redis cost per quiet read, counted not timed: instructions redis-server runs
per ``store.where_now.read`` under valgrind's callgrind, which the machine's load cannot
change; and, without valgrind, process and Redis CPU per read with 64 reads at a time on
the pipelined connection (as the service reads).

    .venv/bin/python benchmarks/where_now_instructions.py [--repeats 3] [--cpu-reads 6400]

20 users online on 50 artifacts each (one tab each, the bench's ``where-now`` layout: user
u on doc (u + 7k) mod 1000) and 300 other users on those artifacts; every read after the
first few finds nothing written since (the bench scenario's reads). Callgrind: the
instrumentation is switched on around 64 concurrent reads, ``--repeats`` times; prints the
instructions per read of each. CPU: ``--cpu-reads`` reads, twice, on an embedded Redis.
Runs the tree it is in: run main's from its own worktree and venv to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from redis import Redis

from presence_svc.live.store import PresenceStore
from presence_svc.redis.connection import RedisConnection, connect
from presence_svc.redis.embedded import CONFIG, EmbeddedRedis, redis_server_binary
from presence_svc.settings import Settings

USERS, ROAMING, AT_ONCE = 20, 50, 64


async def _seed(store: PresenceStore) -> None:
    for u in range(USERS):
        await asyncio.gather(
            *(
                store.heartbeat(
                    f"doc-{(u + 7 * k) % 1000:07d}", f"s{u}-{k}", f"user-{u:07d}", "v1", None
                )
                for k in range(ROAMING)
            )
        )
    for u in range(300):
        await store.heartbeat(f"doc-{u % 400:07d}", f"o{u}", f"other-{u}", "v1", None)
    await asyncio.sleep(0.5)  # the heartbeats age past QUIET_MS, as the bench's seeded ones
    for u in range(USERS):
        for _ in range(3):
            await store.where_now.read(f"user-{u:07d}")


async def _open(url: str, root: Path) -> tuple[RedisConnection, PresenceStore]:
    settings = Settings(
        redis_url=url, data_dir=root / "data", jwt_secret="x" * 40, online_timeout_s=600.0
    )
    # callgrind slows Redis some 50 times: deadlines far beyond a request's
    conn = connect(settings, pipelined=True, deadline_s=60.0, timeout_s=60.0)
    await conn.load_scripts()
    return conn, PresenceStore(conn, settings)


def _start_callgrind() -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server under callgrind (instrumentation off), as the embedded one."""
    tmp = tempfile.mkdtemp(prefix="where-now-cg-")
    sock = f"{tmp}/redis.sock"
    config = [arg for k, v in CONFIG.items() for arg in (f"--{k}", v)]
    server = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={tmp}/cg.%p",
            redis_server_binary(),
            *("--port", "0", "--unixsocket", sock, "--dir", tmp, *config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    return server, tmp


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


def _last_dump_total(pid: int, tmp: str) -> int:
    dump = max(glob.glob(f"{tmp}/cg.{pid}.*"), key=lambda p: int(p.rsplit(".")[-1]))
    with open(dump) as lines:
        return next(int(x.split()[1]) for x in lines if x.startswith(("summary:", "totals:")))


async def _instructions(pid: int, tmp: str, repeats: int) -> list[int]:
    conn, store = await _open(f"unix://{tmp}/redis.sock", Path(tmp))
    await _seed(store)
    per_read: list[int] = []
    for _ in range(repeats):
        await conn.client.ping()
        _control(pid, "-z")
        _control(pid, "-i", "on")
        await asyncio.gather(
            *(store.where_now.read(f"user-{u % USERS:07d}") for u in range(AT_ONCE))
        )
        _control(pid, "-d")
        _control(pid, "-i", "off")
        per_read.append(round(_last_dump_total(pid, tmp) / AT_ONCE))
    await conn.aclose()
    return per_read


def _cpu(sync: Redis) -> float:
    info: dict[str, Any] = sync.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def _cpu_per_read(reads: int) -> list[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="where-now-cpu-"))
    server = EmbeddedRedis(root / "redis")
    url = server.start()
    rows: list[dict[str, Any]] = []
    try:
        conn, store = await _open(url, root)
        await _seed(store)
        rng = random.Random(1)

        async def reader(n: int) -> None:
            for _ in range(n):
                await store.where_now.read(f"user-{rng.randrange(USERS):07d}")

        with Redis.from_url(url) as sync:
            for _ in range(2):
                sync.config_resetstat()
                redis_before, started = _cpu(sync), time.process_time()
                await asyncio.gather(*(reader(reads // AT_ONCE) for _ in range(AT_ONCE)))
                done = AT_ONCE * (reads // AT_ONCE)
                python, redis_cpu = time.process_time() - started, _cpu(sync) - redis_before
                stats: dict[str, Any] = sync.info("commandstats")
                calls = {
                    name.removeprefix("cmdstat_"): round(v["calls"] / done, 2)
                    for name, v in stats.items()
                    if name not in ("cmdstat_info", "cmdstat_config")
                }
                rows.append(
                    {
                        "python_us": round(1e6 * python / done, 1),
                        "redis_cpu_us": round(1e6 * redis_cpu / done, 1),
                        "calls": calls,
                    }
                )
        await conn.aclose()
    finally:
        server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu-reads", type=int, default=6400)
    opts = parser.parse_args()
    server, tmp = _start_callgrind()
    try:
        counted = asyncio.run(_instructions(server.pid, tmp, opts.repeats))
    finally:
        server.terminate()
        server.wait()
    print(json.dumps({"redis_instructions_per_read": counted}), flush=True)
    for row in asyncio.run(_cpu_per_read(opts.cpu_reads)):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
