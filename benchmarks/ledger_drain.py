"""Ledger drain throughput against a raw SQLite insert of the same rows, in one run.

    .venv/bin/python benchmarks/ledger_drain.py [--views 50000]

Starts a private redis-server, records N views through record_view.lua (pipelined, as
many API processes would), drains them with the real LedgerDrain into a fresh SQLite
ledger, then inserts the same rows into another fresh file with one executemany: the
ceiling for this disk. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from prometheus_client import REGISTRY
from redis.asyncio import Redis

from presence_svc.db import LedgerQuery, SqliteDatabase
from presence_svc.embedded import EmbeddedRedis
from presence_svc.scripts import Scripts
from presence_svc.settings import Settings
from presence_svc.views import ViewStore
from presence_svc.worker.ledger import LedgerDrain


def _inserted() -> int:
    return int(
        REGISTRY.get_sample_value("presence_ledger_rows_total", {"outcome": "inserted"}) or 0
    )


async def main(views: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="drain-bench-"))
    server = EmbeddedRedis(workdir / "redis")
    settings = Settings(redis_url=server.start(), data_dir=workdir, jwt_secret="x" * 32)
    client = Redis.from_url(settings.redis_url or "")
    scripts = Scripts(client)
    try:
        started = time.perf_counter()
        store = ViewStore(scripts, settings)
        for start in range(0, views, 1000):
            calls = [
                store.record_call(f"doc-{i % 5000}", f"v{i % 3}", f"user-{i}", "tab-aaaa1")
                for i in range(start, min(views, start + 1000))
            ]
            await scripts.run_many(calls)
        record_s = time.perf_counter() - started

        ledger = SqliteDatabase(workdir / "ledger.sqlite3")
        await ledger.open()
        drain = LedgerDrain(scripts, ledger, settings, consumer="bench")
        await drain.join()
        stopping = asyncio.Event()
        started = time.perf_counter()
        running = asyncio.create_task(drain.run(stopping))  # the worker's own loop
        while (drained := _inserted()) < views:  # noqa: ASYNC110 - polls a counter
            await asyncio.sleep(0.005)
        drain_s = time.perf_counter() - started
        stopping.set()
        await running
        rows = [r async for r in ledger.iter_views(LedgerQuery())]
        await ledger.close()

        raw = sqlite3.connect(workdir / "raw.sqlite3", isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=NORMAL")
        from presence_svc.db.sqlite import MIGRATIONS

        for statement in filter(str.strip, MIGRATIONS[0].split(";")):
            raw.execute(statement)
        params = [
            (r.view_id, r.artifact_id, r.version_id, r.user_id, r.session_id, r.viewed_at_ms)
            for r in rows
        ]
        started = time.perf_counter()
        raw.execute("BEGIN")
        raw.executemany("INSERT INTO views VALUES (?, ?, ?, ?, ?, ?)", params)
        raw.execute("COMMIT")
        raw_s = time.perf_counter() - started
        raw.close()
        print(
            json.dumps(
                {
                    "views": views,
                    "drained": drained,
                    "ledger_rows": len(rows),
                    "record_views_per_s": round(views / record_s),
                    "drain_rows_per_s": round(drained / drain_s),
                    "raw_sqlite_rows_per_s": round(len(rows) / raw_s),
                    "drain_vs_raw_ratio": round((drained / drain_s) / (len(rows) / raw_s), 3),
                }
            )
        )
    finally:
        await client.aclose()
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--views", type=int, default=50_000)
    asyncio.run(main(parser.parse_args().views))
