"""A private PostgreSQL server, for the benchmarks (as they start their own Redis) and for
the test suite (``tests/postgres.py`` gives it the suite's settings).

``initdb`` and ``pg_ctl`` into a temporary directory, trust auth, a free loopback port; the
binaries from PATH or Debian's ``/usr/lib/postgresql/<version>/bin``
(``scripts/test-deps.sh`` installs Debian's ``postgresql`` where they are missing). Under
root it runs as the ``postgres`` user (the server refuses root).

A server must not outlive the process that started it when that process dies without
running its cleanup (SIGKILL, a pytest run killed by a CI timeout, an out-of-memory kill).
The postmaster is started directly (not daemonized by ``pg_ctl start``), in a session of
its own, with a parent-death signal (SIGQUIT: an immediate shutdown) armed between fork and
exec: it goes with its starter at any moment, while still starting too (``pg_ctl start``
left a gap there: a starter killed before ``postmaster.pid`` existed left its watchdog
nothing to stop). A small watchdog process (``_WATCHDOG``) waits for the starter to end,
however it ends, and then stops the server (``immediate``, should it still run) and
removes its directory; ``remove()`` ends the watchdog first, as the cleanup has done its
job.

The defaults are the benchmarks': durable (fsync and synchronous_commit on, the server's
defaults), and, the same for every figure, 512 MB of shared buffers and max_wal_size 4 GB
(a bulk load of millions of rows would otherwise checkpoint every few seconds). With
fsync and synchronous_commit off (the suite runs that way), for a second figure.

Nothing in the service imports this module; it imports nothing of the service.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "postgres_bin", "stop_on_sigterm", "watchdog"]


def postgres_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    for folder in versions:
        if (folder / name).is_file():
            return str(folder / name)
    raise RuntimeError(
        f"no PostgreSQL {name!r} on PATH or in /usr/lib/postgresql: "
        "run scripts/test-deps.sh (it installs Debian's postgresql)"
    )


def stop_on_sigterm() -> None:
    """SIGTERM exits through ``finally`` blocks and ``with`` exits (the server is stopped
    and its directory removed) instead of leaving the server running."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


_WATCHDOG = """
import os, select, shutil, subprocess, sys
owner, root, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
try:
    gone = os.pidfd_open(owner)
except OSError:  # ended already
    gone = None
# The pid may have been reused if the owner ended before pidfd_open: it is still ours
# only while it is our parent (a dead parent's orphans are reparented).
if gone is not None and os.getppid() == owner:
    select.select([gone], [], [])  # readable once the owner has ended
if stop:
    subprocess.run(stop, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
shutil.rmtree(root, ignore_errors=True)
"""
"""Run as ``python -c _WATCHDOG <owner pid> <root> <stop command...>``: stdlib only, so it
starts in a few milliseconds and needs nothing of the caller's environment."""


def watchdog(root: Path, stop: list[str]) -> subprocess.Popen[bytes]:
    """A process that, once this one has ended (however), runs ``stop`` (if any) and
    removes ``root``; kill it to call that off. In a session of its own: a Ctrl-C or a
    signal to this process's group does not end it before it has done its job."""
    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(os.getpid()), str(root), *stop],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


START_TIMEOUT_S = 60.0
"""How long a start may take (``pg_ctl start``'s ``-t``): crash recovery included."""
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _dies_with(starter: int) -> Callable[[], None]:
    """For ``preexec_fn``: the postmaster gets SIGQUIT (immediate shutdown: it ends its
    backends too) when the thread that started it ends, and exits at once if its starter
    ended before it could ask. Armed after ``Popen`` switched to the postgres user (a
    change of user would clear it), kept through exec."""

    # resolved here, in the parent: dlopen() in the child of a threaded parent (the
    # suite's executors) can deadlock on a loader lock another thread held at fork
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:  # in the child, between fork and exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT, 0, 0, 0)
        if os.getppid() != starter:
            os._exit(1)

    return arm


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """``with PostgresServer() as pg: pg.url()`` (initdb, start; stop and remove after), or
    ``init()``, ``start()``, ``stop()``, ``remove()`` one by one.

    ``fsync`` and ``synchronous_commit`` off: commits return before their WAL is written
    (faster; a crash of the server loses the last ~200 ms of commits). ``fsync`` off alone
    keeps every commit through a crash of the server (``stop("immediate")``), not of the
    machine. ``full_page_writes`` off: likewise safe only while the machine stays up.
    ``max_wal_size`` None: the server's default. ``timeout_s``: for each ``initdb``,
    ``pg_ctl`` and ``psql`` call."""

    def __init__(
        self,
        *,
        fsync: bool = True,
        synchronous_commit: bool = True,
        full_page_writes: bool = True,
        shared_buffers: str = "512MB",
        max_wal_size: str | None = "4GB",
        prefix: str = "presence-pgbench-",
        timeout_s: float = 300,
    ) -> None:
        self._given: list[str] = []
        """The server settings on its command line (``-c``), beyond where it listens."""
        if not fsync:
            self._given.append("fsync=off")
        if not synchronous_commit:
            self._given.append("synchronous_commit=off")
        if not full_page_writes:
            self._given.append("full_page_writes=off")
        self._given += ["max_connections=300", f"shared_buffers={shared_buffers}"]
        if max_wal_size is not None:
            self._given.append(f"max_wal_size={max_wal_size}")
        self.timeout_s = timeout_s
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_user: list[str] = []
        self._uid: dict[str, Any] = {}
        """``Popen``'s ``user``/``group`` for the postmaster (under root: postgres)."""
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._postmaster: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
            self._uid = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def __enter__(self) -> PostgresServer:
        try:
            self.init()
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.remove()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def version(self) -> str:
        return self._run(postgres_bin("postgres"), "--version").stdout.strip()

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_user, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=self.timeout_s,
        )

    def init(self) -> None:
        self._run(
            postgres_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",  # the cluster's first files; the server fsyncs what it writes later
        )

    def start(self) -> None:
        """The postmaster, as this process's child (see the module's docstring), once it
        accepts connections (within ``START_TIMEOUT_S``, recovery included)."""
        self._watch()
        argv = [postgres_bin("postgres"), "-D", str(self.data), "-p", str(self.port)]
        argv += ["-c", "listen_addresses=127.0.0.1", "-k", str(self.root)]
        for setting in self._given:
            argv += ["-c", setting]
        with open(self.root / "server.log", "ab") as log:
            postmaster = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C to this process's group is not for it
                preexec_fn=_dies_with(os.getpid()),
                **self._uid,
            )
        self._postmaster = postmaster
        try:
            self._wait_ready(postmaster)
        except BaseException:
            postmaster.send_signal(signal.SIGQUIT)
            postmaster.wait(30)
            raise

    def _wait_ready(self, postmaster: subprocess.Popen[bytes]) -> None:
        """As ``pg_ctl start -w``: until ``postmaster.pid`` names this postmaster and
        says ``ready``."""
        deadline = time.monotonic() + START_TIMEOUT_S
        pid_file = self.data / "postmaster.pid"
        while True:
            if postmaster.poll() is not None:
                log = (self.root / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres ended ({postmaster.returncode}) starting: {log}")
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                lines = []
            ours = len(lines) >= 8 and lines[0].strip() == str(postmaster.pid)
            if ours and lines[7].strip() == "ready":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres was not ready within {START_TIMEOUT_S:g} s")
            time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: no checkpoint, recovery on the next start."""
        self._run(
            postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False
        )
        postmaster, self._postmaster = self._postmaster, None
        if postmaster is not None:  # reaped (it has ended, or is ending: no zombie kept)
            with contextlib.suppress(subprocess.TimeoutExpired):
                postmaster.wait(30)

    def wait_gone(self, timeout_s: float = 10) -> None:
        """Until nothing listens on the server's port any more (or ``timeout_s`` passed)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)

    def _watch(self) -> None:
        """The watchdog, started before the server (a death during ``pg_ctl start`` is
        covered too); one for the server's lifetime, however often it is restarted."""
        if self._watchdog is None or self._watchdog.poll() is not None:
            pg_ctl = [*self._as_user, postgres_bin("pg_ctl"), "-D", str(self.data)]
            self._watchdog = watchdog(self.root, [*pg_ctl, "-m", "immediate", "-w", "stop"])

    def remove(self) -> None:
        dog, self._watchdog = self._watchdog, None
        if dog is not None:
            dog.kill()
            dog.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def settings(self) -> dict[str, str]:
        """The settings that decide the figures, as the running server reports them."""
        names = ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers")
        out = self.psql(
            "SELECT name || '=' || current_setting(name) FROM pg_settings "
            f"WHERE name IN ({', '.join(repr(n) for n in names)}) ORDER BY name"
        )
        return dict(line.split("=", 1) for line in out.splitlines())

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = self._run(
            postgres_bin("psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        )
        return out.stdout.strip()

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its URL."""
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)
