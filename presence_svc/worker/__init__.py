"""Background chores: the presence sweeper and the ledger drain.

``presence-svc worker`` runs them as their own process; ``serve`` runs them in-process
(``worker_ctx``) when it owns an embedded Redis. Any number of workers may run at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from presence_svc.db import Database, open_database
from presence_svc.redis_client import connect
from presence_svc.resources import DATABASE, SCRIPTS, SETTINGS
from presence_svc.scripts import Scripts
from presence_svc.settings import Settings
from presence_svc.worker.ledger import LedgerDrain
from presence_svc.worker.sweeper import Sweeper

__all__ = ["Worker", "run_worker", "worker_ctx"]

log = logging.getLogger(__name__)


class Worker:
    """Every chore of one worker, run until ``stop``; each finishes its current batch."""

    def __init__(self, scripts: Scripts, database: Database, settings: Settings) -> None:
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.sweeper = Sweeper(scripts, settings, owner=self.id)
        self.drain = LedgerDrain(scripts, database, settings, consumer=self.id)
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
    client = connect(settings)
    database = open_database(settings.resolved_ledger_url)
    await database.open()
    worker = Worker(Scripts(client), database, settings)
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
        await client.aclose()


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """The worker inside ``serve``; stopped (after its current batch) at shutdown."""
    worker = Worker(app[SCRIPTS], app[DATABASE], app[SETTINGS])
    task = asyncio.create_task(worker.run(), name="worker")
    yield
    worker.stop()
    await task
