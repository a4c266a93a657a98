"""The users directory: the only place names and avatars live (Redis and the ledger hold
opaque ids), joined in at read time.

Every method raises ``DatabaseUnavailable`` when the directory cannot be reached now;
readers that can do without names (presence lists) catch that one alone.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from presence_svc.db.errors import DatabaseUnavailable
from presence_svc.users.privacy import Privacy

__all__ = [
    "COLUMNS",
    "UPDATE_ON_CONFLICT",
    "DatabaseUnavailable",
    "Profile",
    "ProfileLookup",
    "ProfileTable",
    "UsersDirectory",
]


@dataclass(frozen=True, slots=True)
class Profile:
    user_id: str
    name: str
    avatar_url: str | None
    updated_at_ms: int


class UsersDirectory(Protocol):
    async def get_profile(self, user_id: str) -> Profile | None: ...

    async def get_profiles(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        """The profiles that exist among ``user_ids``, in one query."""

    async def put_profile(self, user_id: str, name: str, avatar_url: str | None) -> Profile: ...

    async def delete_profile(self, user_id: str) -> bool: ...

    def iter_profiles(self, batch: int = 1000) -> AsyncIterator[Profile]:
        """Every profile, by user id, fetched in keyset batches (for export)."""

    async def merge_profiles(self, profiles: Sequence[Profile]) -> int:
        """Write profiles as given, ``updated_at_ms`` included, in one transaction; a
        stored profile as new or newer is kept. At most one per user id; returns how
        many were written (for import)."""

    async def get_privacy(self, user_id: str) -> Privacy:
        """The user's privacy settings (both visible when never set)."""

    async def update_privacy(
        self, user_id: str, view_history: str | None, presence: str | None, at_ms: int
    ) -> Privacy:
        """Set the settings given (None keeps the stored one) in one atomic step, so two
        partial updates at once both hold; returns what is stored now."""

    async def hidden_privacy(self) -> list[Privacy]:
        """Every user with something hidden (to seed the Redis mirror again)."""


COLUMNS = "user_id, name, avatar_url, updated_at"
"""The ``users`` table's columns, in ``Profile`` order."""
UPDATE_ON_CONFLICT = (
    "ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, "
    "avatar_url = excluded.avatar_url, updated_at = excluded.updated_at"
)
"""The upsert's clause: a stored profile takes the new name, avatar and time."""


class ProfileTable(ABC):
    """What the backends share of ``UsersDirectory``, on the three queries each one makes
    its own way: profiles by id, the upsert, and a keyset page by user id."""

    @abstractmethod
    async def _select(self, user_ids: list[str]) -> list[Profile]:
        """The stored profiles among ``user_ids`` (distinct, at least one)."""

    @abstractmethod
    async def _upsert(self, profile: Profile) -> None:
        """Store ``profile``, replacing the stored one whatever its time."""

    @abstractmethod
    async def _page(self, after: str, limit: int) -> list[Profile]:
        """Up to ``limit`` profiles with user ids above ``after``, by user id."""

    async def get_profile(self, user_id: str) -> Profile | None:
        found = await self.get_profiles([user_id])
        return found.get(user_id)

    async def get_profiles(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        return {profile.user_id: profile for profile in await self._select(ids)}

    async def put_profile(self, user_id: str, name: str, avatar_url: str | None) -> Profile:
        profile = Profile(user_id, name, avatar_url, int(time.time() * 1000))
        await self._upsert(profile)
        return profile

    async def iter_profiles(self, batch: int = 1000) -> AsyncIterator[Profile]:
        after = ""
        while True:
            profiles = await self._page(after, batch)
            for profile in profiles:
                yield profile
            if len(profiles) < batch:
                return
            after = profiles[-1].user_id


class ProfileLookup(Protocol):
    async def __call__(self, user_ids: Iterable[str]) -> dict[str, Profile]: ...
