"""Redis's own CPU per heartbeat script call (the fast path), by redis-server binary and by
how many calls share one read: ``INFO cpu`` deltas, which count Redis's CPU only (unlike
``usec_per_call``, wall time that a busy machine inflates).

    .venv/bin/python benchmarks/heartbeat_cpu.py [--redis-server PATH ...] [--batch N ...]
        [--sessions 10000] [--artifacts 1000] [--rounds 5] [--json]

Starts each redis-server on a unix socket (AOF on, ``everysec``, as the embedded Redis),
joins 10 000 sessions on 1 000 artifacts with this checkout's ``lua/live/heartbeat.lua``
(the calls the service sends: 10 KEYS, 14 ARGV), then refreshes them all (nothing new: the
fast path) ``--rounds`` times per binary and batch size, interleaved, and prints each
round's Redis CPU per call and the medians (``--json``: one object with the medians).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from presence_svc.live.store import pack_session_id
from presence_svc.redis.embedded import redis_server_binary
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.scripts import HeartbeatScript, Lifetimes


def _calls(script: HeartbeatScript, sessions: int, artifacts: int) -> list[bytes]:
    keys, times = Keyspace(16), Lifetimes(600_000, 3_600_000, 600_000)
    return [
        script.call(
            keys.artifact(f"doc-{n % artifacts:07d}"),
            times,
            pack_session_id(f"tab-{n:08d}"),
            f"user-{n:07d}",
            "v1",
            b'{"page":1}',
        ).resp()
        for n in range(sessions)
    ]


def _cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _round(r: redis.Redis, sock: Path, calls: list[bytes], batch: int) -> float:
    """Redis CPU (µs) per call, every call sent in batches of ``batch`` on one connection."""
    conn = redis.UnixDomainSocketConnection(path=str(sock))
    conn.connect()
    try:
        before = _cpu(r)
        for start in range(0, len(calls), batch):
            chunk = calls[start : start + batch]
            conn.send_packed_command([b"".join(chunk)], check_health=False)
            for _ in chunk:
                conn.read_response()
        return (_cpu(r) - before) / len(calls) * 1e6
    finally:
        conn.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-server", action="append", help="repeatable; default embedded")
    parser.add_argument("--batch", type=int, action="append", help="repeatable; default 32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--artifacts", type=int, default=1_000)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    binaries = args.redis_server or [redis_server_binary()]
    batches = args.batch or [32]
    script = HeartbeatScript()
    calls = _calls(script, args.sessions, args.artifacts)
    found: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="heartbeat-cpu-") as tmp:
        servers, clients = [], []
        try:
            for n, binary in enumerate(binaries):
                sock = Path(tmp) / f"r{n}.sock"
                argv = [binary, "--port", "0", "--unixsocket", str(sock), "--dir", tmp]
                argv += ["--dbfilename", f"r{n}.rdb", "--appendfilename", f"r{n}.aof"]
                argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
                servers.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
                while not sock.exists():
                    time.sleep(0.05)
                r = redis.Redis(unix_socket_path=str(sock))
                r.script_load(script.source)
                _round(r, sock, calls, 64)  # the joins (the full path), not counted
                clients.append((binary, sock, r))
            for n in range(args.rounds):
                for binary, sock, r in clients:
                    for batch in batches:
                        found.setdefault((binary, batch), []).append(_round(r, sock, calls, batch))
                if not args.json:
                    print(n + 1, {f"{b} x{k}": round(v[-1], 2) for (b, k), v in found.items()})
        finally:
            for server in servers:
                server.terminate()
                server.wait()
    medians = []
    for (binary, batch), values in found.items():
        version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        medians.append(
            {
                "redis_server": binary,
                "version": version.split()[2].removeprefix("v="),
                "malloc": version.split()[4].removeprefix("malloc="),
                "calls_per_read": batch,
                "redis_cpu_us_per_call": round(statistics.median(values), 2),
            }
        )
    if args.json:
        print(json.dumps({"sessions": args.sessions, "medians": medians}))
        return
    for m in medians:
        print(
            f"{m['redis_server']} ({m['version']}, {m['malloc']}), {m['calls_per_read']} calls "
            f"per read: median {m['redis_cpu_us_per_call']:.2f} µs Redis CPU per call"
        )


if __name__ == "__main__":
    main()
