"""What the heartbeat script's fast path costs inside Redis, per call, for two checkouts (and,
on the second, for invisible users), from ``INFO commandstats``: less sensitive to a busy
machine than requests per second, since it counts only Redis's own time in the script.

    .venv/bin/python benchmarks/heartbeat_flags.py --base /path/to/main-checkout [--rounds 5]

Starts a private redis-server (``--redis-server``, default the one on PATH), stores 1 000
sessions on 100 artifacts with each checkout's ``lua/live/heartbeat.lua``, then sends 20 000
refreshing heartbeats (nothing new: the fast path) and reads ``usec_per_call`` of EVALSHA.
Rounds interleave base, head and head with every user hidden; prints each round and the
medians. ``--head`` defaults to this checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import redis

SESSIONS = 1000
ARTIFACTS = 100
REPEATS = 20


def scripts_of(root: Path) -> ModuleType:
    """``presence_svc.redis.scripts`` of the checkout at ``root`` (its lua/ files)."""
    sys.path.insert(0, str(root))
    try:
        for name in [m for m in sys.modules if m.startswith("presence_svc")]:
            del sys.modules[name]
        return importlib.import_module("presence_svc.redis.scripts")
    finally:
        sys.path.pop(0)


def one_round(r: redis.Redis, root: Path, hidden: bool) -> float:
    scripts = scripts_of(root)
    keys = importlib.import_module("presence_svc.redis.keys").Keyspace(16)
    script = scripts.HeartbeatScript()
    times = scripts.Lifetimes(600_000, 1_200_000, 600_000)
    flags = (False, True) if hidden else ()
    calls = []
    for u in range(SESSIONS):
        session = b"#" + hashlib.blake2b(f"tab-{u:08d}".encode(), digest_size=8).digest()
        artifact = keys.artifact(f"doc-{u % ARTIFACTS}")
        calls.append(script.call(artifact, times, session, f"user-{u}", "v1", b'{"p":1}', *flags))
    r.flushall()
    for c in calls:  # the joins (the full path), not measured
        r.execute_command("EVAL", script.source, len(c.keys), *c.keys, *c.args, *c.own)
    r.config_resetstat()
    for _ in range(REPEATS):
        pipe = r.pipeline(transaction=False)
        for c in calls:
            pipe.execute_command("EVALSHA", script.sha, len(c.keys), *c.keys, *c.args, *c.own)
        pipe.execute()
    return float(r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="a checkout to compare with")
    parser.add_argument("--head", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-server", default=shutil.which("redis-server"))
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [args.redis_server, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        r = redis.Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        found: dict[str, list[float]] = {"base": [], "head": [], "head hidden": []}
        for n in range(args.rounds):
            for name, root, hidden in (
                ("base", args.base, False),
                ("head", args.head, False),
                ("head hidden", args.head, True),
            ):
                found[name].append(one_round(r, root, hidden))
            print(n + 1, {k: v[-1] for k, v in found.items()}, flush=True)
        print(
            "median usec per fast-path heartbeat:",
            {k: statistics.median(v) for k, v in found.items()},
        )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
