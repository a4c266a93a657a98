"""A real PostgreSQL server for the suite: the benchmarks' server
(``presence_svc.bench.pgserver``: ``initdb`` and ``pg_ctl`` into a temporary directory, on
a free loopback port, trust auth, no docker), with the suite's settings.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import tempfile
from pathlib import Path

from presence_svc.bench import pgserver
from presence_svc.bench.pgserver import postgres_bin
from tests.ports import free_port

__all__ = ["PostgresServer", "postgres_bin"]

_pristine: Path | None = None
"""A copy of the first cluster this process made, before its first start: each later
server starts from a copy of it (``initdb`` costs ~2.5 s of CPU, a copy ~0.1 s)."""


_keepers: list[subprocess.Popen[bytes]] = []
"""The pristine copy's watchdog (held: it runs until this process ends)."""


class PostgresServer(pgserver.PostgresServer):
    """``durable``: a commit survives ``stop("immediate")`` (a crash of the server, not of
    the machine), as the exactly-once tests need; else commits return before their WAL is
    written, which is faster and loses the last ~200 ms of commits in such a crash. Either
    way fsync and full-page writes are off, with 64 MB of shared buffers."""

    def __init__(self, *, durable: bool = False) -> None:
        super().__init__(
            fsync=False,
            synchronous_commit=durable,
            full_page_writes=False,
            shared_buffers="64MB",
            max_wal_size=None,
            prefix="presence-pg-",
            timeout_s=120,
        )
        self.durable = durable
        self.port = free_port()  # this worker's own (tests/ports.py), not any bind(0) port

    def init(self) -> None:
        global _pristine
        if _pristine is not None:
            self._run("cp", "-a", str(_pristine), str(self.data))
            return
        super().init()
        keep = Path(tempfile.mkdtemp(prefix="presence-pg-pristine-"))
        _keepers.append(pgserver.watchdog(keep, []))  # removes it when this process ends
        if os.geteuid() == 0:  # the server's files belong to the postgres user (pgserver)
            user = pwd.getpwnam("postgres")
            os.chown(keep, user.pw_uid, user.pw_gid)
        self._run("cp", "-a", str(self.data), str(keep / "data"))
        _pristine = keep / "data"
