"""The users directory in PostgreSQL (the ``users`` table)."""

from __future__ import annotations

from collections.abc import Sequence

from presence_svc.db.postgres import PostgresPool, rows_affected
from presence_svc.users.directory import COLUMNS, UPDATE_ON_CONFLICT, Profile, ProfileTable
from presence_svc.users.privacy import PRIVACY_COLUMNS, Privacy, privacy_of

__all__ = ["PostgresUsers"]

_PUT = f"INSERT INTO users ({COLUMNS}) VALUES ($1, $2, $3, $4) {UPDATE_ON_CONFLICT}"
_MERGE = (
    f"INSERT INTO users ({COLUMNS}) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) "
    f"{UPDATE_ON_CONFLICT} WHERE users.updated_at < excluded.updated_at"
)

_UPDATE_PRIVACY = (
    f"INSERT INTO privacy ({PRIVACY_COLUMNS}) VALUES ($1, COALESCE($2::text, 'visible'), "
    "COALESCE($3::text, 'visible'), $4) ON CONFLICT (user_id) DO UPDATE SET "
    "view_history = COALESCE($2::text, privacy.view_history), "
    "presence = COALESCE($3::text, privacy.presence), updated_at = excluded.updated_at "
    f"RETURNING {PRIVACY_COLUMNS}"
)
"""One statement: a None setting keeps the stored one, atomically."""


class PostgresUsers(ProfileTable):
    def __init__(self, db: PostgresPool) -> None:
        self._db = db

    async def _select(self, user_ids: list[str]) -> list[Profile]:
        records = await self._db.fetch(
            f"SELECT {COLUMNS} FROM users WHERE user_id = ANY($1::text[])",
            user_ids,
        )
        return [Profile(*record) for record in records]

    async def _upsert(self, profile: Profile) -> None:
        await self._db.execute(
            _PUT,
            profile.user_id,
            profile.name,
            profile.avatar_url,
            profile.updated_at_ms,
        )

    async def _page(self, after: str, limit: int) -> list[Profile]:
        records = await self._db.fetch(
            f"SELECT {COLUMNS} FROM users WHERE user_id > $1 ORDER BY user_id LIMIT $2",
            after,
            limit,
        )
        return [Profile(*record) for record in records]

    async def delete_profile(self, user_id: str) -> bool:
        await self._db.execute("DELETE FROM privacy WHERE user_id = $1", user_id)
        status = await self._db.execute("DELETE FROM users WHERE user_id = $1", user_id)
        return rows_affected(str(status)) > 0

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

    async def get_privacy(self, user_id: str) -> Privacy:
        records = await self._db.fetch(
            f"SELECT {PRIVACY_COLUMNS} FROM privacy WHERE user_id = $1", user_id
        )
        return privacy_of(*records[0]) if records else Privacy(user_id)

    async def update_privacy(
        self, user_id: str, view_history: str | None, presence: str | None, at_ms: int
    ) -> Privacy:
        records = await self._db.fetch(_UPDATE_PRIVACY, user_id, view_history, presence, at_ms)
        return privacy_of(*records[0])

    async def hidden_privacy(self) -> list[Privacy]:
        records = await self._db.fetch(
            f"SELECT {PRIVACY_COLUMNS} FROM privacy "
            "WHERE view_history = 'hidden' OR presence = 'hidden'"
        )
        return [privacy_of(*record) for record in records]
