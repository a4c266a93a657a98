"""A real PostgreSQL server for the suite: the benchmarks' server
(``presence_svc.bench.pgserver``: ``initdb`` and ``pg_ctl`` into a temporary directory, on
a free loopback port, trust auth, no docker), with the suite's settings.
"""

from __future__ import annotations

from presence_svc.bench import pgserver
from presence_svc.bench.pgserver import postgres_bin

__all__ = ["PostgresServer", "postgres_bin"]


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
