"""Full scans for an erased user: every Redis key (its name, its DUMP, and its contents
read by type) and every row of every database table."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import redis
from redis.client import Pipeline


def redis_findings(client: redis.Redis, needles: list[bytes]) -> list[str]:
    """Where any of ``needles`` is in this Redis (a node of a Cluster: call per node)."""
    found: list[str] = []
    # DUMP compresses values (LZF) unless told not to: the bytes must be there to be seen.
    previous = client.config_get("rdbcompression")["rdbcompression"]
    client.config_set("rdbcompression", "no")
    try:
        keys = list(client.scan_iter(count=1000))
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.dump(key)
                pipe.type(key)
            replies = pipe.execute()
            pipe = client.pipeline(transaction=False)
            for key, kind in zip(batch, replies[1::2], strict=True):
                _read_all(pipe, key, kind)
            contents = pipe.execute()
            for key, dumped, content in zip(batch, replies[::2], contents, strict=True):
                blobs = [key, dumped or b"", *_flat(content)]
                found += [f"{key!r} holds {n!r}" for n in needles if any(n in b for b in blobs)]
    finally:
        client.config_set("rdbcompression", previous)
    return found


def _read_all(pipe: Pipeline, key: bytes, kind: bytes) -> None:
    readers = {
        b"string": lambda: pipe.get(key),
        b"hash": lambda: pipe.hgetall(key),
        b"set": lambda: pipe.smembers(key),
        b"zset": lambda: pipe.zrange(key, 0, -1),
        b"list": lambda: pipe.lrange(key, 0, -1),
        b"stream": lambda: pipe.xrange(key),
    }
    readers.get(kind, lambda: pipe.exists(key))()


def _flat(value: Any) -> list[bytes]:
    """Every bytes inside a reply (nested lists, dicts, stream entries)."""
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, dict):
        return [b for pair in value.items() for item in pair for b in _flat(item)]
    if isinstance(value, list | tuple | set):
        return [b for item in value for b in _flat(item)]
    return []


def sqlite_findings(path: Path, needles: list[str]) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [
            f"{table} row {row!r} holds {needle!r}"
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')
            for needle in needles
            if any(needle in str(cell) for cell in row)
        ]
    finally:
        conn.close()


async def postgres_findings(url: str, needles: list[str]) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        found = []
        for (table,) in tables:
            for row in await conn.fetch(f'SELECT * FROM "{table}"'):
                for needle in needles:
                    if any(needle in str(cell) for cell in row.values()):
                        found.append(f"{table} row {dict(row)!r} holds {needle!r}")
        return found
    finally:
        await conn.close()


async def database_findings(url: str, needles: list[str]) -> list[str]:
    if url.startswith("sqlite:///"):
        return sqlite_findings(Path(url.removeprefix("sqlite:///")), needles)
    return await postgres_findings(url, needles)


def file_findings(directory: Path, needles: list[bytes]) -> list[str]:
    """Which files under ``directory`` hold any of ``needles`` (AOF, SQLite file, WAL)."""
    return [
        f"{path} holds {needle!r}"
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.name.endswith(".sock")
        for needle in needles
        if needle in path.read_bytes()
    ]
