"""The users directory in PostgreSQL (the ``users`` table)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence

from presence_svc.db.postgres import PostgresPool, rows_affected
from presence_svc.users.directory import Profile

__all__ = ["PostgresUsers"]

_COLUMNS = "user_id, name, avatar_url, updated_at"
_MERGE = (
    f"INSERT INTO users ({_COLUMNS}) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) "
    "ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, "
    "avatar_url = excluded.avatar_url, updated_at = excluded.updated_at "
    "WHERE users.updated_at < excluded.updated_at"
)


class PostgresUsers:
    def __init__(self, db: PostgresPool) -> None:
        self._db = db

    async def get_profile(self, user_id: str) -> Profile | None:
        found = await self.get_profiles([user_id])
        return found.get(user_id)

    async def get_profiles(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        records = await self._db.fetch(
            "SELECT user_id, name, avatar_url, updated_at FROM users "
            "WHERE user_id = ANY($1::text[])",
            ids,
        )
        return {record[0]: Profile(*record) for record in records}

    async def put_profile(self, user_id: str, name: str, avatar_url: str | None) -> Profile:
        profile = Profile(user_id, name, avatar_url, int(time.time() * 1000))
        await self._db.execute(
            "INSERT INTO users (user_id, name, avatar_url, updated_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, "
            "avatar_url = excluded.avatar_url, updated_at = excluded.updated_at",
            profile.user_id,
            profile.name,
            profile.avatar_url,
            profile.updated_at_ms,
        )
        return profile

    async def delete_profile(self, user_id: str) -> bool:
        status = await self._db.execute("DELETE FROM users WHERE user_id = $1", user_id)
        return rows_affected(str(status)) > 0

    async def iter_profiles(self, batch: int = 1000) -> AsyncIterator[Profile]:
        after = ""
        while True:
            records = await self._db.fetch(
                f"SELECT {_COLUMNS} FROM users WHERE user_id > $1 ORDER BY user_id LIMIT $2",
                after,
                batch,
            )
            for record in records:
                yield Profile(*record)
            if len(records) < batch:
                return
            after = records[-1][0]

    async def merge_profiles(self, profiles: Sequence[Profile]) -> int:
        if not profiles:
            return 0
        status = await self._db.execute(
            _MERGE,
            [p.user_id for p in profiles],
            [p.name for p in profiles],
            [p.avatar_url for p in profiles],
            [p.updated_at_ms for p in profiles],
        )
        return rows_affected(str(status))
