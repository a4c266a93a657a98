"""Background chores: the presence sweeper and the ledger drain.

``presence-svc worker`` runs them as their own process; ``serve`` runs them in-process
when it owns an embedded Redis. Any number of workers may run at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid

from presence_svc.database import Database, database_for
from presence_svc.ledger.drain import LedgerDrain
from presence_svc.live.sweeper import Sweeper
from presence_svc.redis.connection import RedisConnection, connect
from presence_svc.settings import Settings

__all__ = ["Worker", "run_worker"]

log = logging.getLogger(__name__)


class Worker:
    """Every chore of one worker, run until ``stop``; each finishes its current batch."""

    def __init__(self, redis: RedisConnection, database: Database, settings: Settings) -> None:
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.sweeper = Sweeper(redis, settings, owner=self.id)
        self.drain = LedgerDrain(redis, database.ledger, settings, consumer=self.id)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        log.info("worker started", extra={"worker_id": self.id})
        try:
            await asyncio.gather(self.sweeper.run(self._stopping), self.drain.run(self._stopping))
        finally:
            log.info("worker stopped", extra={"worker_id": self.id})


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """The ``presence-svc worker`` process: until SIGTERM or SIGINT, or until ``stop`` is
    set (then the caller owns the signals, as ``serve --processes`` does)."""
    redis = connect(settings)
    database = database_for(settings)
    await database.start()  # a database down now: the drain waits for it, the sweeper runs
    worker = Worker(redis, database, settings)
    loop = asyncio.get_running_loop()
    watcher = None
    if stop is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
    else:
        watcher = loop.create_task(stop.wait())
        watcher.add_done_callback(lambda _: worker.stop())
    try:
        await worker.run()
    finally:
        if watcher is not None:
            watcher.cancel()
        await database.close()
        await redis.aclose()
