"""The whole service SIGKILLed with views read by its worker and not yet written: started
again on the same data dir, its worker takes them back at once (they are pending under
its own, stable name), not after the reclaim idle time that guards another host's
worker's entries (ten minutes here, so only the resume can pass). Also when it comes back
under another host name, as a container recreated on the same data dir (a volume) does."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
import redis

from presence_svc.auth import TokenCodec, read_secret
from presence_svc.ledger.drain import GROUP
from presence_svc.redis.keys import Keyspace
from tests.children import dies_with_us
from tests.cli.test_cli import CLI, _env, _wait_ready
from tests.conftest import free_port
from tests.ledger.test_ledger import View, _sqlite_rows, write_lock

RECLAIM_IDLE_S = 600
"""Far above the catch-up bound below: an idle reclaim cannot be what completes the ledger."""
CAUGHT_UP_S = 30
"""The bound on the catch-up after the restart (the issue's target is 5 s; measured on a
quiet machine in benchmarks/README.md). Not a speed test: generous for a loaded CI machine
(a service start and the drain's first rounds), and still a twentieth of the reclaim idle
time, so passing proves the resume took the views back, not the reclaim."""
PARTITIONS = 16
"""The service's partitions, set: the test reads its views streams (one per partition)."""


class _Serve:
    """``presence-svc serve`` on ``data``, its log in a file (a pipe nobody reads fills)."""

    def __init__(self, data: Path, log: Path, hostname: str | None = None) -> None:
        self.data_dir = data
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log.open("ab")
        command = [CLI, "serve", "--port", str(self.port)]
        if hostname is not None:  # its own UTS namespace: a host name of its own
            command = [
                "unshare",
                "--uts",
                "sh",
                "-c",
                'hostname "$0" && exec "$@"',
                hostname,
                *command,
            ]
        self.process = subprocess.Popen(
            command,
            env=_env(
                data,
                PRESENCE_LEDGER_RECLAIM_IDLE_S=str(RECLAIM_IDLE_S),
                PRESENCE_PARTITIONS=str(PARTITIONS),
            ),
            stdout=self.log,
            stderr=self.log,
            preexec_fn=dies_with_us(),
        )

    def kill_all(self) -> None:
        """SIGKILL the service and its Redis: nothing gets to clean up."""
        redis_pid = int((self.data_dir / "redis.pid").read_text())
        self.process.kill()
        os.kill(redis_pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(20)
        self.log.close()


def _pending(r: redis.Redis) -> int:
    keys = Keyspace(PARTITIONS)
    return sum(int(r.xpending(keys.views_stream(t), GROUP)["pending"]) for t in keys.tags)


def _consumers(r: redis.Redis) -> set[str]:
    """The hosts of the ledger group's consumers (names are host:data dir:slot)."""
    keys = Keyspace(PARTITIONS)
    return {
        c["name"].decode().split(":", 1)[0]
        for t in keys.tags
        for c in r.xinfo_consumers(keys.views_stream(t), GROUP)
    }


async def _until(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("hostname", [None, "recreated-container"], ids=["same-host", "renamed"])
async def test_a_restarted_service_writes_what_its_killed_worker_held_at_once(
    tmp_path: Path, hostname: str | None
) -> None:
    data = tmp_path / "data"
    ledger = data / "ledger.sqlite3"
    first = _Serve(data, tmp_path / "serve.log")
    second: _Serve | None = None
    try:
        await _wait_ready(first)  # type: ignore[arg-type]
        tokens = TokenCodec(read_secret(data))
        r = redis.Redis(unix_socket_path=str(data / "redis.sock"))
        r.config_set("appendfsync", "always")  # what was answered is on disk at the kill
        counted: list[View] = []
        async with aiohttp.ClientSession() as http:

            async def view(n: int) -> None:
                view = (f"doc-{n % 5}", f"v{n % 2}", f"user-{n}")
                headers = {"Authorization": f"Bearer {tokens.issue(view[2])}"}
                body = {"artifactId": view[0], "versionId": view[1]}
                async with http.post(f"{first.base}/v1/views", json=body, headers=headers) as a:
                    if a.status == 200 and (await a.json())["counted"]:
                        counted.append(view)

            # The worker's drain is under way (a first view in the ledger) before the
            # ledger is locked: on a loaded machine its start-up could otherwise come after
            # the lock and wait on it, reading nothing.
            await view(60)
            await _until(lambda: len(_sqlite_rows(ledger)) == 1, 30, "the first view written")
            async with write_lock(f"sqlite:///{ledger}"):
                # The worker reads these and cannot commit them: the ledger is locked.
                await asyncio.gather(*(view(n) for n in range(60)))
                await _until(lambda: _pending(r) > 0, 20, "the worker never read a batch")
                first.kill_all()
        assert len(counted) == 61
        held = _sqlite_rows(ledger)
        assert len(held) < len(counted)  # the test means something: views were in flight

        restarted = time.monotonic()
        second = _Serve(data, tmp_path / "serve.log", hostname)
        await _until(
            lambda: sorted(_sqlite_rows(ledger)) == sorted(counted),
            CAUGHT_UP_S,
            f"the ledger did not catch up within {CAUGHT_UP_S} s of the restart: the "
            "restarted worker did not resume its predecessor's pending views",
        )
        caught_up_s = time.monotonic() - restarted
        assert caught_up_s < CAUGHT_UP_S < RECLAIM_IDLE_S / 10
        print(f"ledger complete {caught_up_s:.2f} s after the restart")  # pytest -s: the figure
        # (logged once the resume ends, which may be just after the rows are in)
        log_file = tmp_path / "serve.log"
        await _until(lambda: "resumed own pending views" in log_file.read_text(), 10, "no resume")
        log = log_file.read_text()
        if hostname is not None:
            assert "adopted a dead predecessor's pending views" in log
            assert _consumers(r) == {hostname}  # the dead one is gone from the group
    finally:
        first.stop()
        if second is not None:
            second.stop()
