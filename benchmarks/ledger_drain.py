"""The ledger drain: its rate against a raw insert of the same rows, and view -> ledger latency.

    .venv/bin/python benchmarks/ledger_drain.py [--ledger sqlite|postgres] [--views 50000]
        [--rounds 3] [--rate 5000] [--seconds 10] [--batches 100,1000,16000] [--no-fsync]

Starts a private redis-server (and, with ``--ledger postgres``, a private PostgreSQL server,
durable: fsync and synchronous_commit on; ``--no-fsync`` turns both off), then measures in
one run, printing a JSON line for each:

``drain``: records N views through record_view.lua (pipelined, as many API processes
would), drains them with the real LedgerDrain into a fresh ledger, then writes the same rows
into another fresh ledger of the same schema the fastest raw way there is: SQLite, one
executemany in one transaction; PostgreSQL, one COPY (asyncpg ``copy_records_to_table``) in
one transaction into the same partitioned ``views`` table (same months, same indexes) of a
fresh database. That is the ceiling for this disk and schema. Rounds alternate the two, so
a noisy neighbour hurts both alike; the ratio reported is the median of the rounds. Before
each drain the benchmark's own objects are frozen out of the GC (``gc.freeze()``), as
``presence-svc worker`` freezes its start-up objects. On PostgreSQL the months' partitions
are made first (``PostgresLedger.upkeep``, as the worker does), and a CHECKPOINT precedes
each timed part so that one part's WAL is not flushed in the next one's time.

``latency``: a separate process records views at ``--rate`` per second (paced in 10 ms
batches) while the drain runs here as it does in a worker; every committed row's latency is
commit time minus the view's Redis time. Reports p50/p99/max.

``insert`` (PostgreSQL only): batch-insert strategies, one transaction per batch, on the
drained rows, in batches of each ``--batches`` size into one table emptied before each pass
(TRUNCATE, CHECKPOINT), rotating which goes first: ``unnest`` (six arrays, one
``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING``), ``copy_temp`` (COPY into a
per-connection temporary table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``) and
``copy_direct`` (COPY straight into ``views``; a batch that meets a view id already stored
fails whole on the primary key and goes in again with unnest). Each strategy then writes
the same rows a second time, all duplicates, as after a redelivery.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import asyncpg

from presence_svc.bench.machine import machine
from presence_svc.bench.pgserver import PostgresServer, stop_on_sigterm
from presence_svc.db.migrations import migrations, statements
from presence_svc.db.postgres import PostgresPool, rows_affected
from presence_svc.db.sqlite import SqliteFile
from presence_svc.ledger.drain import LedgerDrain
from presence_svc.ledger.entry import LedgerRow
from presence_svc.ledger.postgres import PostgresLedger
from presence_svc.ledger.sqlite import SqliteLedger
from presence_svc.ledger.store import LedgerQuery, LedgerStore
from presence_svc.redis.connection import RedisConnection, connect
from presence_svc.redis.embedded import EmbeddedRedis
from presence_svc.settings import Settings
from presence_svc.stats.views import ViewStore

COLUMNS = ["view_id", "artifact_id", "version_id", "user_id", "session_id", "viewed_at"]


async def _record(settings: Settings, first: int, count: int, batch: int = 1000) -> None:
    # Pipelines of a thousand calls: the service's 0.9 s timeout (one request's call) is
    # not theirs; under it the benchmark died writing to the socket on a loaded machine.
    redis = connect(settings, timeout_s=60.0)
    store = ViewStore(redis, settings)
    for start in range(first, first + count, batch):
        calls = [
            store.record_call(f"doc-{i % 5000}", f"v{i % 3}", f"user-{i}", "tab-aaaa1")
            for i in range(start, min(first + count, start + batch))
        ]
        await redis.run_many(calls)
    await redis.aclose()


class _BenchLedger:
    """A real ledger, counting rows as batches commit (no polling, which would take CPU
    from the drain) and noting each row's latency: commit time minus its Redis time."""

    def __init__(self, inner: LedgerStore) -> None:
        self.inner = inner
        self.inserted = 0
        self.target = 0
        self.reached = asyncio.Event()
        self.latencies_ms: list[float] = []
        self.batches = 0

    async def ping(self) -> None:
        await self.inner.ping()

    async def insert_views(self, rows: Sequence[LedgerRow]) -> int:
        inserted = await self.inner.insert_views(rows)
        self.batches += 1
        committed_ms = time.time() * 1000
        self.latencies_ms.extend(committed_ms - row.viewed_at_ms for row in rows)
        self.inserted += inserted
        if self.inserted >= self.target:
            self.reached.set()
        return inserted

    async def query_views(self, query: LedgerQuery, limit: int) -> list[LedgerRow]:
        return await self.inner.query_views(query, limit)

    def iter_views(self, query: LedgerQuery, batch: int = 1000) -> AsyncIterator[LedgerRow]:
        return self.inner.iter_views(query, batch)

    async def upkeep(self, now_ms: int, keep_days: int | None) -> None:
        await self.inner.upkeep(now_ms, keep_days)


class _Backend(Protocol):
    raw_kind: str

    async def open(self, label: str) -> tuple[LedgerStore, Callable[[], Awaitable[None]]]:
        """A fresh, empty ledger named ``label``, and how to close it."""

    async def settle(self) -> None:
        """Before a timed part: leave nothing of the previous part to be written."""

    async def raw_insert(self, label: str, rows: Sequence[LedgerRow]) -> float:
        """Seconds to write ``rows`` the fastest raw way into a fresh ledger ``label``."""


class _Sqlite:
    raw_kind = "executemany"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    async def open(self, label: str) -> tuple[LedgerStore, Callable[[], Awaitable[None]]]:
        file = SqliteFile(self.workdir / f"{label}.sqlite3")
        await file.open()
        return SqliteLedger(file), file.close

    async def settle(self) -> None:
        pass

    async def raw_insert(self, label: str, rows: Sequence[LedgerRow]) -> float:
        raw = sqlite3.connect(self.workdir / f"{label}.sqlite3", isolation_level=None)
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


class _Postgres:
    raw_kind = "copy"

    def __init__(self, server: PostgresServer) -> None:
        self.server = server

    async def open_pool(self, label: str) -> PostgresPool:
        """A fresh database, migrated, with the months' partitions the worker makes."""
        pool = PostgresPool(self.server.create_database(label))
        await pool.open()
        await PostgresLedger(pool).upkeep(int(time.time() * 1000), None)
        return pool

    async def open(self, label: str) -> tuple[LedgerStore, Callable[[], Awaitable[None]]]:
        pool = await self.open_pool(label)
        return PostgresLedger(pool), pool.close

    async def settle(self) -> None:
        self.server.psql("CHECKPOINT")

    async def raw_insert(self, label: str, rows: Sequence[LedgerRow]) -> float:
        pool = await self.open_pool(label)
        await self.settle()
        try:
            started = time.perf_counter()
            async with pool.pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table("views", records=rows, columns=COLUMNS)
            return time.perf_counter() - started
        finally:
            await pool.close()


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


async def drain_rate(
    settings: Settings, backend: _Backend, views: int, rounds: int
) -> tuple[dict[str, object], list[LedgerRow]]:
    record_rates, drain_rates, raw_rates = [], [], []
    rows: list[LedgerRow] = []
    for n in range(rounds):
        started = time.perf_counter()
        await _record(settings, n * views, views)
        record_rates.append(views / (time.perf_counter() - started))

        redis = connect(settings)
        inner, close = await backend.open(f"ledger_{n}")
        ledger = _BenchLedger(inner)
        drain = LedgerDrain(redis, ledger, settings, consumer=f"bench-{n}")
        await drain.join()
        await backend.settle()
        drain_s = await _drain_until(drain, ledger, views)
        rows = [r async for r in ledger.iter_views(LedgerQuery())]
        await close()
        await redis.aclose()
        assert len(rows) == views, f"ledger holds {len(rows)} rows, expected {views}"
        drain_rates.append(views / drain_s)
        raw_rates.append(views / await backend.raw_insert(f"raw_{n}", rows))
    ratios = [d / r for d, r in zip(drain_rates, raw_rates, strict=True)]
    return {
        "benchmark": "drain",
        "ledger": "postgres" if isinstance(backend, _Postgres) else "sqlite",
        "raw": backend.raw_kind,
        "views": views,
        "rounds": rounds,
        "record_views_per_s": round(statistics.median(record_rates)),
        "drain_rows_per_s": round(statistics.median(drain_rates)),
        "raw_rows_per_s": round(statistics.median(raw_rates)),
        "ratio": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
    }, rows


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
    settings: Settings, backend: _Backend, rate: int, seconds: float
) -> dict[str, object]:
    redis = connect(settings)
    inner, close = await backend.open("latency")
    ledger = _BenchLedger(inner)
    drain = LedgerDrain(redis, ledger, settings, consumer="latency")
    await drain.join()
    stopping = asyncio.Event()
    running = asyncio.create_task(drain.run(stopping))
    producer = multiprocessing.get_context("spawn").Process(
        target=_produce, args=(settings.redis_url, settings.partitions, rate, seconds)
    )
    reads_before = await _reads(redis)
    cpu_before = time.process_time()
    producer.start()
    await asyncio.get_running_loop().run_in_executor(None, producer.join)
    await asyncio.sleep(1.0)  # let the tail drain
    stopping.set()
    await running
    cpu_s = time.process_time() - cpu_before
    reads = await _reads(redis) - reads_before
    await close()
    await redis.aclose()
    latencies = sorted(ledger.latencies_ms)
    if not latencies:
        raise SystemExit("no views reached the ledger")

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    return {
        "benchmark": "view_to_ledger",
        "ledger": "postgres" if isinstance(backend, _Postgres) else "sqlite",
        "rate": rate,
        "rows": len(latencies),
        "achieved_rate": round(len(latencies) / seconds),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1], 1),
        "reads": reads,
        "batches": ledger.batches,
        "drain_cpu_us_per_row": round(cpu_s * 1e6 / len(latencies), 1),
    }


async def _reads(redis: RedisConnection) -> int:
    """``XREADGROUP`` calls Redis has run so far (the drain's reads)."""
    stats = await redis.client.info("commandstats")
    return int(stats.get("cmdstat_xreadgroup", {}).get("calls", 0))


# The PostgreSQL batch-insert strategies, each one transaction per batch.

_UNNEST = (
    f"INSERT INTO views ({', '.join(COLUMNS)}) "
    "SELECT v, a, r, u, NULLIF(s, ''), t FROM unnest("
    "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]"
    ") AS batch(v, a, r, u, s, t) ON CONFLICT DO NOTHING"
)
_TEMP = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS views_batch (view_id text, artifact_id text, "
    "version_id text, user_id text, session_id text, viewed_at bigint) ON COMMIT DELETE ROWS"
)
_FROM_TEMP = (
    f"INSERT INTO views ({', '.join(COLUMNS)}) "
    "SELECT view_id, artifact_id, version_id, user_id, NULLIF(session_id, ''), viewed_at "
    "FROM views_batch ON CONFLICT DO NOTHING"
)


async def insert_unnest(pool: Any, rows: Sequence[LedgerRow]) -> int:
    """Six arrays, one statement (prepared once per connection); its own transaction."""
    columns = list(zip(*rows, strict=True))
    sessions = [s or "" for s in columns[4]]
    status = await pool.execute(
        _UNNEST, columns[0], columns[1], columns[2], columns[3], sessions, columns[5]
    )
    return rows_affected(status)


async def insert_copy_temp(pool: Any, rows: Sequence[LedgerRow]) -> int:
    """COPY into the connection's temporary table (made on its first batch, emptied at
    each commit), then one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_TEMP)
        await conn.copy_records_to_table("views_batch", records=rows, columns=COLUMNS)
        return rows_affected(await conn.execute(_FROM_TEMP))


async def insert_copy_direct(pool: Any, rows: Sequence[LedgerRow]) -> int:
    """COPY straight into ``views``; if a view id is already there (or twice in the
    batch) the COPY fails whole on the primary key and the batch goes in with unnest."""
    records = [row if row[4] else row._replace(session_id=None) for row in rows]
    try:
        async with pool.acquire() as conn, conn.transaction():
            return rows_affected(
                await conn.copy_records_to_table("views", records=records, columns=COLUMNS)
            )
    except asyncpg.UniqueViolationError:
        return await insert_unnest(pool, rows)


STRATEGIES = {
    "unnest": insert_unnest,
    "copy_temp": insert_copy_temp,
    "copy_direct": insert_copy_direct,
}


async def _pass(pool: Any, name: str, rows: list[LedgerRow], size: int) -> tuple[float, int]:
    insert = STRATEGIES[name]
    started = time.perf_counter()
    inserted = 0
    for i in range(0, len(rows), size):
        inserted += await insert(pool, rows[i : i + size])
    return len(rows) / (time.perf_counter() - started), inserted


async def insert_strategies(
    backend: _Postgres, rows: list[LedgerRow], batches: Sequence[int], rounds: int
) -> dict[str, object]:
    """Each strategy writes the rows into the emptied table (``rows_per_s``), then writes
    them again, every one a duplicate, as after a redelivery (``again_rows_per_s``)."""
    pool = await backend.open_pool("inserts")
    names = list(STRATEGIES)
    by_size: dict[str, object] = {}
    try:
        for size in batches:
            fresh: dict[str, list[float]] = {name: [] for name in names}
            again: dict[str, list[float]] = {name: [] for name in names}
            for n in range(rounds):
                for name in names[n % len(names) :] + names[: n % len(names)]:
                    await pool.pool.execute("TRUNCATE views")
                    await backend.settle()
                    rate, inserted = await _pass(pool.pool, name, rows, size)
                    assert inserted == len(rows), (name, inserted)
                    fresh[name].append(rate)
                    rate, inserted = await _pass(pool.pool, name, rows, size)
                    assert inserted == 0, (name, inserted)
                    again[name].append(rate)
            by_size[str(size)] = {
                name: {
                    "rows_per_s": round(statistics.median(fresh[name])),
                    "over_unnest": round(
                        statistics.median(
                            [a / b for a, b in zip(fresh[name], fresh["unnest"], strict=True)]
                        ),
                        3,
                    ),
                    "again_rows_per_s": round(statistics.median(again[name])),
                }
                for name in names
            }
    finally:
        await pool.close()
    return {"benchmark": "insert", "rows": len(rows), "rounds": rounds, "batches": by_size}


async def main(args: argparse.Namespace) -> None:
    stop_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="drain-bench-"))
    server = EmbeddedRedis(workdir / "redis")
    settings = Settings(redis_url=server.start(), data_dir=workdir, jwt_secret="x" * 32)
    postgres: PostgresServer | None = None
    try:
        backend: _Backend = _Sqlite(workdir)
        if args.ledger == "postgres":
            durable = not args.no_fsync
            postgres = PostgresServer(fsync=durable, synchronous_commit=durable).__enter__()
            print(json.dumps({"postgres": postgres.version(), **postgres.settings()}), flush=True)
            backend = _Postgres(postgres)
        result, rows = await drain_rate(settings, backend, args.views, args.rounds)
        print(json.dumps({**result, "machine": machine()}), flush=True)
        if args.seconds > 0:
            result = await view_to_ledger(settings, backend, args.rate, args.seconds)
            print(json.dumps(result), flush=True)
        if isinstance(backend, _Postgres) and args.batches:
            batches = [int(b) for b in args.batches.split(",")]
            result = await insert_strategies(backend, rows, batches, args.rounds)
            print(json.dumps(result), flush=True)
    finally:
        if postgres is not None:
            postgres.__exit__()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ledger", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--views", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=5_000, help="views per second (latency)")
    parser.add_argument("--seconds", type=float, default=10.0, help="0 skips the latency run")
    parser.add_argument(
        "--batches",
        default="100,1000,16000",
        help="PostgreSQL: batch sizes for the insert strategies ('' skips them)",
    )
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="PostgreSQL: fsync and synchronous_commit off (as the test suite's server)",
    )
    asyncio.run(main(parser.parse_args()))
