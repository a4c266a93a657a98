"""The servers the suite starts die with the test process that started them, even when it
is SIGKILLed (a CI timeout, an out-of-memory kill: no fixture teardown runs). Each test
starts a pytest-like process that starts servers the suite's own way, kills it for real,
and waits for the servers to be gone."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import postgres
from tests.children import dies_with_us
from tests.postgres import PostgresServer

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.timeout(300)  # a process starting its servers on a loaded machine


def _alive(pid: int) -> bool:
    """Running (a zombie is not: it only waits for its new parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill_and_wait_gone(child: subprocess.Popen[str], pids: list[int]) -> None:
    """SIGKILL the pytest-like ``child``, then poll until none of ``pids`` runs."""
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    deadline = time.monotonic() + 60
    while running := [pid for pid in pids if _alive(pid)]:
        assert time.monotonic() < deadline, f"still running after their owner was killed: {running}"
        time.sleep(0.1)


@contextlib.contextmanager
def _started(
    code: str, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], list[int], dict[str, str]]]:
    """A Python process running ``code``, which prints a JSON line (``pids``: of the
    servers it started, and more) once it has started its servers, then sleeps; that
    process, those pids and the rest of the line. It is killed on the way out, whatever
    happened."""
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        # not this worker's ports (tests/ports.py): a block no worker uses
        env={k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"} | (env or {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=dies_with_us(),  # and so its servers, if this process dies first
    )
    assert child.stdout is not None
    assert child.stderr is not None
    with child, child.stdout, child.stderr:
        try:
            line = child.stdout.readline()  # the child's own deadlines bound this
            if not line:
                child.wait(30)
                pytest.fail(f"the child ended before it started its servers: {child.stderr.read()}")
            started = json.loads(line)
            pids = started.pop("pids")
            assert all(_alive(pid) for pid in pids)
            yield child, pids, started
        finally:
            child.kill()


_WITH_POSTGRES = """
import json, sys, time
from pathlib import Path
from tests import postgres
postgres._pristine = Path(sys.argv[1])  # the test's copy: no initdb of its own
server = postgres.PostgresServer()
server.init()
server.start()
postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
print(json.dumps({"pids": [postmaster], "root": str(server.root)}), flush=True)
time.sleep(600)
"""


def test_a_killed_test_process_takes_its_postgres_server_with_it(
    postgres_server: PostgresServer,
) -> None:
    assert postgres._pristine is not None  # the session's server made it
    with _started(_WITH_POSTGRES, str(postgres._pristine)) as (child, pids, started):
        root = Path(started["root"])
        _kill_and_wait_gone(child, pids)
    deadline = time.monotonic() + 30
    while root.exists():  # removed right after the server stopped
        assert time.monotonic() < deadline, f"{root} left behind"
        time.sleep(0.1)


_STARTING_POSTGRES = """
import json, sys, time
from pathlib import Path
from tests import postgres
postgres._pristine = Path(sys.argv[1])
server = postgres.PostgresServer()
server.init()
print(json.dumps({"pids": [], "root": str(server.root)}), flush=True)
server.start()  # never returns: the postmaster is slow to start (the fake below)
"""
_SLOW_POSTMASTER = """#!/bin/sh
case "$1" in -V|--version) exec {real} "$@";; esac  # pg_ctl asks which version it is
: > "{marks}/$$"
exec sleep 3600  # a startup that takes its time (recovery of a long WAL, a slow disk)
"""


def _slow_postgres_bin(folder: Path) -> tuple[Path, Path]:
    """A folder for PATH whose ``postgres`` is slow to start (it notes its pid in the
    second folder, then takes an hour), and ``pg_ctl`` (a copy: it runs the ``postgres``
    beside it)."""
    bin_dir, marks = folder / "bin", folder / "marks"
    bin_dir.mkdir()
    marks.mkdir()
    real = postgres.postgres_bin("postgres")
    fake = bin_dir / "postgres"
    fake.write_text(_SLOW_POSTMASTER.format(real=real, marks=marks))
    shutil.copy(postgres.postgres_bin("pg_ctl"), bin_dir / "pg_ctl")
    for path, mode in ((folder, 0o755), (bin_dir, 0o755), (fake, 0o755), (marks, 0o777)):
        path.chmod(mode)
    return bin_dir, marks


def test_a_test_process_killed_while_its_postgres_server_starts_takes_it_with_it(
    postgres_server: PostgresServer,
) -> None:
    """Killed before ``postmaster.pid`` exists, so there is no pid file for anyone to
    find: the starting postmaster goes all the same, and its directory is removed."""
    assert postgres._pristine is not None
    folder = Path(tempfile.mkdtemp(prefix="presence-slow-pg-"))
    try:
        bin_dir, marks = _slow_postgres_bin(folder)
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
        with _started(_STARTING_POSTGRES, str(postgres._pristine), env=env) as (child, _, out):
            root = Path(out["root"])
            deadline = time.monotonic() + 60
            while not (started := os.listdir(marks)):
                assert time.monotonic() < deadline, "the postmaster did not start"
                time.sleep(0.05)
            assert not (root / "data" / "postmaster.pid").exists()
            _kill_and_wait_gone(child, [int(started[0])])
        deadline = time.monotonic() + 30
        while root.exists():
            assert time.monotonic() < deadline, f"{root} left behind"
            time.sleep(0.1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_postgres_server_keeps_one_watchdog_across_restarts_and_ends_it_on_remove() -> None:
    server = PostgresServer()
    server.init()
    try:
        server.start()
        dog = server._watchdog
        assert dog is not None
        assert dog.poll() is None
        server.stop("immediate")
        server.start()
        assert server._watchdog is dog
        server.stop()
    finally:
        server.remove()
    assert dog.poll() is not None  # ended: it would stop nothing and remove nothing now
    assert not server.root.exists()


_WITH_REDIS = """
import json, sys, time
from pathlib import Path
from tests.cli.test_cli import Server
from tests.conftest import free_port
from tests.redis.test_cluster_failover import _start_node
from tests.redis.test_redis_refusals import _redis_process
from presence_svc.redis.embedded import redis_server_binary

base = Path(sys.argv[1])
plain = _redis_process(redis_server_binary(), base, free_port())
plain.__enter__()
node = _start_node(base, free_port())
service = Server(base / "service", free_port())
pidfile = base / "service" / "redis.pid"
deadline = time.monotonic() + 120
while not pidfile.exists() or not pidfile.read_text().strip():
    assert service.process.poll() is None, service.process.stderr.read()
    assert time.monotonic() < deadline, "the service's Redis did not start"
    time.sleep(0.05)
pids = [plain.process.pid, node.pid, service.process.pid, int(pidfile.read_text())]
print(json.dumps({"pids": pids}), flush=True)
time.sleep(600)
"""


def test_a_killed_test_process_takes_its_redis_servers_and_services_with_it(
    tmp_path: Path,
) -> None:
    """A redis-server of the refusal tests' and the cluster tests' helpers, and a
    ``presence-svc serve`` with its embedded Redis, as the CLI tests start them."""
    with _started(_WITH_REDIS, str(tmp_path)) as (child, pids, _):
        assert len(pids) == 4
        _kill_and_wait_gone(child, pids)
    assert os.listdir(tmp_path)  # the data stays; only the processes are gone
