"""The users directory in the SQLite file (the ``users`` table)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

from presence_svc.db.sqlite import SqliteFile
from presence_svc.users.directory import Profile

__all__ = ["SqliteUsers"]

_CHUNK = 500
"""Ids per ``IN (...)``: under SQLite's bound-parameter limit on every build."""


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
