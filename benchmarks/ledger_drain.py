"""The ledger drain: its rate against a raw SQLite insert, and view -> ledger latency.

    .venv/bin/python benchmarks/ledger_drain.py [--views 50000] [--rounds 3]
        [--rate 5000] [--seconds 10]

Starts a private redis-server, then measures two things in one run, printing a JSON line
for each:

``drain``: records N views through record_view.lua (pipelined, as many API processes
would), drains them with the real LedgerDrain into a fresh SQLite ledger, then inserts the
same rows into another fresh file with one executemany (the ceiling for this disk and
schema). Rounds alternate the two, so a noisy neighbour hurts both alike; the ratio reported
is the median of the rounds. Before each drain the benchmark's own objects are frozen out of
the GC (``gc.freeze()``), as ``presence-svc worker`` freezes its start-up objects.

``latency``: a separate process records views at ``--rate`` per second (paced in 10 ms
batches) while the drain runs here as it does in a worker; every committed row's latency is
commit time minus the view's Redis time. Reports p50/p99/max.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from presence_svc.db.migrations import migrations, statements
from presence_svc.db.sqlite import SqliteFile
from presence_svc.ledger.drain import LedgerDrain
from presence_svc.ledger.entry import LedgerRow
from presence_svc.ledger.sqlite import SqliteLedger
from presence_svc.ledger.store import LedgerQuery
from presence_svc.redis.connection import connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings
from presence_svc.stats.views import ViewStore


async def _record(settings: Settings, first: int, count: int, batch: int = 1000) -> None:
    redis = connect(settings)
    store = ViewStore(redis, settings)
    for start in range(first, first + count, batch):
        calls = [
            store.record_call(f"doc-{i % 5000}", f"v{i % 3}", f"user-{i}", "tab-aaaa1")
            for i in range(start, min(first + count, start + batch))
        ]
        await redis.run_many(calls)
    await redis.aclose()


class _BenchLedger(SqliteLedger):
    """The real SQLite ledger, counting rows as batches commit (no polling, which would take
    CPU from the drain) and noting each row's latency: commit time minus its Redis time."""

    def __init__(self, file: SqliteFile) -> None:
        super().__init__(file)
        self.inserted = 0
        self.target = 0
        self.reached = asyncio.Event()
        self.latencies_ms: list[float] = []

    async def insert_views(self, rows: Sequence[LedgerRow]) -> int:
        inserted = await super().insert_views(rows)
        committed_ms = time.time() * 1000
        self.latencies_ms.extend(committed_ms - row.viewed_at_ms for row in rows)
        self.inserted += inserted
        if self.inserted >= self.target:
            self.reached.set()
        return inserted


async def _drain_until(drain: LedgerDrain, ledger: _BenchLedger, target: int) -> float:
    """Run the worker's own loop until ``target`` rows are in the ledger."""
    # What this benchmark holds (rows, earlier rounds) is no part of a worker: keep it out
    # of the drain's GC passes, as a worker freezes its start-up objects.
    gc.collect()
    gc.freeze()
    ledger.target = target
    stopping = asyncio.Event()
    started = time.perf_counter()
    running = asyncio.create_task(drain.run(stopping))
    await ledger.reached.wait()
    elapsed = time.perf_counter() - started
    stopping.set()
    await running
    return elapsed


def _raw_insert(path: Path, rows: Sequence[LedgerRow]) -> float:
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    for statement in statements(migrations("sqlite")[0].sql):
        raw.execute(statement)
    started = time.perf_counter()
    raw.execute("BEGIN")
    raw.executemany("INSERT INTO views VALUES (?, ?, ?, ?, ?, ?)", rows)
    raw.execute("COMMIT")
    elapsed = time.perf_counter() - started
    raw.close()
    return elapsed


async def drain_rate(
    settings: Settings, workdir: Path, views: int, rounds: int
) -> dict[str, object]:
    record_rates, drain_rates, raw_rates = [], [], []
    for n in range(rounds):
        started = time.perf_counter()
        await _record(settings, n * views, views)
        record_rates.append(views / (time.perf_counter() - started))

        redis = connect(settings)
        file = SqliteFile(workdir / f"ledger-{n}.sqlite3")
        ledger = _BenchLedger(file)
        await file.open()
        drain = LedgerDrain(redis, ledger, settings, consumer=f"bench-{n}")
        await drain.join()
        drain_s = await _drain_until(drain, ledger, views)
        rows = [r async for r in ledger.iter_views(LedgerQuery())]
        await file.close()
        await redis.aclose()
        assert len(rows) == views, f"ledger holds {len(rows)} rows, expected {views}"
        drain_rates.append(views / drain_s)
        raw_rates.append(views / _raw_insert(workdir / f"raw-{n}.sqlite3", rows))
    ratios = [d / r for d, r in zip(drain_rates, raw_rates, strict=True)]
    return {
        "benchmark": "drain",
        "views": views,
        "rounds": rounds,
        "record_views_per_s": round(statistics.median(record_rates)),
        "drain_rows_per_s": round(statistics.median(drain_rates)),
        "raw_sqlite_rows_per_s": round(statistics.median(raw_rates)),
        "ratio": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
    }


def _produce(redis_url: str, partitions: int, rate: int, seconds: float) -> None:
    """Child process: record ``rate`` views per second for ``seconds``, 10 ms at a time."""
    settings = Settings(redis_url=redis_url, partitions=partitions, jwt_secret="x" * 32)

    async def run() -> None:
        redis = connect(settings)
        store = ViewStore(redis, settings)
        per_tick, tick_s, n = max(1, rate // 100), 0.01, 0
        started = time.perf_counter()
        for tick in range(int(seconds / tick_s)):
            calls = [
                store.record_call(f"doc-{i % 5000}", "v1", f"late-{i}", None)
                for i in range(n, n + per_tick)
            ]
            n += per_tick
            await redis.run_many(calls)
            await asyncio.sleep(max(0.0, started + (tick + 1) * tick_s - time.perf_counter()))
        await redis.aclose()

    asyncio.run(run())


async def view_to_ledger(
    settings: Settings, workdir: Path, rate: int, seconds: float
) -> dict[str, object]:
    redis = connect(settings)
    file = SqliteFile(workdir / "latency.sqlite3")
    ledger = _BenchLedger(file)
    await file.open()
    drain = LedgerDrain(redis, ledger, settings, consumer="latency")
    await drain.join()
    stopping = asyncio.Event()
    running = asyncio.create_task(drain.run(stopping))
    producer = multiprocessing.get_context("spawn").Process(
        target=_produce, args=(settings.redis_url, settings.partitions, rate, seconds)
    )
    producer.start()
    await asyncio.get_running_loop().run_in_executor(None, producer.join)
    await asyncio.sleep(1.0)  # let the tail drain
    stopping.set()
    await running
    await file.close()
    await redis.aclose()
    latencies = sorted(ledger.latencies_ms)
    if not latencies:
        raise SystemExit("no views reached the ledger")

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    return {
        "benchmark": "view_to_ledger",
        "rate": rate,
        "rows": len(latencies),
        "achieved_rate": round(len(latencies) / seconds),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1], 1),
    }


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="drain-bench-"))
    server = EmbeddedRedis(workdir / "redis")
    settings = Settings(redis_url=server.start(), data_dir=workdir, jwt_secret="x" * 32)
    try:
        print(json.dumps(await drain_rate(settings, workdir, args.views, args.rounds)), flush=True)
        if args.seconds > 0:
            result = await view_to_ledger(settings, workdir, args.rate, args.seconds)
            print(json.dumps(result), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--views", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=5_000, help="views per second (latency)")
    parser.add_argument("--seconds", type=float, default=10.0, help="0 skips the latency run")
    asyncio.run(main(parser.parse_args()))
