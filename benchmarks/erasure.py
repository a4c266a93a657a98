"""Erasing a user who viewed N artifacts: the whole erasure and each eraser's share.

    .venv/bin/python benchmarks/erasure.py [--artifacts 10000] [--ledger sqlite|postgres]
        [--partitions 64] [--rounds 1]

Starts a private redis-server (the embedded one, AOF on) in a temporary data dir, with the
ledger in a SQLite file there (or, with ``--ledger postgres``, on a private PostgreSQL
server, durable), then for each round
stores a user with a profile, a session with state, and one view of one version of each of
``--artifacts`` artifacts (another user views each artifact too), drains every view into
the ledger with the real drain, and erases the user as a worker does: one erasure job run
to its end. Prints one JSON line per round: the total time, each eraser's time and steps,
and the ledger rows tombstoned. Speed is never asserted (``tests/bench`` runs it tiny).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from presence_svc.bench.pgserver import PostgresServer, stop_on_sigterm
from presence_svc.database import open_database
from presence_svc.ledger.drain import LedgerDrain
from presence_svc.ledger.store import LedgerQuery
from presence_svc.live.store import PresenceStore
from presence_svc.privacy.erasure import Eraser, Erasers
from presence_svc.privacy.wiring import erasure_jobs
from presence_svc.redis.connection import connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings
from presence_svc.stats.views import ViewStore


class Timed:
    """An eraser, timed: seconds and steps spent in it."""

    def __init__(self, eraser: Eraser) -> None:
        self.inner = eraser
        self.name = eraser.name
        self.seconds = 0.0
        self.steps = 0

    async def erase_user(self, user_id: str, tombstone: str, cursor: str) -> str | None:
        started = time.perf_counter()
        try:
            return await self.inner.erase_user(user_id, tombstone, cursor)
        finally:
            self.seconds += time.perf_counter() - started
            self.steps += 1


async def one_round(settings: Settings, artifacts: int, user: str) -> dict[str, Any]:
    redis = connect(settings)
    await redis.load_scripts()
    database = open_database(settings.resolved_ledger_url)
    await database.open()
    try:
        views = ViewStore(redis, settings)
        presence = PresenceStore(redis, settings)
        await database.users.put_profile(user, "A Person To Erase", None)
        await presence.heartbeat("doc-0", "tab-erase-0001", user, None, b'{"cursor":42}')
        drain = LedgerDrain(redis, database.ledger, settings, consumer="bench")
        await drain.join()
        calls = []
        for i in range(artifacts):
            artifact = f"doc-{i:07d}"
            calls.append(views.note_call(user, artifact, "v1"))
            calls.append(views.record_call(artifact, "v1", user, "tab-erase-0001"))
            calls.append(views.record_call(artifact, "v1", f"{user}-other", None))
        for start in range(0, len(calls), 3000):
            for result in await redis.run_many(calls[start : start + 3000]):
                if isinstance(result, Exception):
                    raise result
        while await drain.drain_once():
            pass
        jobs = erasure_jobs(redis, database, settings, presence)
        timed = [Timed(e) for e in jobs.erasers]
        jobs.erasers = Erasers(list(timed))
        started = time.perf_counter()
        opened = await jobs.open(user)
        complete = await jobs.run(opened.erasure_id)
        total = time.perf_counter() - started
        rows = [
            r async for r in database.ledger.iter_views(LedgerQuery()) if r.user_id.startswith("~")
        ]
        return {
            "artifacts": artifacts,
            "complete": complete,
            "total_s": round(total, 3),
            "erasers": {t.name: {"s": round(t.seconds, 3), "steps": t.steps} for t in timed},
            "ledger_rows_tombstoned": len(rows),
            "ledger": database.kind,
            "partitions": settings.partitions,
            "redis_version": (await redis.client.info("server"))["redis_version"],
        }
    finally:
        await database.close()
        await redis.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=int, default=10_000)
    parser.add_argument("--ledger", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="erasure-"))) / "d"
        url = stack.enter_context(EmbeddedRedis(data).running())
        ledger_url = None
        if args.ledger == "postgres":
            stop_on_sigterm()
            ledger_url = stack.enter_context(PostgresServer()).create_database("erasure")
        settings = Settings(
            redis_url=url,
            data_dir=data,
            ledger_url=ledger_url,
            partitions=args.partitions,
            jwt_secret="b" * 32,
        )
        for n in range(args.rounds):
            print(json.dumps(await one_round(settings, args.artifacts, f"user-{n:04d}")))


if __name__ == "__main__":
    asyncio.run(main())
