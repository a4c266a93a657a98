"""The PostgreSQL ledger's keyset pages: the first page of an artifact's views against a page
100 000 rows deep, with millions of rows stored.

    .venv/bin/python benchmarks/ledger_keyset.py [--sizes 1000000,10000000] [--hot 250000]
        [--artifacts 1000] [--months 6] [--depth 100000] [--samples 200] [--no-http]

For each size, in a fresh database of a private PostgreSQL server (durable, as
``presence_svc/bench/pgserver.py`` starts it): the schema by the service's migrations, one
partition per month over ``--months`` months (``PostgresLedger.ensure_month``, and the
months ahead by ``upkeep``), then ``size`` generated rows loaded with COPY
(``copy_records_to_table``, in time order as a drain writes them, in chunks of 200 000),
then ANALYZE. The rows spread evenly over the months; one artifact, ``doc-hot``, has
``--hot`` of them spread over the whole time, the others share the rest over
``--artifacts`` - 1 artifacts.

Then, alternating, ``--samples`` times each:

- ``query_views``: ``PostgresLedger.query_views`` with the ``LedgerQuery`` the
  ``GET /v1/ledger?artifactId=doc-hot`` handler builds (limit 100, so 101 rows asked for),
  without a cursor (the first page) and with the cursor of the row ``--depth`` rows in;
  both orders (``order=desc`` too).
- ``http``: the same two pages through the real API: ``presence-svc serve`` with
  ``PRESENCE_LEDGER_URL`` on the database, a dashboard token, one keep-alive connection.

Prints one JSON line per size and path: p50/p99 of each page, ``deep_over_first`` (ratio of
the p50s), what ``OFFSET depth`` costs for the same page (once, for contrast), and the
buffers each keyset page touches (EXPLAIN ANALYZE, BUFFERS).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

from presence_svc.auth import Scope, TokenCodec
from presence_svc.bench.machine import machine
from presence_svc.bench.pgserver import PostgresServer, stop_on_sigterm
from presence_svc.bench.runner import child_env, free_port, python_argv, started_process
from presence_svc.cursors import encode_cursor
from presence_svc.db.postgres import PostgresPool
from presence_svc.ledger.postgres import PostgresLedger, month_bounds
from presence_svc.ledger.store import LedgerQuery

HOT = "doc-hot"
LIMIT = 100
"""The handler's default page size; it asks the ledger for one more row."""
CHUNK = 200_000
COLUMNS = ["view_id", "artifact_id", "version_id", "user_id", "session_id", "viewed_at"]


def _months(count: int, now: dt.datetime) -> list[tuple[int, int]]:
    """The ``count`` months ending with ``now``'s, oldest first."""
    out = []
    for back in range(count - 1, -1, -1):
        index = now.year * 12 + now.month - 1 - back
        out.append((index // 12, index % 12 + 1))
    return out


def _rows(
    first: int, count: int, size: int, hot: int, artifacts: int, start_ms: int, span_ms: int
) -> Iterator[tuple[str, str, str, str, str, int]]:
    """Rows ``first`` .. ``first + count`` of ``size``, in time order: row i at
    ``start + i * span / size``; ``hot`` rows of the ``size``, evenly spread, are the hot
    artifact's."""
    for i in range(first, first + count):
        t = start_ms + i * span_ms // size
        if (i * hot) // size != ((i + 1) * hot) // size:
            artifact = HOT
        else:
            artifact = f"doc-{(i * 7919) % (artifacts - 1):07d}"
        mixed = (i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        yield (
            f"{t:012x}{mixed:016x}",
            artifact,
            f"v{i % 3}",
            f"user-{mixed % 100_000:07d}",
            f"{mixed:016x}{i:016x}",
            t,
        )


async def load(pool: PostgresPool, args: argparse.Namespace, size: int) -> dict[str, Any]:
    ledger = PostgresLedger(pool)
    now = dt.datetime.now(dt.UTC)
    months = _months(args.months, now)
    for year, month in months:
        await ledger.ensure_month(year, month)
    await ledger.upkeep(int(now.timestamp() * 1000), None)
    start_ms = month_bounds(*months[0])[0]
    span_ms = int(now.timestamp() * 1000) - start_ms
    started = time.perf_counter()
    async with pool.pool.acquire() as conn:
        for first in range(0, size, CHUNK):
            count = min(CHUNK, size - first)
            rows = _rows(first, count, size, args.hot, args.artifacts, start_ms, span_ms)
            await conn.copy_records_to_table("views", records=rows, columns=COLUMNS)
        load_s = time.perf_counter() - started
        await conn.execute("ANALYZE views")
        hot_rows = await conn.fetchval("SELECT count(*) FROM views WHERE artifact_id = $1", HOT)
        partitions = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'views'::regclass"
        )
        table_bytes = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
            "WHERE inhparent = 'views'::regclass"
        )
    return {
        "rows": size,
        "hot_rows": hot_rows,
        "months": args.months,
        "partitions": partitions,
        "table_and_indexes_mb": round(table_bytes / 2**20),
        "load_s": round(load_s, 1),
        "load_rows_per_s": round(size / load_s),
        "analyze_s": round(time.perf_counter() - started - load_s, 1),
    }


def _deep_query(newest_first: bool) -> str:
    order = "DESC" if newest_first else ""
    return (
        f"SELECT viewed_at, view_id FROM views WHERE artifact_id = $1 "
        f"ORDER BY viewed_at {order}, view_id {order} OFFSET $2 LIMIT 1"
    )


async def _buffers(pool: PostgresPool, query: LedgerQuery) -> tuple[int, list[str]]:
    """Shared buffers (hit + read) the page's query touches, and its plan's node types."""
    from presence_svc.ledger.postgres import _select_views  # the ledger's own SQL

    sql, params = _select_views(query, LIMIT + 1)
    explained = await pool.pool.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *params)
    plan = json.loads(explained)[0]["Plan"]
    nodes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        name = node["Node Type"]
        if name not in nodes:
            nodes.append(name)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    return int(plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]), nodes


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def _alternate(
    first: Callable[[], Awaitable[int]], deep: Callable[[], Awaitable[int]], samples: int
) -> dict[str, Any]:
    """Time both pages ``samples`` times each, alternating (after a few unmeasured)."""
    times: dict[str, list[float]] = {"first": [], "deep": []}
    for _ in range(5):
        await first()
        await deep()
    for n in range(samples):
        pair = (
            (("first", first), ("deep", deep)) if n % 2 == 0 else (("deep", deep), ("first", first))
        )
        for name, page in pair:
            started = time.perf_counter()
            got = await page()
            times[name].append((time.perf_counter() - started) * 1000)
            if got != LIMIT:
                raise RuntimeError(f"the {name} page held {got} rows, not {LIMIT}")
    out: dict[str, Any] = {}
    for name, values in times.items():
        out[f"{name}_p50_ms"] = _pct(values, 0.5)
        out[f"{name}_p99_ms"] = _pct(values, 0.99)
    out["deep_over_first"] = round(
        statistics.median(times["deep"]) / statistics.median(times["first"]), 2
    )
    return out


async def measure_query_path(
    pool: PostgresPool, cursors: dict[bool, tuple[int, str]], samples: int
) -> dict[str, Any]:
    ledger = PostgresLedger(pool)
    result: dict[str, Any] = {"path": "query_views"}
    for newest_first in (False, True):
        first = LedgerQuery(artifact_id=HOT, newest_first=newest_first)
        deep = LedgerQuery(artifact_id=HOT, newest_first=newest_first, after=cursors[newest_first])

        async def page(query: LedgerQuery) -> int:
            return min(LIMIT, len(await ledger.query_views(query, LIMIT + 1)))

        order = "desc" if newest_first else "asc"
        timed = await _alternate(lambda q=first: page(q), lambda q=deep: page(q), samples)
        buffers_first, nodes = await _buffers(pool, first)
        buffers_deep, deep_nodes = await _buffers(pool, deep)
        result[order] = {
            **timed,
            "buffers_first": buffers_first,
            "buffers_deep": buffers_deep,
            "plan": nodes,
            "plan_deep": deep_nodes,
        }
    return result


async def measure_http(
    url: str, cursors: dict[bool, tuple[int, str]], samples: int
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="keyset-bench-"))
    secret = secrets.token_urlsafe(48)
    port = free_port()
    env = child_env(
        PRESENCE_DATA_DIR=str(workdir / "data"),
        PRESENCE_JWT_SECRET=secret,
        PRESENCE_LOG_LEVEL="warning",
        PRESENCE_LEDGER_URL=url,
    )
    argv = python_argv("-m", "presence_svc", "serve", "--port", str(port), "--no-worker")
    token = TokenCodec(secret).issue("bench-board", scope=Scope.DASHBOARD, ttl_s=3600)
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}/v1/ledger?artifactId={HOT}"
    result: dict[str, Any] = {"path": "http"}
    try:
        return await _http_pages(argv, port, env, workdir, headers, base, cursors, samples, result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _http_pages(
    argv: list[str],
    port: int,
    env: dict[str, str],
    workdir: Path,
    headers: dict[str, str],
    base: str,
    cursors: dict[bool, tuple[int, str]],
    samples: int,
    result: dict[str, Any],
) -> dict[str, Any]:
    with started_process(
        argv, port=port, ready_path="/readyz", env=env, log_path=workdir / "serve.log"
    ):
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

            async def page(query: str) -> int:
                async with http.get(base + query) as answer:
                    if answer.status != 200:
                        raise RuntimeError(f"{answer.status}: {await answer.text()}")
                    return len((await answer.json())["items"])

            for newest_first in (False, True):
                order = "&order=desc" if newest_first else ""
                cursor = f"&cursor={encode_cursor(*cursors[newest_first])}"
                result["desc" if newest_first else "asc"] = await _alternate(
                    lambda o=order: page(o), lambda o=order, c=cursor: page(o + c), samples
                )
    return result


async def measure(server: PostgresServer, args: argparse.Namespace, size: int) -> None:
    url = server.create_database(f"keyset_{size}")
    pool = PostgresPool(url)
    await pool.open()
    try:
        loaded = await load(pool, args, size)
        print(json.dumps({"benchmark": "keyset_load", **loaded}), flush=True)
        cursors: dict[bool, tuple[int, str]] = {}
        offset_ms: dict[str, float] = {}
        for newest_first in (False, True):
            started = time.perf_counter()
            record = await pool.pool.fetchrow(_deep_query(newest_first), HOT, args.depth - 1)
            offset_ms["desc" if newest_first else "asc"] = round(
                (time.perf_counter() - started) * 1000, 1
            )
            cursors[newest_first] = (record[0], record[1])
        common = {
            "benchmark": "keyset",
            "rows": size,
            "hot_rows": loaded["hot_rows"],
            "depth": args.depth,
            "offset_page_ms": offset_ms,
            "machine": machine(),
        }
        result = await measure_query_path(pool, cursors, args.samples)
        print(json.dumps({**common, **result}), flush=True)
        if args.http:
            result = await measure_http(url, cursors, args.samples)
            print(json.dumps({**common, **result}), flush=True)
    finally:
        await pool.close()
    server.psql(f"DROP DATABASE keyset_{size} WITH (FORCE)")


async def main(args: argparse.Namespace) -> None:
    stop_on_sigterm()
    with PostgresServer() as server:
        print(json.dumps({"postgres": server.version(), **server.settings()}), flush=True)
        for size in (int(s) for s in args.sizes.split(",")):
            if size < args.hot or args.hot <= args.depth + LIMIT:
                raise SystemExit("need depth + 100 < hot <= every size")
            if args.artifacts < 2:
                raise SystemExit("need at least 2 artifacts")
            await measure(server, args, size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000", help="rows stored, per run")
    parser.add_argument("--hot", type=int, default=250_000, help="rows of the paged artifact")
    parser.add_argument("--artifacts", type=int, default=1000)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--depth", type=int, default=100_000, help="rows before the deep page")
    parser.add_argument("--samples", type=int, default=200, help="timed requests per page")
    parser.add_argument("--no-http", dest="http", action="store_false", help="skip the API")
    asyncio.run(main(parser.parse_args()))
