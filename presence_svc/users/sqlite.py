"""The users directory in the SQLite file (the ``users`` table)."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence

from presence_svc.db.sqlite import SqliteFile, transaction
from presence_svc.users.directory import Profile

__all__ = ["SqliteUsers"]

_CHUNK = 500
"""Ids per ``IN (...)``: under SQLite's bound-parameter limit on every build."""
_COLUMNS = "user_id, name, avatar_url, updated_at"
_MERGE = (
    f"INSERT INTO users ({_COLUMNS}) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, "
    "avatar_url = excluded.avatar_url, updated_at = excluded.updated_at "
    "WHERE users.updated_at < excluded.updated_at"
)


class SqliteUsers:
    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    async def get_profile(self, user_id: str) -> Profile | None:
        found = await self.get_profiles([user_id])
        return found.get(user_id)

    async def get_profiles(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}

        def select(conn: sqlite3.Connection) -> list[tuple[str, str, str | None, int]]:
            out: list[tuple[str, str, str | None, int]] = []
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                out += conn.execute(
                    "SELECT user_id, name, avatar_url, updated_at FROM users "
                    f"WHERE user_id IN ({marks})",
                    chunk,
                ).fetchall()
            return out

        return {row[0]: Profile(*row) for row in await self._file.run(select)}

    async def put_profile(self, user_id: str, name: str, avatar_url: str | None) -> Profile:
        profile = Profile(user_id, name, avatar_url, int(time.time() * 1000))

        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO users (user_id, name, avatar_url, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, "
                "avatar_url = excluded.avatar_url, updated_at = excluded.updated_at",
                (profile.user_id, profile.name, profile.avatar_url, profile.updated_at_ms),
            )

        await self._file.run(upsert)
        return profile

    async def delete_profile(self, user_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM users WHERE user_id = ?", (user_id,)).rowcount > 0

        return await self._file.run(delete)

    async def iter_profiles(self, batch: int = 1000) -> AsyncIterator[Profile]:
        after = ""
        while True:
            rows = await self._file.run(functools.partial(_page, after=after, limit=batch))
            for row in rows:
                yield Profile(*row)
            if len(rows) < batch:
                return
            after = rows[-1][0]

    async def merge_profiles(self, profiles: Sequence[Profile]) -> int:
        rows = [(p.user_id, p.name, p.avatar_url, p.updated_at_ms) for p in profiles]

        def merge(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                before = conn.total_changes
                conn.executemany(_MERGE, rows)
                return conn.total_changes - before

        return await self._file.run(merge)


def _page(
    conn: sqlite3.Connection, *, after: str, limit: int
) -> list[tuple[str, str, str | None, int]]:
    return conn.execute(
        f"SELECT {_COLUMNS} FROM users WHERE user_id > ? ORDER BY user_id LIMIT ?", (after, limit)
    ).fetchall()
