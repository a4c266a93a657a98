"""Engaged time (issue 14), counted not timed: instructions redis-server runs per call of a
plain heartbeat and of a heartbeat with ``engagedMs`` (the accumulator's hot path, the fold
far off), under valgrind's callgrind, which the machine's load cannot change.

    .venv/bin/python benchmarks/engaged_instructions.py [--users 300] [--repeats 4]

Starts a private redis-server under callgrind (instrumentation off), configured as the
embedded one (append-only, everysec), records a view of v1 for each user, joins each
user's session and starts its accumulator; then, alternating, switches instrumentation on
around one pipelined call per user of one kind and reads the dump's total. Prints the
minimum per call of each kind and their difference. Needs ``valgrind`` (callgrind_control).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import tempfile
import time

import msgspec
import redis

from presence_svc.live.store import pack_session_id
from presence_svc.redis.embedded import CONFIG, redis_server_binary
from presence_svc.redis.keys import Keyspace
from presence_svc.redis.scripts import Lifetimes, ScriptCall, Scripts, lua_source
from presence_svc.settings import Settings
from presence_svc.stats.engagement import EngagementRules


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=4)
    opts = parser.parse_args()
    users = opts.users
    tmp = tempfile.mkdtemp(prefix="engaged-cg-")
    sock = f"{tmp}/redis.sock"
    config = [arg for k, v in CONFIG.items() for arg in (f"--{k}", v)]
    valgrind = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={tmp}/cg.%p",
    ]
    redis_args = ["--port", "0", "--unixsocket", sock, "--dir", tmp, *config]
    server = subprocess.Popen(
        [*valgrind, redis_server_binary(), *redis_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        r = redis.Redis(unix_socket_path=sock)
        settings = Settings(online_timeout_s=600, retention_s=3600, engagement_fold_s=600)
        scripts, keys = Scripts(), Keyspace(settings.partitions)
        times, rules = Lifetimes.of(settings), EngagementRules(settings)
        for script in (scripts.heartbeat, scripts.heartbeat_engaged):
            r.execute_command("SCRIPT", "LOAD", lua_source(script.PATH))
        now = int(time.time() * 1000)
        artifacts = [f"doc-{i % 30:07d}" for i in range(users)]
        for i, artifact in enumerate(artifacts):
            viewers = f"{Keyspace.views_prefix(keys.tag_of(artifact))}vu:{artifact}/v1"
            r.hset(viewers, f"u{i}", msgspec.msgpack.encode([1, now, now, 0]))

        def call(i: int, ms: int) -> ScriptCall:
            k, sid, state = keys.artifact(artifacts[i]), pack_session_id(f"s{i}"), b'{"p":1}'
            user = f"u{i}"
            if ms:
                engaged = rules.engagement(ms)
                assert engaged is not None
                heartbeat = scripts.heartbeat_engaged
                return heartbeat.call_engaged(k, times, sid, user, "v1", state, False, engaged)
            return scripts.heartbeat.call(k, times, sid, user, "v1", state)

        def run(ms: int) -> None:
            pipe = r.pipeline(transaction=False)
            for i in range(users):
                c = call(i, ms)
                pipe.execute_command("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
            for answer in pipe.execute(raise_on_error=True):
                assert isinstance(answer, list), answer
                assert answer[0] >= 0, answer

        run(0)
        run(1_000)  # the accumulators start (from the views)
        time.sleep(0.01)
        run(1_000)
        found: dict[int, list[float]] = {0: [], 15_000: []}
        for repeat in range(opts.repeats):
            for ms in (0, 15_000) if repeat % 2 == 0 else (15_000, 0):
                _control(server.pid, "-i", "on")
                run(ms)
                _control(server.pid, "-i", "off")
                before = set(glob.glob(f"{tmp}/cg.*"))
                _control(server.pid, "-d")
                _control(server.pid, "-z")
                dump = max(set(glob.glob(f"{tmp}/cg.*")) - before, key=os.path.getmtime)
                with open(dump) as lines:
                    total = [int(x.split()[1]) for x in lines if x.startswith("totals:")]
                found[ms].append(total[-1] / users)
        plain, engaged = min(found[0]), min(found[15_000])
        print(f"instructions per call: plain {plain:.0f}, engaged {engaged:.0f}, ", end="")
        print(f"engaged over plain {engaged - plain:+.0f}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
