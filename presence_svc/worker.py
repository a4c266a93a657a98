"""Background chores: the presence sweeper, the ledger drain, the ledger's upkeep, the
timeline's hourly rollup, the engaged-time flush, erasures and the webhook dispatcher.

``presence-svc worker`` runs them as their own process; ``serve`` runs them in-process
when it owns an embedded Redis. Any number of workers may run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import IO

from presence_svc.database import Database, database_for
from presence_svc.ledger.drain import LedgerDrain
from presence_svc.ledger.engagement_flush import EngagementFlush
from presence_svc.ledger.store import LedgerStore
from presence_svc.live.sweeper import Sweeper
from presence_svc.privacy.wiring import erasure_jobs
from presence_svc.redis.connection import RedisConnection, connect
from presence_svc.settings import Settings
from presence_svc.stats.engagement_fold import EngagementFold
from presence_svc.timeline.rollup import TimelineRollup
from presence_svc.timeline.store import timeline_store
from presence_svc.webhooks.dispatcher import WebhookDispatcher

__all__ = [
    "UPKEEP_INTERVAL_S",
    "UPKEEP_RETRY_S",
    "LedgerUpkeep",
    "Worker",
    "WorkerIdentity",
    "run_worker",
]

log = logging.getLogger(__name__)

UPKEEP_INTERVAL_S = 3600.0
"""Between two rounds of ledger upkeep: partitions are made two months ahead, and
retention counts in days, so once an hour is plenty."""
UPKEEP_RETRY_S = 60.0
"""After a round that failed (the database down): soon, not an hour later."""


class LedgerUpkeep:
    """The ledger's storage chores (``LedgerStore.upkeep``) at start and then every
    ``UPKEEP_INTERVAL_S``; a failed round is logged and retried, never fatal, so a
    database that is down does not stop the sweeper or the drain."""

    def __init__(self, ledger: LedgerStore, retention_days: int | None) -> None:
        self.ledger = ledger
        self.retention_days = retention_days

    async def run_once(self) -> bool:
        """One round now; False if it failed (logged)."""
        try:
            await self.ledger.upkeep(int(time.time() * 1000), self.retention_days)
        except Exception as exc:
            log.warning("ledger upkeep failed, will retry", extra={"error": repr(exc)})
            return False
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            wait = UPKEEP_INTERVAL_S if await self.run_once() else UPKEEP_RETRY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), wait)


class WorkerIdentity:
    """A worker's name, the same for each incarnation on one host and data dir, so a
    restarted worker finds what its predecessor read and did not acknowledge (its pending
    entries, under its consumer name) and resumes it at once, instead of after the reclaim
    idle time that guards against taking a live worker's entries.

    Workers alive at once on one host and data dir hold different slots: each holds an
    exclusive lock on ``worker-<slot>.lock`` in the data dir, which the kernel releases
    when the process dies (SIGKILL included), so the next worker started takes it again.
    Without a usable data dir the name is a fresh one (then only the reclaim resumes).

    The name holds the host name, which a container recreated on the same data dir (a
    volume) does not keep: each slot's lock file records the name that last held it, and
    a different one is this worker's ``predecessor``, dead since its lock was let go,
    whose unfinished work this worker takes over at once too.
    """

    def __init__(self, data_dir: Path) -> None:
        self._lock: IO[bytes] | None = None
        self.predecessor: str | None = None
        self.name = self._claim(data_dir)

    def _claim(self, data_dir: Path) -> str:
        host = socket.gethostname()
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            where = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:8]
            for slot in range(1024):
                lock = (data_dir / f"worker-{slot}.lock").open("a+b")
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    lock.close()
                    continue
                self._lock = lock
                name = f"{host}:{where}:{slot}"
                lock.seek(0)
                previous = lock.read(512).decode(errors="replace").strip()
                if previous and previous != name:
                    self.predecessor = previous
                    lock.truncate(0)
                if previous != name:
                    lock.write(name.encode())
                    lock.flush()
                return name
        except OSError as exc:
            log.warning("no stable worker name: data dir unusable", extra={"error": repr(exc)})
        return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing drops the lock
            self._lock = None


class Worker:
    """Every chore of one worker, run until ``stop``; each finishes its current batch."""

    def __init__(self, redis: RedisConnection, database: Database, settings: Settings) -> None:
        self.identity = WorkerIdentity(settings.data_dir)
        self.id = self.identity.name
        self.sweeper = Sweeper(redis, settings, owner=self.id)
        predecessor = self.identity.predecessor
        self.drain = LedgerDrain(
            redis, database.ledger, settings, consumer=self.id, predecessor=predecessor
        )
        self.upkeep = LedgerUpkeep(database.ledger, settings.ledger_retention_days)
        self.timeline = TimelineRollup(redis, timeline_store(database.connection), settings)
        self.engagement = EngagementFlush(redis, database.engagement, settings)
        self.engagement_fold = EngagementFold(redis, settings)
        self.erasures = erasure_jobs(redis, database, settings)
        self.webhooks = WebhookDispatcher(redis, database.webhooks, settings, owner=self.id)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        log.info("worker started", extra={"worker_id": self.id})
        try:
            await asyncio.gather(
                self.sweeper.run(self._stopping),
                self.drain.run(self._stopping),
                self.upkeep.run(self._stopping),
                self.timeline.run(self._stopping),
                self.engagement_fold.run(self._stopping),
                self.engagement.run(self._stopping),
                self.erasures.serve(self._stopping),
                self.webhooks.run(self._stopping),
            )
        finally:
            self.identity.release()
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
