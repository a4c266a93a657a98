"""The users directory in the SQLite file (the ``users`` table)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from presence_svc.db.sqlite import SqliteFile, execute_many
from presence_svc.users.directory import COLUMNS, UPDATE_ON_CONFLICT, Profile, ProfileTable
from presence_svc.users.privacy import PRIVACY_COLUMNS, Privacy, privacy_of

__all__ = ["SqliteUsers"]

_CHUNK = 500
"""Ids per ``IN (...)``: under SQLite's bound-parameter limit on every build."""
_PUT = f"INSERT INTO users ({COLUMNS}) VALUES (?, ?, ?, ?) {UPDATE_ON_CONFLICT}"
_MERGE = f"{_PUT} WHERE users.updated_at < excluded.updated_at"
_UPDATE_PRIVACY = (
    f"INSERT INTO privacy ({PRIVACY_COLUMNS}) VALUES (?1, COALESCE(?2, 'visible'), "
    "COALESCE(?3, 'visible'), ?4) ON CONFLICT (user_id) DO UPDATE SET "
    "view_history = COALESCE(?2, privacy.view_history), "
    "presence = COALESCE(?3, privacy.presence), updated_at = excluded.updated_at "
    f"RETURNING {PRIVACY_COLUMNS}"
)
"""One statement, as on PostgreSQL: a None setting keeps the stored one, even when another
process (sharing the file) changed it a moment ago."""


class SqliteUsers(ProfileTable):
    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    async def _select(self, user_ids: list[str]) -> list[Profile]:
        def select(conn: sqlite3.Connection) -> list[tuple[str, str, str | None, int]]:
            out: list[tuple[str, str, str | None, int]] = []
            for i in range(0, len(user_ids), _CHUNK):
                chunk = user_ids[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                out += conn.execute(
                    f"SELECT {COLUMNS} FROM users WHERE user_id IN ({marks})",
                    chunk,
                ).fetchall()
            return out

        return [Profile(*row) for row in await self._file.run(select)]

    async def _upsert(self, profile: Profile) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                _PUT, (profile.user_id, profile.name, profile.avatar_url, profile.updated_at_ms)
            )

        await self._file.run(upsert)

    async def _page(self, after: str, limit: int) -> list[Profile]:
        def page(conn: sqlite3.Connection) -> list[tuple[str, str, str | None, int]]:
            return conn.execute(
                f"SELECT {COLUMNS} FROM users WHERE user_id > ? ORDER BY user_id LIMIT ?",
                (after, limit),
            ).fetchall()

        return [Profile(*row) for row in await self._file.run(page)]

    async def delete_profile(self, user_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM privacy WHERE user_id = ?", (user_id,))
            return conn.execute("DELETE FROM users WHERE user_id = ?", (user_id,)).rowcount > 0

        return await self._file.run(delete)

    async def merge_profiles(self, profiles: Sequence[Profile]) -> int:
        rows = [(p.user_id, p.name, p.avatar_url, p.updated_at_ms) for p in profiles]
        return await self._file.run(lambda c: execute_many(c, _MERGE, rows))

    async def get_privacy(self, user_id: str) -> Privacy:
        def select(conn: sqlite3.Connection) -> tuple[str, str, str, int] | None:
            return conn.execute(  # type: ignore[no-any-return]
                f"SELECT {PRIVACY_COLUMNS} FROM privacy WHERE user_id = ?", (user_id,)
            ).fetchone()

        row = await self._file.run(select)
        return privacy_of(*row) if row else Privacy(user_id)

    async def update_privacy(
        self, user_id: str, view_history: str | None, presence: str | None, at_ms: int
    ) -> Privacy:
        def update(conn: sqlite3.Connection) -> Privacy:
            row = conn.execute(_UPDATE_PRIVACY, (user_id, view_history, presence, at_ms)).fetchone()
            return privacy_of(*row)

        return await self._file.run(update)

    async def hidden_privacy(self) -> list[Privacy]:
        def select(conn: sqlite3.Connection) -> list[tuple[str, str, str, int]]:
            return conn.execute(
                f"SELECT {PRIVACY_COLUMNS} FROM privacy "
                "WHERE view_history = 'hidden' OR presence = 'hidden'"
            ).fetchall()

        return [privacy_of(*row) for row in await self._file.run(select)]
